// bf16 weights on AVX2/FMA (no bf16 arithmetic): each 256-bit load of the packed weights holds 8 columns x 2
// rows; a shift and a mask widen them to two float32 vectors, and the float32 activations are broadcast into
// FMAs. The gain over float32 is memory traffic: the weights are read at half the bytes (a batch-1 prediction
// through a large Dense layer is bound by that read).
#include <immintrin.h>

#include <algorithm>

#include "microcnn/bf16.hpp"

namespace microcnn::bf16_detail {

namespace {

constexpr int kMR = 4;            // rows of a register tile: 4 rows x 16 columns = 8 accumulators
constexpr int64_t kBlockPairs = 256;  // row pairs of the weights per K block (a 4x512 A block: 8 KB)

// c (mr, nc) [+]= a (mr, 2*kpn) @ w pair-rows [0, kpn) of a 16-column half panel; bias / relu when given.
// odd_tail: the last pair has only its first row (K odd): a's second value there is not read.
template <int MR>
void tile(int64_t kpn, const float* a, int64_t lda, bool odd_tail, const uint16_t* w, float* c, int64_t ldc, int nc,
          bool accumulate, const float* bias, bool relu) {
  __m256 acc0[MR], acc1[MR];
  for (int i = 0; i < MR; ++i) acc0[i] = acc1[i] = _mm256_setzero_ps();
  const __m256i high = _mm256_set1_epi32(static_cast<int>(0xffff0000u));
  const int64_t full = odd_tail ? kpn - 1 : kpn;
  for (int64_t p = 0; p < full; ++p) {
    const __m256i v0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + p * 64));
    const __m256i v1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + p * 64 + 16));
    const __m256 e0 = _mm256_castsi256_ps(_mm256_slli_epi32(v0, 16));
    const __m256 o0 = _mm256_castsi256_ps(_mm256_and_si256(v0, high));
    const __m256 e1 = _mm256_castsi256_ps(_mm256_slli_epi32(v1, 16));
    const __m256 o1 = _mm256_castsi256_ps(_mm256_and_si256(v1, high));
    for (int i = 0; i < MR; ++i) {
      const __m256 ae = _mm256_broadcast_ss(a + i * lda + 2 * p);
      const __m256 ao = _mm256_broadcast_ss(a + i * lda + 2 * p + 1);
      acc0[i] = _mm256_fmadd_ps(ae, e0, acc0[i]);
      acc1[i] = _mm256_fmadd_ps(ae, e1, acc1[i]);
      acc0[i] = _mm256_fmadd_ps(ao, o0, acc0[i]);
      acc1[i] = _mm256_fmadd_ps(ao, o1, acc1[i]);
    }
  }
  if (odd_tail) {
    const int64_t p = full;
    const __m256i v0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + p * 64));
    const __m256i v1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + p * 64 + 16));
    const __m256 e0 = _mm256_castsi256_ps(_mm256_slli_epi32(v0, 16));
    const __m256 e1 = _mm256_castsi256_ps(_mm256_slli_epi32(v1, 16));
    for (int i = 0; i < MR; ++i) {
      const __m256 ae = _mm256_broadcast_ss(a + i * lda + 2 * p);
      acc0[i] = _mm256_fmadd_ps(ae, e0, acc0[i]);
      acc1[i] = _mm256_fmadd_ps(ae, e1, acc1[i]);
    }
  }
  alignas(32) float out[MR][16];
  for (int i = 0; i < MR; ++i) {
    _mm256_store_ps(out[i], acc0[i]);
    _mm256_store_ps(out[i] + 8, acc1[i]);
  }
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < nc; ++j) {
      float v = out[i][j];
      if (accumulate) v += c[i * ldc + j];
      if (bias) v += bias[j];
      if (relu && v < 0.0f) v = 0.0f;  // NaN stays NaN
      c[i * ldc + j] = v;
    }
}

using TileFn = void (*)(int64_t, const float*, int64_t, bool, const uint16_t*, float*, int64_t, int, bool,
                        const float*, bool);
constexpr TileFn kTiles[kMR] = {tile<1>, tile<2>, tile<3>, tile<4>};

}  // namespace

void gemm_avx2(float* c, int64_t ldc, const float* a, int64_t lda, const uint16_t* w, int64_t N, int64_t K,
               int64_t j0, int64_t j1, const float* b, bool relu) {
  const int64_t KP = (K + 1) / 2;
  for (int64_t kp0 = 0; kp0 < KP; kp0 += kBlockPairs) {
    const int64_t kpn = std::min(kBlockPairs, KP - kp0);
    const bool first = kp0 == 0, last = kp0 + kpn == KP, odd_tail = last && K % 2 == 1;
    for (int64_t jt = j0; jt < j1; jt += 16) {
      // the 16-column half (jt % 32) / 16 of panel jt / 32: 32 values into each 64-value pair row
      const uint16_t* wt = w + (jt / kBf16PanelCols * KP + kp0) * 64 + (jt % kBf16PanelCols) * 2;
      const int nc = static_cast<int>(std::min<int64_t>(16, j1 - jt));
      for (int64_t i0 = 0; i0 < N; i0 += kMR) {
        const int mr = static_cast<int>(std::min<int64_t>(kMR, N - i0));
        kTiles[mr - 1](kpn, a + i0 * lda + 2 * kp0, lda, odd_tail, wt, c + i0 * ldc + jt, ldc, nc, !first,
                       last && b ? b + jt : nullptr, last && relu);
      }
    }
  }
}

}  // namespace microcnn::bf16_detail
