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

// The dense forward pass on weights packed once (dense_pack_weights: dense_packed_size(K, M) floats, for
// micro-panels dense_packed_nr() wide, the micro-kernel in use). x (N,K), w (K,M) and its packed copy
// w_packed (packed for panels nr wide), b (M) or nullptr -> y (N,M), dense_forward's values bit for bit. A
// batch of at most 4 rows, or a packing for another nr (the micro-kernel changed), runs dense_forward on w.
int dense_packed_nr();
int64_t dense_packed_size(int64_t K, int64_t M);
void dense_pack_weights(float* dst, const float* w, int64_t K, int64_t M);
void dense_forward_packed(float* y, const float* x, const float* w, const float* w_packed, int nr, const float* b,
                          int64_t N, int64_t K, int64_t M, bool relu);

// maps (N, P, C) (P pixels of C channels per sample) -> out (N, 2C): per sample and channel the mean over the
// pixels, then the standard deviation sqrt(max(E[x^2] - mean^2, 0)); sums in double.
void channel_stats(float* out, const float* maps, int64_t N, int64_t P, int64_t C);

}  // namespace microcnn
