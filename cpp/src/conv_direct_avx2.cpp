// AVX2/FMA direct-convolution micro-kernels (compiled with -mavx2 -mfma only). A K block is 1 or 2 ymm of
// output channels; forward: 6 pixels x 2 ymm = 12 accumulators, backward: 5 taps x 2 ymm (+ 2 for db).
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

constexpr int VEC = 8;
constexpr int MR = 6;
constexpr int MAX_TAPS = 5;

// All-ones in lanes [0, nk - v*VEC) of the vector v: the operand of maskload/maskstore.
__m256i lane_mask(int nk, int v) {
  const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(nk - v * VEC), lanes);
}

template <int XS, int KV>
void forward_tile(float* y, int64_t ldy, const float* band, int64_t band_stride, int /*xs*/, int R, int SC,
                  const float* w, int64_t ldw, const float* bias, bool relu, int npix, int nk) {
  const __m256 zero = _mm256_setzero_ps();
  __m256 acc[MR][KV];
#pragma GCC unroll 2
  for (int v = 0; v < KV; ++v) {
    const __m256 b = bias ? _mm256_loadu_ps(bias + v * VEC) : zero;
#pragma GCC unroll 6
    for (int i = 0; i < MR; ++i) acc[i][v] = b;
  }
  for (int r = 0; r < R; ++r) {
    const float* xr = band + r * band_stride;
    const float* wr = w + static_cast<int64_t>(r) * SC * ldw;
    for (int j = 0; j < SC; ++j) {
      __m256 wv[KV];
#pragma GCC unroll 2
      for (int v = 0; v < KV; ++v) wv[v] = _mm256_loadu_ps(wr + v * VEC);
#pragma GCC unroll 6
      for (int i = 0; i < MR; ++i) {
        const __m256 xb = _mm256_broadcast_ss(xr + i * XS + j);
#pragma GCC unroll 2
        for (int v = 0; v < KV; ++v) acc[i][v] = _mm256_fmadd_ps(xb, wv[v], acc[i][v]);
      }
      wr += ldw;
    }
  }
  const bool full = nk == KV * VEC;
  __m256i mask[KV];
#pragma GCC unroll 2
  for (int v = 0; v < KV; ++v) mask[v] = lane_mask(nk, v);
#pragma GCC unroll 6
  for (int i = 0; i < MR; ++i) {
    if (i >= npix) break;
#pragma GCC unroll 2
    for (int v = 0; v < KV; ++v) {
      // max_ps returns its second operand for a NaN: NaN stays NaN, like std::max(v, 0.0f)
      const __m256 out = relu ? _mm256_max_ps(zero, acc[i][v]) : acc[i][v];
      float* d = y + i * ldy + v * VEC;
      if (full)
        _mm256_storeu_ps(d, out);
      else
        _mm256_maskstore_ps(d, mask[v], out);
    }
  }
}

template <int T, int KV, bool DB, bool TAIL>
void backward_body(float* dw, int64_t ldw, float* db, const float* x, int64_t xs, const float* dy, int64_t ldy,
                   int64_t npix, int nk, const float* prefetch) {
  __m256 acc[T][KV], dbacc[KV];
  __m256i mask[KV];
#pragma GCC unroll 2
  for (int v = 0; v < KV; ++v) {
    mask[v] = lane_mask(nk, v);
    dbacc[v] = _mm256_setzero_ps();
#pragma GCC unroll 5
    for (int t = 0; t < T; ++t) acc[t][v] = _mm256_setzero_ps();
  }
  for (int64_t q = 0; q < npix; ++q) {
    if (prefetch) {
      _mm_prefetch(reinterpret_cast<const char*>(prefetch), _MM_HINT_T0);
      prefetch += ldy;
    }
    __m256 g[KV];
#pragma GCC unroll 2
    for (int v = 0; v < KV; ++v) {
      g[v] = TAIL ? _mm256_maskload_ps(dy + v * VEC, mask[v]) : _mm256_loadu_ps(dy + v * VEC);
      if (DB) dbacc[v] = _mm256_add_ps(dbacc[v], g[v]);
    }
#pragma GCC unroll 5
    for (int t = 0; t < T; ++t) {
      const __m256 xb = _mm256_broadcast_ss(x + t);
#pragma GCC unroll 2
      for (int v = 0; v < KV; ++v) acc[t][v] = _mm256_fmadd_ps(xb, g[v], acc[t][v]);
    }
    x += xs;
    dy += ldy;
  }
  // The caller's dw rows are padded to whole vectors: full-width read-modify-write is in bounds.
#pragma GCC unroll 5
  for (int t = 0; t < T; ++t)
#pragma GCC unroll 2
    for (int v = 0; v < KV; ++v) {
      float* d = dw + t * ldw + v * VEC;
      _mm256_storeu_ps(d, _mm256_add_ps(_mm256_loadu_ps(d), acc[t][v]));
    }
  if (DB)
#pragma GCC unroll 2
    for (int v = 0; v < KV; ++v)
      _mm256_storeu_ps(db + v * VEC, _mm256_add_ps(_mm256_loadu_ps(db + v * VEC), dbacc[v]));
}

template <int T, int KV, bool DB>
void backward_tile(float* dw, int64_t ldw, float* db, const float* x, int64_t xs, const float* dy, int64_t ldy,
                   int64_t npix, int nk, const float* prefetch) {
  if (nk == KV * VEC)
    backward_body<T, KV, DB, false>(dw, ldw, db, x, xs, dy, ldy, npix, nk, prefetch);
  else  // masked loads only where the block is not whole: they are slower than plain ones on AVX2
    backward_body<T, KV, DB, true>(dw, ldw, db, x, xs, dy, ldy, npix, nk, prefetch);
}

void stream_copy(void* dst, const void* src, int64_t n) {
  // As bytes and integer vectors: the words may be int32 (argmax) as well as floats.
  char* d = static_cast<char*>(dst);
  const char* s = static_cast<const char*>(src);
  int64_t i = 0;
  for (; i < n && (reinterpret_cast<uintptr_t>(d + 4 * i) & 31) != 0; ++i) std::memcpy(d + 4 * i, s + 4 * i, 4);
  for (; i + VEC <= n; i += VEC)
    _mm256_stream_si256(reinterpret_cast<__m256i*>(d + 4 * i), _mm256_loadu_si256(reinterpret_cast<const __m256i*>(s + 4 * i)));
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

const Kernels& avx2_kernels() {
  static const Kernels k{Isa::avx2,
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
