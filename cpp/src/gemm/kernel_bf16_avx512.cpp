// bf16 on AVX512_BF16: activations rounded to bf16 (vcvtne2ps2bf16) into a small per-thread buffer, then
// vdpbf16ps: each instruction multiplies 16 column pairs of bf16 and adds both products to float32
// accumulators (twice the multiply-adds of a float32 FMA per instruction, half the weight bytes).
// Compiled with -mavx512bf16 only when the compiler supports it (MICROCNN_AVX512_BF16); chosen at run time when
// the CPU has it (bf16.cpp).
#include <immintrin.h>

#include <algorithm>
#include <vector>

#include "microcnn/bf16.hpp"

namespace microcnn::bf16_detail {

namespace {

constexpr int kMR = 8;                // rows of a register tile: 8 rows x 32 columns = 16 accumulators
constexpr int64_t kBlockPairs = 256;  // row pairs per K block

// a rows [0, mr) x values [2*kp0, 2*kp0 + 2*kpn) -> bf16 pairs ap[i*kBlockPairs + p] (zero past K).
void convert_rows(uint32_t* ap, const float* a, int64_t lda, int mr, int64_t kp0, int64_t kpn, int64_t K) {
  for (int i = 0; i < mr; ++i) {
    const float* row = a + i * lda;
    for (int64_t p = 0; p < kpn; p += 16) {  // 32 values -> 16 pairs
      const int64_t k = 2 * (kp0 + p);
      const int64_t left = std::max<int64_t>(0, std::min<int64_t>(32, K - k));
      const __mmask16 m_lo = static_cast<__mmask16>(left >= 16 ? 0xffff : (1u << left) - 1);
      const __mmask16 m_hi = static_cast<__mmask16>(left >= 32 ? 0xffff : left > 16 ? (1u << (left - 16)) - 1 : 0);
      const __m512 lo = _mm512_maskz_loadu_ps(m_lo, row + k);
      const __m512 hi = _mm512_maskz_loadu_ps(m_hi, row + k + 16);
      const __m512bh packed = _mm512_cvtne2ps_pbh(hi, lo);
      const int64_t n = std::min<int64_t>(16, kpn - p);
      _mm512_mask_storeu_epi32(ap + i * kBlockPairs + p, static_cast<__mmask16>((1u << n) - 1),
                               (__m512i)packed);
    }
  }
}

template <int MR>
void tile(int64_t kpn, const uint32_t* ap, const uint16_t* w, float* c, int64_t ldc, int nc, bool accumulate,
          const float* bias, bool relu) {
  __m512 acc0[MR], acc1[MR];
  for (int i = 0; i < MR; ++i) acc0[i] = acc1[i] = _mm512_setzero_ps();
  for (int64_t p = 0; p < kpn; ++p) {
    const __m512i b0 = _mm512_loadu_si512(w + p * 64);
    const __m512i b1 = _mm512_loadu_si512(w + p * 64 + 32);
    for (int i = 0; i < MR; ++i) {
      const __m512i av = _mm512_set1_epi32(static_cast<int>(ap[i * kBlockPairs + p]));
      acc0[i] = _mm512_dpbf16_ps(acc0[i], (__m512bh)av, (__m512bh)b0);
      acc1[i] = _mm512_dpbf16_ps(acc1[i], (__m512bh)av, (__m512bh)b1);
    }
  }
  const __mmask16 m0 = static_cast<__mmask16>(nc >= 16 ? 0xffff : (1u << nc) - 1);
  const __mmask16 m1 = static_cast<__mmask16>(nc >= 32 ? 0xffff : nc > 16 ? (1u << (nc - 16)) - 1 : 0);
  const __m512 zero = _mm512_setzero_ps();
  for (int i = 0; i < MR; ++i) {
    float* ci = c + i * ldc;
    __m512 v0 = acc0[i], v1 = acc1[i];
    if (accumulate) {
      v0 = _mm512_add_ps(v0, _mm512_maskz_loadu_ps(m0, ci));
      v1 = _mm512_add_ps(v1, _mm512_maskz_loadu_ps(m1, ci + 16));
    }
    if (bias) {
      v0 = _mm512_add_ps(v0, _mm512_maskz_loadu_ps(m0, bias));
      v1 = _mm512_add_ps(v1, _mm512_maskz_loadu_ps(m1, bias + 16));
    }
    if (relu) {  // max(0, v) with the NaN passed through (max_ps returns its second operand on NaN)
      v0 = _mm512_max_ps(zero, v0);
      v1 = _mm512_max_ps(zero, v1);
    }
    _mm512_mask_storeu_ps(ci, m0, v0);
    _mm512_mask_storeu_ps(ci + 16, m1, v1);
  }
}

using TileFn = void (*)(int64_t, const uint32_t*, const uint16_t*, float*, int64_t, int, bool, const float*, bool);
constexpr TileFn kTiles[kMR] = {tile<1>, tile<2>, tile<3>, tile<4>, tile<5>, tile<6>, tile<7>, tile<8>};

}  // namespace

void gemm_avx512_bf16(float* c, int64_t ldc, const float* a, int64_t lda, const uint16_t* w, int64_t N, int64_t K,
                      int64_t j0, int64_t j1, const float* b, bool relu) {
  const int64_t KP = (K + 1) / 2;
  static thread_local std::vector<uint32_t> pairs;
  pairs.resize(static_cast<size_t>(kMR * kBlockPairs));
  for (int64_t kp0 = 0; kp0 < KP; kp0 += kBlockPairs) {
    const int64_t kpn = std::min(kBlockPairs, KP - kp0);
    const bool first = kp0 == 0, last = kp0 + kpn == KP;
    for (int64_t i0 = 0; i0 < N; i0 += kMR) {
      const int mr = static_cast<int>(std::min<int64_t>(kMR, N - i0));
      convert_rows(pairs.data(), a + i0 * lda, lda, mr, kp0, kpn, K);
      for (int64_t jt = j0; jt < j1; jt += kBf16PanelCols) {
        const uint16_t* wt = w + (jt / kBf16PanelCols * KP + kp0) * 64;
        const int nc = static_cast<int>(std::min<int64_t>(kBf16PanelCols, j1 - jt));
        kTiles[mr - 1](kpn, pairs.data(), wt, c + i0 * ldc + jt, ldc, nc, !first, last && b ? b + jt : nullptr,
                       last && relu);
      }
    }
  }
}

}  // namespace microcnn::bf16_detail
