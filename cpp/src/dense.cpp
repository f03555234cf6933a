// Production dense layer on the packed SGEMM. For the seed net's 87616 x 256 layer the GEMM splits the long
// reduction (forward), or the tall output (backward-data as dx^T, backward-weights) over threads. With a
// small batch the weight matrix is read in place (not packed) by the forward and backward-data GEMMs: one
// sequential pass over its 90 MB each.
#include "microcnn/dense.hpp"

#include <algorithm>
#include <vector>

#include "dense_rows.hpp"
#include "microcnn/gemm.hpp"
#include "microcnn/optim.hpp"
#include "microcnn/threads.hpp"

namespace microcnn {

namespace {
// dense_adam_update: rows of w per block (a multiple of every micro-kernel's MR; 192 x 256 floats stay in L2).
constexpr int64_t kFusedRows = 192;
}  // namespace

// x (N,K), w (K,M), b (M) or nullptr -> y (N,M)
void dense_forward(float* y, const float* x, const float* w, const float* b, int64_t N, int64_t K, int64_t M,
                   bool relu) {
#ifdef MICROCNN_X86
  // A few rows (batch-1 prediction): the weights as one sequential stream per thread (dense_rows.hpp).
  if (N <= dense_rows::kMaxRows && kernel_isa() != Isa::generic)
    return dense_rows::forward_avx2(y, x, w, b, N, K, M, relu);
#endif
  // Row panels (a copy of x) unless both the batch and the layer are wide: with a small batch the GEMM reads
  // w in place, and transposing x into k-major panels would be a large share of the remaining work.
  gemm(y, M, StridedA(x, K, 1, /*rows_panels=*/M <= 128 || N <= 64), StridedB(w, M, 1), N, M, K,
       GemmEpilogue{b, relu});
}

// dy (N,M), x (N,K), w (K,M) -> dx (N,K) or nullptr, dw (K,M) or nullptr, db (M) or nullptr
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
  if (dw) gemm(dw, M, StridedA(x, 1, K), StridedB(dy, M, 1), K, M, N);  // x^T @ dy
  if (db) {
    std::fill(db, db + M, 0.0f);
    for (int64_t n = 0; n < N; ++n)
      for (int64_t m = 0; m < M; ++m) db[m] += dy[n * M + m];
  }
}

// x (N,K), dy (N,M) -> w (K,M), m (K,M), v (K,M) updated
void dense_adam_update(float* w, float* m, float* v, const float* x, const float* dy, int64_t N, int64_t K,
                       int64_t M, double learning_rate, double beta_1, double beta_2, double epsilon, int64_t step) {
  if (gemm_splits_sum(K, M, N)) {  // dense_backward's GEMM splits the batch sum: dw as it computes it
    std::vector<float> dw(static_cast<size_t>(K * M));
    dense_backward(nullptr, dw.data(), nullptr, dy, x, w, N, K, M);
    adam_update(w, m, v, dw.data(), K * M, learning_rate, beta_1, beta_2, epsilon, step);
    return;
  }
  // Otherwise dense_backward's GEMM sums each element of dw in one order, and a serial GEMM per block of rows
  // computes it exactly so.
  const AdamStep s = adam_step(learning_rate, beta_1, beta_2, epsilon, step);
  const int64_t blocks = (K + kFusedRows - 1) / kFusedRows;
#pragma omp parallel
  {
    DenormalGuard guard;
    std::vector<float> dwb(static_cast<size_t>(kFusedRows * M));
#pragma omp for schedule(dynamic, 1)
    for (int64_t blk = 0; blk < blocks; ++blk) {
      const int64_t k0 = blk * kFusedRows, kb = std::min(kFusedRows, K - k0);
      gemm_serial(dwb.data(), M, StridedA(x + k0, 1, K), StridedB(dy, M, 1), kb, M, N);
      adam_apply(w + k0 * M, m + k0 * M, v + k0 * M, dwb.data(), kb * M, s);
    }
  }
}

}  // namespace microcnn
