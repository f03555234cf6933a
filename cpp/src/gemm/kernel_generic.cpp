// Portable micro-kernel: plain loops the compiler vectorises for whatever baseline the target has.
#include "kernels.hpp"

namespace microcnn::gemm_detail {
namespace {

constexpr int MR = 4;
constexpr int NR = 16;

template <bool ROWS, bool IN_PLACE>
void kernel(int64_t kc, const float* a, int64_t lda, const float* b, int64_t ldb, float* c, int64_t ldc,
            bool accumulate, const float* bias, bool relu, const float* pf) {
  // Packed row panels have a fixed row stride, which lets the compiler fold it into the addresses.
  if (!IN_PLACE) lda = kPackedRowStride;
  float acc[MR][NR] = {};
  for (int64_t k = 0; k < kc; ++k) {
#if defined(__GNUC__)
    if (IN_PLACE && pf) __builtin_prefetch(pf + k * kLineFloats, 0, 2);
#endif
    for (int i = 0; i < MR; ++i) {
      const float ai = ROWS ? a[i * lda] : a[i];
      for (int j = 0; j < NR; ++j) acc[i][j] += ai * b[j];
    }
    a += ROWS ? 1 : MR;
    b += ldb;
  }
  for (int i = 0; i < MR; ++i) {
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
  static const KernelInfo info{Isa::generic, "generic", MR, NR, 256, 256, 2048,
                               kernel<false, false>, kernel<true, false>, kernel<false, true>, kernel<true, true>};
  return info;
}

}  // namespace microcnn::gemm_detail
