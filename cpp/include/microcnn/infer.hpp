// Inference-only kernels: forward passes that keep nothing for a backward pass (no argmax, no full-resolution
// activations), for predict. Legend as conv.hpp: N batch, H W input height/width, C in-channels, K out-channels,
// R S kernel height/width, P Q conv output height/width.
#pragma once
#include <cstdint>

#include "microcnn/conv.hpp"

namespace microcnn {

// x (N,H,W,C), w (R,S,C,K), b (K) or nullptr -> y (N,P/2,Q/2,K) = 2x2 stride-2 "valid" max pool of
// max(0, conv + b), with the same values as conv2d_relu_maxpool_forward's y. The conv output is computed a few
// rows at a time into a per-thread buffer that stays in cache and is pooled at once; no argmax is written.
// Requires P, Q >= 2.
void conv2d_relu_maxpool_infer(float* y, const float* x, const float* w, const float* b, const ConvShape& s);

}  // namespace microcnn
