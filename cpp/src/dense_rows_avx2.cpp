// See dense_rows.hpp. Compiled for AVX2/FMA.
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "dense_rows.hpp"
#include "microcnn/threads.hpp"

#ifdef MICROCNN_OPENMP
#include <omp.h>
#endif

namespace microcnn::dense_rows {

namespace {

constexpr int64_t kBlockRows = 256;

// Rows of w ahead of the one being read whose cache lines are prefetched: the hardware prefetcher alone left
// one core's stream at about 7.7 GB/s here. Batch-1 predict of the seed net on an idle 2-vCPU AVX2 machine
// (medians of 200 calls): 64x64x3 3.00 -> 1.87 ms (one thread), 150x150x3 14.6 -> 12.6 ms (two threads).
constexpr int64_t kAheadRows = 8;

// acc (N, M) += x[:, k0:k1] @ w[k0:k1, :], one row of w at a time.
void accumulate(float* acc, const float* x, int64_t K, const float* w, int64_t M, int64_t N, int64_t k0,
                int64_t k1) {
  const int64_t M8 = M / 8 * 8;
  for (int64_t k = k0; k < k1; ++k) {
    const float* wk = w + k * M;
    for (int64_t i = 0; i < N; ++i) {
      const float xv = x[i * K + k];
      const __m256 xb = _mm256_set1_ps(xv);
      float* a = acc + i * M;
      int64_t j = 0;
      for (; j < M8; j += 8) {
        if (i == 0 && (j & 15) == 0)  // one prefetch per 64-byte line (a hint: past the end it does nothing)
          _mm_prefetch(reinterpret_cast<const char*>(wk + kAheadRows * M + j), _MM_HINT_T0);
        _mm256_storeu_ps(a + j, _mm256_fmadd_ps(xb, _mm256_loadu_ps(wk + j), _mm256_loadu_ps(a + j)));
      }
      for (; j < M; ++j) a[j] = std::fma(xv, wk[j], a[j]);
    }
  }
}

}  // namespace

void forward_avx2(float* y, const float* x, const float* w, const float* b, int64_t N, int64_t K, int64_t M,
                  bool relu) {
  // Every thread streams its share of w's rows: with the prefetch, two streams beat one even for a matrix that
  // fits the last-level cache (16384 x 256, 16.8 MB: 1.87 -> 1.10 ms for the whole 64 px predict, idle machine).
  const bool parallel = 2.0 * N * K * M >= 4e6;
  const int threads = parallel ? static_cast<int>(std::min<int64_t>(get_num_threads(), K)) : 1;
  static thread_local std::vector<float> partial;  // the calling thread's, kept: no allocation once warm
  partial.assign(static_cast<size_t>(threads * N * M), 0.0f);
  float* partials = partial.data();
#pragma omp parallel num_threads(threads) if (threads > 1)
  {
    DenormalGuard guard;
    int t = 0;
#ifdef MICROCNN_OPENMP
    t = omp_get_thread_num();
#endif
    // Blocked summation: each block of rows from zero, then added to the thread's partial (the error of one
    // long running sum grows with K: 87616 rows in the seed net's first Dense at 150x150).
    static thread_local std::vector<float> block;
    block.resize(static_cast<size_t>(N * M));
    float* mine = partials + t * N * M;
    const int64_t k1 = K * (t + 1) / threads;
    for (int64_t k0 = K * t / threads; k0 < k1; k0 += kBlockRows) {
      std::fill(block.begin(), block.end(), 0.0f);
      accumulate(block.data(), x, K, w, M, N, k0, std::min(k1, k0 + kBlockRows));
      for (int64_t i = 0; i < N * M; ++i) mine[i] += block[i];
    }
  }
  for (int64_t i = 0; i < N * M; ++i) {
    float v = partials[i];
    for (int t = 1; t < threads; ++t) v += partials[t * N * M + i];
    if (b) v += b[i % M];
    if (relu && v < 0.0f) v = 0.0f;  // NaN stays NaN
    y[i] = v;
  }
}

}  // namespace microcnn::dense_rows
