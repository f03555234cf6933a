// Naive dense loops: the oracle for the production kernels. Every output element is summed in a fixed order
// whatever the thread count: y and dw are split by column/row blocks of the output, dx by input feature.
#include <algorithm>

#include "microcnn/dense.hpp"
#include "microcnn/threads.hpp"

namespace microcnn::reference {

namespace {
// Columns of y per task: small enough that the N x block slice of y stays in L1 while w streams once.
constexpr int64_t kColumnBlock = 32;
// Below this many multiply-adds a parallel region costs more than it saves. Serial or parallel, every element
// is summed in the same order.
constexpr int64_t kParallelMinWork = 1 << 16;
}  // namespace

// x (N,K), w (K,M), b (M) or nullptr -> y (N,M)
void dense_forward(float* y, const float* x, const float* w, const float* b, int64_t N, int64_t K, int64_t M,
                   bool relu) {
  const int64_t blocks = (M + kColumnBlock - 1) / kColumnBlock;
  const double work = static_cast<double>(N * K) * static_cast<double>(M);  // multiply-adds
#pragma omp parallel if (work >= kParallelMinWork)
  {
    DenormalGuard guard;
#pragma omp for schedule(static)
    for (int64_t blk = 0; blk < blocks; ++blk) {
      const int64_t m0 = blk * kColumnBlock, m1 = std::min(M, m0 + kColumnBlock);
      for (int64_t n = 0; n < N; ++n)
        for (int64_t m = m0; m < m1; ++m) y[n * M + m] = b ? b[m] : 0.0f;
      for (int64_t k = 0; k < K; ++k) {
        const float* wk = w + k * M;
        for (int64_t n = 0; n < N; ++n) {
          const float xv = x[n * K + k];
          float* yn = y + n * M;
          for (int64_t m = m0; m < m1; ++m) yn[m] += xv * wk[m];
        }
      }
      if (relu)
        for (int64_t n = 0; n < N; ++n)
          for (int64_t m = m0; m < m1; ++m) y[n * M + m] = std::max(y[n * M + m], 0.0f);
    }
  }
}

// dy (N,M), x (N,K), w (K,M) -> dx (N,K) or nullptr, dw (K,M) or nullptr, db (M) or nullptr
void dense_backward(float* dx, float* dw, float* db, const float* dy, const float* x, const float* w, int64_t N,
                    int64_t K, int64_t M) {
  if (db) {
    std::fill(db, db + M, 0.0f);
    for (int64_t n = 0; n < N; ++n)
      for (int64_t m = 0; m < M; ++m) db[m] += dy[n * M + m];
  }
  const double work = static_cast<double>(N * K) * static_cast<double>(M);  // multiply-adds
#pragma omp parallel if (work >= kParallelMinWork)
  {
    DenormalGuard guard;
    // One input feature k per iteration: row k of dw and column k of dx.
#pragma omp for schedule(static)
    for (int64_t k = 0; k < K; ++k) {
      if (dw) {
        float* dwk = dw + k * M;
        std::fill(dwk, dwk + M, 0.0f);
        for (int64_t n = 0; n < N; ++n) {
          const float xv = x[n * K + k];
          const float* g = dy + n * M;
          for (int64_t m = 0; m < M; ++m) dwk[m] += xv * g[m];
        }
      }
      if (dx) {
        const float* wk = w + k * M;
        for (int64_t n = 0; n < N; ++n) {
          const float* g = dy + n * M;
          float acc = 0.0f;
          for (int64_t m = 0; m < M; ++m) acc += g[m] * wk[m];
          dx[n * K + k] = acc;
        }
      }
    }
  }
}

}  // namespace microcnn::reference
