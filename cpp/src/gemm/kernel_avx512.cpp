// AVX-512 micro-kernel: 12 x 32 tile (8 x 32 for a short last one), 24 zmm accumulators (-mavx512f -mavx512dq).
#include <immintrin.h>

#include "kernels.hpp"

namespace microcnn::gemm_detail {
namespace {

constexpr int MR = 12;
constexpr int MR_SHORT = 8;
constexpr int NR = 32;

// TM rows of the MR-row panel layout: MR, or MR_SHORT for a last tile of few rows.
template <bool ROWS, bool IN_PLACE, int TM>
void kernel(int64_t kc, const float* a, int64_t lda, const float* b, int64_t ldb, float* c, int64_t ldc,
            bool accumulate, const float* bias, bool relu, const float* pf) {
  // Packed row panels have a fixed row stride, which lets the compiler fold it into the addresses.
  if (!IN_PLACE) lda = kPackedRowStride;
  __m512 c0[TM], c1[TM];
#pragma GCC unroll 12
  for (int i = 0; i < TM; ++i) c0[i] = c1[i] = _mm512_setzero_ps();
  for (int64_t k = 0; k < kc; ++k) {
    if (IN_PLACE && pf) _mm_prefetch(reinterpret_cast<const char*>(pf + k * kLineFloats), _MM_HINT_T1);
    const __m512 b0 = _mm512_loadu_ps(b);
    const __m512 b1 = _mm512_loadu_ps(b + 16);
#pragma GCC unroll 12
    for (int i = 0; i < TM; ++i) {
      const __m512 ai = _mm512_set1_ps(ROWS ? a[i * lda] : a[i]);
      c0[i] = _mm512_fmadd_ps(ai, b0, c0[i]);
      c1[i] = _mm512_fmadd_ps(ai, b1, c1[i]);
    }
    a += ROWS ? 1 : MR;
    b += ldb;
  }
  const __m512 zero = _mm512_setzero_ps();
  const __m512 bias0 = bias ? _mm512_loadu_ps(bias) : zero;
  const __m512 bias1 = bias ? _mm512_loadu_ps(bias + 16) : zero;
#pragma GCC unroll 12
  for (int i = 0; i < TM; ++i) {
    float* ci = c + i * ldc;
    __m512 v0 = c0[i], v1 = c1[i];
    if (accumulate) {
      v0 = _mm512_add_ps(v0, _mm512_loadu_ps(ci));
      v1 = _mm512_add_ps(v1, _mm512_loadu_ps(ci + 16));
    }
    if (bias) {
      v0 = _mm512_add_ps(v0, bias0);
      v1 = _mm512_add_ps(v1, bias1);
    }
    if (relu) {  // max_ps returns its second operand for a NaN: NaN stays NaN, like std::max(v, 0.0f)
      v0 = _mm512_max_ps(zero, v0);
      v1 = _mm512_max_ps(zero, v1);
    }
    _mm512_storeu_ps(ci, v0);
    _mm512_storeu_ps(ci + 16, v1);
  }
}

}  // namespace

const KernelInfo& avx512_kernel() {
  static const KernelInfo info{Isa::avx512, "avx512", MR, NR, MR_SHORT, 240, 256, 2048, true,
                               {{{kernel<false, false, MR>, kernel<false, true, MR>},
                                 {kernel<true, false, MR>, kernel<true, true, MR>}},
                                {{kernel<false, false, MR_SHORT>, kernel<false, true, MR_SHORT>},
                                 {kernel<true, false, MR_SHORT>, kernel<true, true, MR_SHORT>}}}};
  return info;
}

}  // namespace microcnn::gemm_detail
