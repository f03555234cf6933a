// Portable micro-kernel (4 x 16 tile, 2 x 16 for a short last one): plain loops the compiler vectorises.
#include "kernels.hpp"

namespace microcnn::gemm_detail {
namespace {

constexpr int MR = 4;
constexpr int MR_SHORT = 2;
constexpr int NR = 16;

// TM rows of the MR-row panel layout: MR, or MR_SHORT for a last tile of few rows.
template <bool ROWS, bool IN_PLACE, int TM>
void kernel(int64_t kc, const float* a, int64_t lda, const float* b, int64_t ldb, float* c, int64_t ldc,
            bool accumulate, const float* bias, bool relu, const float* pf) {
  // Packed row panels have a fixed row stride, which lets the compiler fold it into the addresses.
  if (!IN_PLACE) lda = kPackedRowStride;
  float acc[TM][NR] = {};
  for (int64_t k = 0; k < kc; ++k) {
#if defined(__GNUC__)
    if (IN_PLACE && pf) __builtin_prefetch(pf + k * kLineFloats, 0, 2);
#endif
    for (int i = 0; i < TM; ++i) {
      const float ai = ROWS ? a[i * lda] : a[i];
      for (int j = 0; j < NR; ++j) acc[i][j] += ai * b[j];
    }
    a += ROWS ? 1 : MR;
    b += ldb;
  }
  for (int i = 0; i < TM; ++i) {
    float* ci = c + i * ldc;
    for (int j = 0; j < NR; ++j) {
      float v = acc[i][j];
      if (accumulate) v += ci[j];
      if (bias) v += bias[j];
      if (relu && v < 0.0f) v = 0.0f;  // NaN stays NaN
      ci[j] = v;
    }
  }
}

}  // namespace

const KernelInfo& generic_kernel() {
  static const KernelInfo info{Isa::generic, "generic", MR, NR, MR_SHORT, 256, 256, 2048, false,
                               {{{kernel<false, false, MR>, kernel<false, true, MR>},
                                 {kernel<true, false, MR>, kernel<true, true, MR>}},
                                {{kernel<false, false, MR_SHORT>, kernel<false, true, MR_SHORT>},
                                 {kernel<true, false, MR_SHORT>, kernel<true, true, MR_SHORT>}}}};
  return info;
}

}  // namespace microcnn::gemm_detail
