// 2-D max pooling, NHWC. The window geometry is a ConvShape with K == C (R S = pool size).
// Legend: N batch, H W input height/width, C channels, R S pool height/width, P Q output height/width.
// Backward OVERWRITES dx (zeroes it, then adds every dy at its argmax).
#pragma once
#include <cstdint>

#include "microcnn/conv.hpp"

namespace microcnn {

// x (N,H,W,C) -> y (N,P,Q,C), argmax (N,P,Q,C): per-sample flat input index (h*W + w)*C + c of each maximum.
// Ties: the first maximum in row-major window order wins; padded positions never win (every window holds at
// least one real input). Requires H*W*C <= INT32_MAX.
void maxpool2d_forward(float* y, int32_t* argmax, const float* x, const ConvShape& s);

// dy (N,P,Q,C), argmax (N,P,Q,C) -> dx (N,H,W,C). Every argmax value must lie in [0, H*W*C).
void maxpool2d_backward(float* dx, const float* dy, const int32_t* argmax, int64_t N, int64_t H, int64_t W,
                        int64_t C, int64_t P, int64_t Q);

}  // namespace microcnn
