// Element-wise and row-wise activations. Legend: n element count, N rows, M row length (classes/units).
// Backward OVERWRITES dx. Outputs may not alias inputs.
#pragma once
#include <cstdint>

namespace microcnn {

// x (n) -> y (n) = max(0, x)
void relu_forward(float* y, const float* x, int64_t n);
// dy (n), y (n) ReLU output -> dx (n) = dy * (y > 0)
void relu_backward(float* dx, const float* dy, const float* y, int64_t n);

// x (N,M) -> y (N,M) = softmax over each row (max subtracted first, so it never overflows; the sum in double)
void softmax_forward(float* y, const float* x, int64_t N, int64_t M);
// One row x (M) -> probs (M) = softmax(x), as softmax_forward; returns log(sum exp(x)), computed stably (the
// fused softmax + cross-entropy uses both).
double softmax_row(float* probs, const float* x, int64_t M);
// dy (N,M), y (N,M) softmax output -> dx (N,M) = y * (dy - sum_j dy_j y_j)
void softmax_backward(float* dx, const float* dy, const float* y, int64_t N, int64_t M);

}  // namespace microcnn
