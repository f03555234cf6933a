// AVX-512 micro-kernel: 12 x 32 tile (8 x 32 for a short last one), 24 zmm accumulators (-mavx512f -mavx512dq).
#include <immintrin.h>

#include "microkernel.hpp"

namespace microcnn::gemm_detail {
namespace {

struct Avx512 {
  using reg = __m512;
  static constexpr int width = 16;
  static reg zero() { return _mm512_setzero_ps(); }
  static reg loadu(const float* p) { return _mm512_loadu_ps(p); }
  static reg broadcast(const float* p) { return _mm512_set1_ps(*p); }
  static reg fmadd(reg a, reg b, reg c) { return _mm512_fmadd_ps(a, b, c); }
  static reg add(reg a, reg b) { return _mm512_add_ps(a, b); }
  static reg max(reg a, reg b) { return _mm512_max_ps(a, b); }
  static void storeu(float* p, reg v) { _mm512_storeu_ps(p, v); }
  static void prefetch_l2(const float* p) { _mm_prefetch(reinterpret_cast<const char*>(p), _MM_HINT_T1); }
};

}  // namespace

const KernelInfo& avx512_kernel() {
  static const KernelInfo info = simd_kernel_info<Avx512, 12, 8>(Isa::avx512, "avx512", 240, 256, 2048);
  return info;
}

}  // namespace microcnn::gemm_detail
