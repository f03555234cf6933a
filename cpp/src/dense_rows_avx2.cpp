// See dense_rows.hpp. Compiled for AVX2/FMA.
#include <immintrin.h>
#include <unistd.h>

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

// The last-level cache's size. A weight matrix that fits is streamed by one thread: read from that cache, one
// core's stream is about as fast as two, and a second thread costs its wake-up (16384 x 256 floats, 16.8 MB,
// with a 32 MB L3: 0.93-1.55 ms on one thread, 1.23-1.68 ms on two, interleaved, shared machine). A larger one
// comes from memory, where two streams are faster (87616 x 256: 11.6-13.4 ms on one, 7.1-12.4 ms on two).
double cache_bytes() {
#ifdef _SC_LEVEL3_CACHE_SIZE
  static const double bytes = [] {
    const long l3 = sysconf(_SC_LEVEL3_CACHE_SIZE);
    return l3 > 0 ? static_cast<double>(l3) : 8.0 * (1 << 20);
  }();
  return bytes;
#else
  return 8.0 * (1 << 20);
#endif
}

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
      for (; j < M8; j += 8)
        _mm256_storeu_ps(a + j, _mm256_fmadd_ps(xb, _mm256_loadu_ps(wk + j), _mm256_loadu_ps(a + j)));
      for (; j < M; ++j) a[j] = std::fma(xv, wk[j], a[j]);
    }
  }
}

}  // namespace

void forward_avx2(float* y, const float* x, const float* w, const float* b, int64_t N, int64_t K, int64_t M,
                  bool relu) {
  const bool parallel = 2.0 * N * K * M >= 4e6 && static_cast<double>(K) * M * sizeof(float) > cache_bytes();
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
