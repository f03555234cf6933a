// Internal: the SIMD direct-convolution micro-kernels (the contracts of ForwardTile, BackwardTile and StreamCopy
// in conv_direct.hpp), one template over a vector-traits struct (cpp/src/simd/<isa>.hpp, in an anonymous
// namespace). conv_direct_avx2.cpp and conv_direct_avx512.cpp instantiate them, compiled for their ISA only,
// and conv_direct_generic.cpp over the portable traits (simd/portable.hpp): an instantiation over an
// internal-linkage type is internal too, so the linker cannot merge copies across targets.
//
// Traits V: `reg`, `mask` (lanes of a partial block), `width` (floats per vector), `split_tail` (run whole
// blocks with plain loads and only partial ones masked, where masked loads are slower), and static zero(),
// loadu(p), broadcast(p), fmadd(a, b, c), add(a, b), max(a, b) (b where either is NaN), storeu(p, v),
// lane_mask(nk, v) (lanes [0, nk - v*width) of vector v), load_masked(p, m) (0 in other lanes, reading nothing
// there), store_block(p, m, v, whole), prefetch_pixel(p, kv) (a pixel's kv vectors of dy into L1),
// stream_alignment, stream(dst, src) (one vector of 4-byte words, non-temporal) and fence().
#pragma once
#include <array>
#include <cstdint>
#include <cstring>
#include <utility>

#include "conv_direct.hpp"
#include "conv_direct_pool.hpp"

// GCC's predictive commoning notices that pixel i+1 reads at tap j what pixel i reads at tap j + XS, and
// carries those scalars across iterations in stack slots: it spills the whole register tile. (Applies to the
// functions defined below, in the including file.)
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-predictive-commoning")
#endif

namespace microcnn::conv_direct {

template <class V, int MR, int XS, int KV>
void simd_forward_tile(float* y, int64_t ldy, const float* band, int64_t band_stride, int /*xs*/, int R, int SC,
                       const float* w, int64_t ldw, const float* bias, bool relu, int npix, int nk) {
  using Reg = typename V::reg;
  constexpr int VEC = V::width;
  const Reg zero = V::zero();
  Reg acc[MR][KV];
#pragma GCC unroll 2
  for (int v = 0; v < KV; ++v) {
    const Reg b = bias ? V::loadu(bias + v * VEC) : zero;
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) acc[i][v] = b;
  }
  for (int r = 0; r < R; ++r) {
    const float* xr = band + r * band_stride;
    const float* wr = w + static_cast<int64_t>(r) * SC * ldw;
    for (int j = 0; j < SC; ++j) {
      Reg wv[KV];
#pragma GCC unroll 2
      for (int v = 0; v < KV; ++v) wv[v] = V::loadu(wr + v * VEC);
#pragma GCC unroll 16
      for (int i = 0; i < MR; ++i) {
        const Reg xb = V::broadcast(xr + i * XS + j);
#pragma GCC unroll 2
        for (int v = 0; v < KV; ++v) acc[i][v] = V::fmadd(xb, wv[v], acc[i][v]);
      }
      wr += ldw;
    }
  }
  const bool whole = nk == KV * VEC;
  typename V::mask mask[KV];
#pragma GCC unroll 2
  for (int v = 0; v < KV; ++v) mask[v] = V::lane_mask(nk, v);
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i) {
    if (i >= npix) break;
#pragma GCC unroll 2
    for (int v = 0; v < KV; ++v) {
      // max returns its second operand for a NaN: NaN stays NaN, like std::max(v, 0.0f)
      const Reg out = relu ? V::max(zero, acc[i][v]) : acc[i][v];
      V::store_block(y + i * ldy + v * VEC, mask[v], out, whole);
    }
  }
}

template <class V, int T, int KV, bool DB, bool TAIL>
void simd_backward_body(float* dw, int64_t ldw, float* db, const float* x, int64_t xs, const float* dy,
                        int64_t ldy, int64_t npix, int nk, const float* prefetch) {
  using Reg = typename V::reg;
  constexpr int VEC = V::width;
  Reg acc[T][KV], dbacc[KV];
  typename V::mask mask[KV];
#pragma GCC unroll 2
  for (int v = 0; v < KV; ++v) {
    mask[v] = V::lane_mask(nk, v);
    dbacc[v] = V::zero();
#pragma GCC unroll 16
    for (int t = 0; t < T; ++t) acc[t][v] = V::zero();
  }
  for (int64_t q = 0; q < npix; ++q) {
    if (prefetch) {
      V::prefetch_pixel(prefetch, KV);
      prefetch += ldy;
    }
    Reg g[KV];
#pragma GCC unroll 2
    for (int v = 0; v < KV; ++v) {
      g[v] = TAIL ? V::load_masked(dy + v * VEC, mask[v]) : V::loadu(dy + v * VEC);
      if (DB) dbacc[v] = V::add(dbacc[v], g[v]);
    }
#pragma GCC unroll 16
    for (int t = 0; t < T; ++t) {
      const Reg xb = V::broadcast(x + t);
#pragma GCC unroll 2
      for (int v = 0; v < KV; ++v) acc[t][v] = V::fmadd(xb, g[v], acc[t][v]);
    }
    x += xs;
    dy += ldy;
  }
  // The caller's dw rows are padded to whole vectors: full-width read-modify-write is in bounds.
#pragma GCC unroll 16
  for (int t = 0; t < T; ++t)
#pragma GCC unroll 2
    for (int v = 0; v < KV; ++v) {
      float* d = dw + t * ldw + v * VEC;
      V::storeu(d, V::add(V::loadu(d), acc[t][v]));
    }
  if (DB)
#pragma GCC unroll 2
    for (int v = 0; v < KV; ++v) V::storeu(db + v * VEC, V::add(V::loadu(db + v * VEC), dbacc[v]));
}

template <class V, int T, int KV, bool DB>
void simd_backward_tile(float* dw, int64_t ldw, float* db, const float* x, int64_t xs, const float* dy,
                        int64_t ldy, int64_t npix, int nk, const float* prefetch) {
  if (V::split_tail && nk == KV * V::width)
    simd_backward_body<V, T, KV, DB, false>(dw, ldw, db, x, xs, dy, ldy, npix, nk, prefetch);
  else
    simd_backward_body<V, T, KV, DB, true>(dw, ldw, db, x, xs, dy, ldy, npix, nk, prefetch);
}

template <class V>
void simd_stream_copy(void* dst, const void* src, int64_t n) {
  // As bytes and integer vectors: the words may be int32 (argmax) as well as floats.
  char* d = static_cast<char*>(dst);
  const char* s = static_cast<const char*>(src);
  int64_t i = 0;
  for (; i < n && (reinterpret_cast<uintptr_t>(d + 4 * i) & (V::stream_alignment - 1)) != 0; ++i)
    std::memcpy(d + 4 * i, s + 4 * i, 4);
  for (; i + V::width <= n; i += V::width) V::stream(d + 4 * i, s + 4 * i);
  if (i < n) std::memcpy(d + 4 * i, s + 4 * i, sizeof(float) * (n - i));
  V::fence();
}

template <class V, int KV, bool DB, int... I>
constexpr std::array<BackwardTile, sizeof...(I)> simd_backward_table(std::integer_sequence<int, I...>) {
  return {&simd_backward_tile<V, I + 1, KV, DB>...};
}

template <class V, int MAX_TAPS>
BackwardTile simd_backward(int taps, int kv, bool db) {
  static constexpr auto seq = std::make_integer_sequence<int, MAX_TAPS>{};
  static constexpr auto t1 = simd_backward_table<V, 1, false>(seq), t2 = simd_backward_table<V, 2, false>(seq);
  static constexpr auto t1db = simd_backward_table<V, 1, true>(seq), t2db = simd_backward_table<V, 2, true>(seq);
  const auto& table = kv == 1 ? (db ? t1db : t1) : (db ? t2db : t2);
  return table[taps - 1];
}

// The Kernels of an ISA: forward tiles of MR pixels specialised on the pixel step, backward tiles of up to
// MAX_TAPS taps, and the fused block's pooling side (conv_direct_pool.hpp, compiled in the including file).
template <class V, int MR, int MAX_TAPS, int... XS>
Kernels simd_kernels(Isa isa, std::integer_sequence<int, XS...>) {
  return Kernels{isa,
                 V::width,
                 MR,
                 MAX_TAPS,
                 {{simd_forward_tile<V, MR, XS + 1, 1>, simd_forward_tile<V, MR, XS + 1, 2>}...},
                 simd_backward<V, MAX_TAPS>,
                 simd_stream_copy<V>,
                 pool_rows,
                 unpool_rows_impl};
}

// The Kernels of traits V, built once.
template <class V, int MR, int MAX_TAPS>
const Kernels& simd_kernels_once(Isa isa) {
  static const Kernels k = simd_kernels<V, MR, MAX_TAPS>(isa, std::make_integer_sequence<int, kMaxPixelStep>{});
  return k;
}

}  // namespace microcnn::conv_direct
