// AVX2/FMA direct-convolution micro-kernels (compiled with -mavx2 -mfma only). A K block is 1 or 2 ymm of
// output channels; forward: 6 pixels x 2 ymm = 12 accumulators, backward: 5 taps x 2 ymm (+ 2 for db).
#include <immintrin.h>

#include <cstdint>

#include "conv_direct.hpp"
#include "conv_direct_pool.hpp"

// GCC's predictive commoning notices that pixel i+1 reads at tap j what pixel i reads at tap j + XS, and
// carries those scalars across iterations in stack slots: it spills the whole register tile.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-predictive-commoning")
#endif

#include "conv_direct_tiles.hpp"

namespace microcnn::conv_direct {
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
  static void prefetch_pixel(const float* p, int /*kv*/) {
    _mm_prefetch(reinterpret_cast<const char*>(p), _MM_HINT_T0);
  }
  static void stream(char* d, const char* s) {
    _mm256_stream_si256(reinterpret_cast<__m256i*>(d), _mm256_loadu_si256(reinterpret_cast<const __m256i*>(s)));
  }
  static void fence() { _mm_sfence(); }
};

}  // namespace

const Kernels& avx2_kernels() {
  static const Kernels k = simd_kernels<Avx2, 6, 5>(Isa::avx2, std::make_integer_sequence<int, kMaxPixelStep>{});
  return k;
}

}  // namespace microcnn::conv_direct
