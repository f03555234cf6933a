// Internal: the AVX-512 vector traits the SIMD templates (gemm/microkernel.hpp, conv_direct_tiles.hpp)
// are instantiated with; include only from files compiled for -mavx512f -mavx512dq. The struct is in an anonymous
// namespace, so each including file gets its own copy and the instantiations over it stay internal to it.
#pragma once
#include <immintrin.h>

namespace microcnn {
namespace {

struct Avx512 {
  using reg = __m512;
  using mask = __mmask16;
  static constexpr int width = 16;
  static constexpr bool split_tail = false;  // masked loads cost nothing extra: every block goes masked
  static constexpr int stream_alignment = 64;
  static reg zero() { return _mm512_setzero_ps(); }
  static reg loadu(const float* p) { return _mm512_loadu_ps(p); }
  static reg broadcast(const float* p) { return _mm512_set1_ps(*p); }
  static reg fmadd(reg a, reg b, reg c) { return _mm512_fmadd_ps(a, b, c); }
  static reg add(reg a, reg b) { return _mm512_add_ps(a, b); }
  static reg max(reg a, reg b) { return _mm512_max_ps(a, b); }
  static void storeu(float* p, reg v) { _mm512_storeu_ps(p, v); }
  // Lanes [0, n) of the vector v of a block with nk valid channels.
  static mask lane_mask(int nk, int v) {
    const int n = nk - v * width;
    return n >= width ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << n) - 1u);
  }
  // Masked lanes read nothing past the row.
  static reg load_masked(const float* p, mask m) { return _mm512_maskz_loadu_ps(m, p); }
  static void store_block(float* p, mask m, reg v, bool /*whole*/) { _mm512_mask_storeu_ps(p, m, v); }
  static void prefetch_l2(const float* p) { _mm_prefetch(reinterpret_cast<const char*>(p), _MM_HINT_T1); }
  static void prefetch_pixel(const float* p, int kv) {
    for (int v = 0; v < kv; ++v) _mm_prefetch(reinterpret_cast<const char*>(p + v * width), _MM_HINT_T0);
  }
  static void stream(char* d, const char* s) {
    _mm512_stream_si512(reinterpret_cast<__m512i*>(d), _mm512_loadu_si512(reinterpret_cast<const __m512i*>(s)));
  }
  static void fence() { _mm_sfence(); }
};

}  // namespace
}  // namespace microcnn
