// Internal: the dense forward pass of a batch of a few rows (a prediction of one image is a matrix-vector
// product). It is bound by reading the weights, so each thread reads a contiguous range of rows of w as one
// sequential stream, keeping its partial sums of the M outputs in L1; the partials are added in thread order
// (reproducible for a given thread count). Legend as dense.hpp.
#pragma once
#include <cstdint>

namespace microcnn::dense_rows {

constexpr int64_t kMaxRows = 4;

#ifdef MICROCNN_X86
// x (N,K), w (K,M), b (M) or nullptr -> y (N,M); N <= kMaxRows. dense_rows_avx2.cpp.
void forward_avx2(float* y, const float* x, const float* w, const float* b, int64_t N, int64_t K, int64_t M,
                  bool relu);
#endif

}  // namespace microcnn::dense_rows
