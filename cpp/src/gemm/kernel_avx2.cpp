// AVX2/FMA micro-kernel: 6 x 16 tile (4 x 16 for a short last one), 12 ymm accumulators (-mavx2 -mfma only).
#include <immintrin.h>

#include "kernels.hpp"

namespace microcnn::gemm_detail {
namespace {

constexpr int MR = 6;
constexpr int MR_SHORT = 4;
constexpr int NR = 16;

// TM rows of the MR-row panel layout: MR, or MR_SHORT for a last tile of few rows.
template <bool ROWS, bool IN_PLACE, int TM>
void kernel(int64_t kc, const float* a, int64_t lda, const float* b, int64_t ldb, float* c, int64_t ldc,
            bool accumulate, const float* bias, bool relu, const float* pf) {
  // Packed row panels have a fixed row stride, which lets the compiler fold it into the addresses.
  if (!IN_PLACE) lda = kPackedRowStride;
  __m256 c0[TM], c1[TM];
#pragma GCC unroll 6
  for (int i = 0; i < TM; ++i) c0[i] = c1[i] = _mm256_setzero_ps();
  for (int64_t k = 0; k < kc; ++k) {
    if (IN_PLACE && pf) _mm_prefetch(reinterpret_cast<const char*>(pf + k * kLineFloats), _MM_HINT_T1);
    const __m256 b0 = _mm256_loadu_ps(b);
    const __m256 b1 = _mm256_loadu_ps(b + 8);
#pragma GCC unroll 6
    for (int i = 0; i < TM; ++i) {
      const __m256 ai = _mm256_broadcast_ss(ROWS ? a + i * lda : a + i);
      c0[i] = _mm256_fmadd_ps(ai, b0, c0[i]);
      c1[i] = _mm256_fmadd_ps(ai, b1, c1[i]);
    }
    a += ROWS ? 1 : MR;
    b += ldb;
  }
  const __m256 zero = _mm256_setzero_ps();
  const __m256 bias0 = bias ? _mm256_loadu_ps(bias) : zero;
  const __m256 bias1 = bias ? _mm256_loadu_ps(bias + 8) : zero;
#pragma GCC unroll 6
  for (int i = 0; i < TM; ++i) {
    float* ci = c + i * ldc;
    __m256 v0 = c0[i], v1 = c1[i];
    if (accumulate) {
      v0 = _mm256_add_ps(v0, _mm256_loadu_ps(ci));
      v1 = _mm256_add_ps(v1, _mm256_loadu_ps(ci + 8));
    }
    if (bias) {
      v0 = _mm256_add_ps(v0, bias0);
      v1 = _mm256_add_ps(v1, bias1);
    }
    if (relu) {  // max_ps returns its second operand for a NaN: NaN stays NaN, like std::max(v, 0.0f)
      v0 = _mm256_max_ps(zero, v0);
      v1 = _mm256_max_ps(zero, v1);
    }
    _mm256_storeu_ps(ci, v0);
    _mm256_storeu_ps(ci + 8, v1);
  }
}

}  // namespace

const KernelInfo& avx2_kernel() {
  static const KernelInfo info{Isa::avx2, "avx2/fma", MR, NR, MR_SHORT, 240, 256, 2048, true,
                               {{{kernel<false, false, MR>, kernel<false, true, MR>},
                                 {kernel<true, false, MR>, kernel<true, true, MR>}},
                                {{kernel<false, false, MR_SHORT>, kernel<false, true, MR_SHORT>},
                                 {kernel<true, false, MR_SHORT>, kernel<true, true, MR_SHORT>}}}};
  return info;
}

}  // namespace microcnn::gemm_detail
