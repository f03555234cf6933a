// Production dense layer on the packed SGEMM. For the seed net's 87616 x 256 layer the GEMM splits the long
// reduction (forward), the wide output (backward-data) or the tall output (backward-weights) over threads,
// and streams the weight matrix through cache-sized packed blocks once per pass.
#include "microcnn/dense.hpp"

#include <algorithm>
#include <memory>

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
    // dx^T (K,N) = w (K,M) @ dy^T (M,N), then transposed back: packing w as the A operand is a row copy,
    // while packing it as B of dy @ w^T would transpose the whole (large) weight matrix element by element.
    std::unique_ptr<float[]> dxt(new float[static_cast<size_t>(K) * N]);
    gemm(dxt.get(), N, StridedA(w, M, 1), StridedB(dy, 1, M), K, N, M);
    const float* t = dxt.get();
#pragma omp parallel for schedule(static) if (K * N >= (1 << 16))
    for (int64_t k0 = 0; k0 < K; k0 += 256)
      for (int64_t n = 0; n < N; ++n)
        for (int64_t k = k0; k < std::min(K, k0 + 256); ++k) dx[n * K + k] = t[k * N + n];
  }
  gemm(dw, M, StridedA(x, 1, K), StridedB(dy, M, 1), K, M, N);          // x^T @ dy
  if (db) {
    std::fill(db, db + M, 0.0f);
    for (int64_t n = 0; n < N; ++n)
      for (int64_t m = 0; m < M; ++m) db[m] += dy[n * M + m];
  }
}

}  // namespace microcnn
