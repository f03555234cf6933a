// AVX-512 direct-convolution micro-kernels (compiled with -mavx512f -mavx512dq only). A K block is 1 or 2 zmm
// of output channels; forward: 14 pixels x 2 zmm = 28 accumulators, backward: 13 taps x 2 zmm (+ 2 for db).
#include <immintrin.h>

#include <array>
#include <cstdint>
#include <cstring>
#include <utility>

#include "conv_direct.hpp"
#include "conv_direct_pool.hpp"

// GCC's predictive commoning notices that pixel i+1 reads at tap j what pixel i reads at tap j + XS, and
// carries those scalars across iterations in stack slots: it spills the whole register tile.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-predictive-commoning")
#endif

namespace microcnn::conv_direct {
namespace {

constexpr int VEC = 16;
constexpr int MR = 14;
constexpr int MAX_TAPS = 13;

// Lanes [0, n) of the vector v of a block with nk valid channels.
__mmask16 lane_mask(int nk, int v) {
  const int n = nk - v * VEC;
  return n >= VEC ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << n) - 1u);
}

template <int XS, int KV>
void forward_tile(float* y, int64_t ldy, const float* band, int64_t band_stride, int /*xs*/, int R, int SC,
                  const float* w, int64_t ldw, const float* bias, bool relu, int npix, int nk) {
  const __m512 zero = _mm512_setzero_ps();
  __m512 acc[MR][KV];
#pragma GCC unroll 2
  for (int v = 0; v < KV; ++v) {
    const __m512 b = bias ? _mm512_loadu_ps(bias + v * VEC) : zero;
#pragma GCC unroll 14
    for (int i = 0; i < MR; ++i) acc[i][v] = b;
  }
  for (int r = 0; r < R; ++r) {
    const float* xr = band + r * band_stride;
    const float* wr = w + static_cast<int64_t>(r) * SC * ldw;
    for (int j = 0; j < SC; ++j) {
      __m512 wv[KV];
#pragma GCC unroll 2
      for (int v = 0; v < KV; ++v) wv[v] = _mm512_loadu_ps(wr + v * VEC);
#pragma GCC unroll 14
      for (int i = 0; i < MR; ++i) {
        const __m512 xb = _mm512_set1_ps(xr[i * XS + j]);
#pragma GCC unroll 2
        for (int v = 0; v < KV; ++v) acc[i][v] = _mm512_fmadd_ps(xb, wv[v], acc[i][v]);
      }
      wr += ldw;
    }
  }
  __mmask16 mask[KV];
#pragma GCC unroll 2
  for (int v = 0; v < KV; ++v) mask[v] = lane_mask(nk, v);
#pragma GCC unroll 14
  for (int i = 0; i < MR; ++i) {
    if (i >= npix) break;
#pragma GCC unroll 2
    for (int v = 0; v < KV; ++v) {
      // max_ps returns its second operand for a NaN: NaN stays NaN, like std::max(v, 0.0f)
      const __m512 out = relu ? _mm512_max_ps(zero, acc[i][v]) : acc[i][v];
      _mm512_mask_storeu_ps(y + i * ldy + v * VEC, mask[v], out);
    }
  }
}

template <int T, int KV, bool DB>
void backward_tile(float* dw, int64_t ldw, float* db, const float* x, int64_t xs, const float* dy, int64_t ldy,
                   int64_t npix, int nk, const float* prefetch) {
  __m512 acc[T][KV], dbacc[KV];
  __mmask16 mask[KV];
#pragma GCC unroll 2
  for (int v = 0; v < KV; ++v) {
    mask[v] = lane_mask(nk, v);
    dbacc[v] = _mm512_setzero_ps();
#pragma GCC unroll 13
    for (int t = 0; t < T; ++t) acc[t][v] = _mm512_setzero_ps();
  }
  for (int64_t q = 0; q < npix; ++q) {
    if (prefetch) {
#pragma GCC unroll 2
      for (int v = 0; v < KV; ++v) _mm_prefetch(reinterpret_cast<const char*>(prefetch + v * VEC), _MM_HINT_T0);
      prefetch += ldy;
    }
    __m512 g[KV];
#pragma GCC unroll 2
    for (int v = 0; v < KV; ++v) {
      g[v] = _mm512_maskz_loadu_ps(mask[v], dy + v * VEC);  // masked lanes read nothing past the row
      if (DB) dbacc[v] = _mm512_add_ps(dbacc[v], g[v]);
    }
#pragma GCC unroll 13
    for (int t = 0; t < T; ++t) {
      const __m512 xb = _mm512_set1_ps(x[t]);
#pragma GCC unroll 2
      for (int v = 0; v < KV; ++v) acc[t][v] = _mm512_fmadd_ps(xb, g[v], acc[t][v]);
    }
    x += xs;
    dy += ldy;
  }
  // The caller's dw rows are padded to whole vectors: full-width read-modify-write is in bounds.
#pragma GCC unroll 13
  for (int t = 0; t < T; ++t)
#pragma GCC unroll 2
    for (int v = 0; v < KV; ++v) {
      float* d = dw + t * ldw + v * VEC;
      _mm512_storeu_ps(d, _mm512_add_ps(_mm512_loadu_ps(d), acc[t][v]));
    }
  if (DB)
#pragma GCC unroll 2
    for (int v = 0; v < KV; ++v)
      _mm512_storeu_ps(db + v * VEC, _mm512_add_ps(_mm512_loadu_ps(db + v * VEC), dbacc[v]));
}

void stream_copy(void* dst, const void* src, int64_t n) {
  // As bytes and integer vectors: the words may be int32 (argmax) as well as floats.
  char* d = static_cast<char*>(dst);
  const char* s = static_cast<const char*>(src);
  int64_t i = 0;
  for (; i < n && (reinterpret_cast<uintptr_t>(d + 4 * i) & 63) != 0; ++i) std::memcpy(d + 4 * i, s + 4 * i, 4);
  for (; i + VEC <= n; i += VEC)
    _mm512_stream_si512(reinterpret_cast<__m512i*>(d + 4 * i), _mm512_loadu_si512(reinterpret_cast<const __m512i*>(s + 4 * i)));
  if (i < n) std::memcpy(d + 4 * i, s + 4 * i, sizeof(float) * (n - i));
  _mm_sfence();
}

template <int KV, bool DB, int... I>
constexpr std::array<BackwardTile, sizeof...(I)> backward_table(std::integer_sequence<int, I...>) {
  return {&backward_tile<I + 1, KV, DB>...};
}

BackwardTile backward(int taps, int kv, bool db) {
  static constexpr auto seq = std::make_integer_sequence<int, MAX_TAPS>{};
  static constexpr auto t1 = backward_table<1, false>(seq), t2 = backward_table<2, false>(seq);
  static constexpr auto t1db = backward_table<1, true>(seq), t2db = backward_table<2, true>(seq);
  const auto& table = kv == 1 ? (db ? t1db : t1) : (db ? t2db : t2);
  return table[taps - 1];
}

}  // namespace

const Kernels& avx512_kernels() {
  static const Kernels k{Isa::avx512,
                         VEC,
                         MR,
                         MAX_TAPS,
                         {{forward_tile<1, 1>, forward_tile<1, 2>},
                          {forward_tile<2, 1>, forward_tile<2, 2>},
                          {forward_tile<3, 1>, forward_tile<3, 2>},
                          {forward_tile<4, 1>, forward_tile<4, 2>},
                          {forward_tile<5, 1>, forward_tile<5, 2>},
                          {forward_tile<6, 1>, forward_tile<6, 2>},
                          {forward_tile<7, 1>, forward_tile<7, 2>},
                          {forward_tile<8, 1>, forward_tile<8, 2>}},
                         backward,
                         stream_copy,
                         pool_rows,
                         unpool_rows_impl};
  return k;
}

}  // namespace microcnn::conv_direct
