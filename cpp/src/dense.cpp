// Production dense layer on the packed SGEMM. For the seed net's 87616 x 256 layer the GEMM splits the long
// reduction (forward), or the tall output (backward-data as dx^T, backward-weights) over threads. With a
// small batch the weight matrix is read in place (not packed) by the forward and backward-data GEMMs: one
// sequential pass over its 90 MB each.
#include "microcnn/dense.hpp"

#include <algorithm>

#include "microcnn/gemm.hpp"

namespace microcnn {

// x (N,K), w (K,M), b (M) or nullptr -> y (N,M)
void dense_forward(float* y, const float* x, const float* w, const float* b, int64_t N, int64_t K, int64_t M,
                   bool relu) {
  // Row panels (a copy of x) unless both the batch and the layer are wide: with a small batch the GEMM reads
  // w in place, and transposing x into k-major panels would be a large share of the remaining work.
  gemm(y, M, StridedA(x, K, 1, /*rows_panels=*/M <= 128 || N <= 64), StridedB(w, M, 1), N, M, K,
       GemmEpilogue{b, relu});
}

// dy (N,M), x (N,K), w (K,M) -> dx (N,K) or nullptr, dw (K,M), db (M) or nullptr
void dense_backward(float* dx, float* dw, float* db, const float* dy, const float* x, const float* w, int64_t N,
                    int64_t K, int64_t M) {
  if (dx) {
    // dx = dy @ w^T, run as dx^T (K,N) = w (K,M) @ dy^T (M,N) stored transposed: w is then the A operand, read
    // in place row by row (for a small batch) or packed by row copies, where as the B operand of dy @ w^T it
    // would have to be transposed element by element.
    GemmEpilogue store_dx;
    store_dx.transpose_c = true;
    gemm(dx, K, StridedA(w, M, 1), StridedB(dy, 1, M), K, N, M, store_dx);
  }
  gemm(dw, M, StridedA(x, 1, K), StridedB(dy, M, 1), K, M, N);          // x^T @ dy
  if (db) {
    std::fill(db, db + M, 0.0f);
    for (int64_t n = 0; n < N; ++n)
      for (int64_t m = 0; m < M; ++m) db[m] += dy[n * M + m];
  }
}

}  // namespace microcnn
