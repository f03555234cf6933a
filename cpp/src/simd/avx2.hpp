// Internal: the AVX2/FMA vector traits the SIMD templates (gemm/microkernel.hpp, conv_direct_tiles.hpp)
// are instantiated with; include only from files compiled for -mavx2 -mfma. The struct is in an anonymous
// namespace, so each including file gets its own copy and the instantiations over it stay internal to it.
#pragma once
#include <immintrin.h>

namespace microcnn {
namespace {

struct Avx2 {
  using reg = __m256;
  using mask = __m256i;
  static constexpr int width = 8;
  static constexpr bool split_tail = true;  // masked loads are slower than plain ones on AVX2
  static constexpr int stream_alignment = 32;
  static reg zero() { return _mm256_setzero_ps(); }
  static reg loadu(const float* p) { return _mm256_loadu_ps(p); }
  static reg broadcast(const float* p) { return _mm256_broadcast_ss(p); }
  static reg fmadd(reg a, reg b, reg c) { return _mm256_fmadd_ps(a, b, c); }
  static reg add(reg a, reg b) { return _mm256_add_ps(a, b); }
  static reg max(reg a, reg b) { return _mm256_max_ps(a, b); }
  static void storeu(float* p, reg v) { _mm256_storeu_ps(p, v); }
  // All-ones in lanes [0, nk - v*width) of the vector v: the operand of maskload/maskstore.
  static mask lane_mask(int nk, int v) {
    const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(nk - v * width), lanes);
  }
  static reg load_masked(const float* p, mask m) { return _mm256_maskload_ps(p, m); }
  static void store_block(float* p, mask m, reg v, bool whole) {
    if (whole)
      _mm256_storeu_ps(p, v);
    else
      _mm256_maskstore_ps(p, m, v);
  }
  static void prefetch_l2(const float* p) { _mm_prefetch(reinterpret_cast<const char*>(p), _MM_HINT_T1); }
  static void prefetch_pixel(const float* p, int /*kv*/) {
    _mm_prefetch(reinterpret_cast<const char*>(p), _MM_HINT_T0);
  }
  static void stream(char* d, const char* s) {
    _mm256_stream_si256(reinterpret_cast<__m256i*>(d), _mm256_loadu_si256(reinterpret_cast<const __m256i*>(s)));
  }
  static void fence() { _mm_sfence(); }
};

}  // namespace
}  // namespace microcnn
