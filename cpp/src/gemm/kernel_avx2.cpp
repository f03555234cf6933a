// AVX2/FMA micro-kernel: 6 x 16 tile (4 x 16 for a short last one), 12 ymm accumulators (-mavx2 -mfma only).
#include <immintrin.h>

#include "microkernel.hpp"

namespace microcnn::gemm_detail {
namespace {

struct Avx2 {
  using reg = __m256;
  static constexpr int width = 8;
  static reg zero() { return _mm256_setzero_ps(); }
  static reg loadu(const float* p) { return _mm256_loadu_ps(p); }
  static reg broadcast(const float* p) { return _mm256_broadcast_ss(p); }
  static reg fmadd(reg a, reg b, reg c) { return _mm256_fmadd_ps(a, b, c); }
  static reg add(reg a, reg b) { return _mm256_add_ps(a, b); }
  static reg max(reg a, reg b) { return _mm256_max_ps(a, b); }
  static void storeu(float* p, reg v) { _mm256_storeu_ps(p, v); }
  static void prefetch_l2(const float* p) { _mm_prefetch(reinterpret_cast<const char*>(p), _MM_HINT_T1); }
};

}  // namespace

const KernelInfo& avx2_kernel() {
  static const KernelInfo info = simd_kernel_info<Avx2, 6, 4>(Isa::avx2, "avx2/fma", 240, 256, 2048);
  return info;
}

}  // namespace microcnn::gemm_detail
