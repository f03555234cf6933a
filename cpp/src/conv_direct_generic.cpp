// Portable direct-convolution micro-kernels: plain loops over small register tiles (forward: 1 pixel, backward:
// up to 4 taps, x 4 or 8 channels) that the compiler vectorises for whatever baseline the target has.
#include <array>
#include <cstring>
#include <utility>

#include "conv_direct.hpp"
#include "conv_direct_pool.hpp"

// As in the SIMD files: predictive commoning would carry input values across taps in stack slots.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-predictive-commoning")
#endif

namespace microcnn::conv_direct {
namespace {

constexpr int VEC = 4;
constexpr int MR = 4;
constexpr int MAX_TAPS = 4;

#if defined(__GNUC__) || defined(__clang__)
// GCC/Clang vector extension: 4 floats, lowered to SSE2, NEON or scalar code by the compiler. Plain loops over
// a multi-pixel tile were not kept in registers (nor vectorised) by GCC 12.
typedef float F4 __attribute__((vector_size(16)));

F4 load4(const float* p) {
  F4 v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

template <int KV>
void forward_tile(float* y, int64_t ldy, const float* band, int64_t band_stride, int xs, int R, int SC,
                  const float* w, int64_t ldw, const float* bias, bool relu, int npix, int nk) {
  F4 acc[MR][KV];
  for (int v = 0; v < KV; ++v) {
    const F4 b = bias ? load4(bias + v * VEC) : F4{};
    for (int i = 0; i < MR; ++i) acc[i][v] = b;
  }
  for (int r = 0; r < R; ++r) {
    const float* xr = band + r * band_stride;
    const float* wr = w + static_cast<int64_t>(r) * SC * ldw;
    for (int j = 0; j < SC; ++j, wr += ldw) {
      F4 wv[KV];
      for (int v = 0; v < KV; ++v) wv[v] = load4(wr + v * VEC);
      for (int i = 0; i < MR; ++i) {
        const float x = xr[i * xs + j];
        const F4 xb = {x, x, x, x};
        for (int v = 0; v < KV; ++v) acc[i][v] += xb * wv[v];
      }
    }
  }
  for (int i = 0; i < MR; ++i) {
    if (i >= npix) break;
    float out[KV * VEC];
    for (int v = 0; v < KV; ++v) {
      F4 o = acc[i][v];
      if (relu) o = o < 0.0f ? F4{} : o;  // NaN < 0 is false: NaN stays NaN
      std::memcpy(out + v * VEC, &o, sizeof o);
    }
    std::memcpy(y + i * ldy, out, sizeof(float) * nk);
  }
}
#else
// One pixel at a time, its accumulators across all taps (weights re-read from L1 for each pixel).
template <int KV>
void forward_tile(float* y, int64_t ldy, const float* band, int64_t band_stride, int xs, int R, int SC,
                  const float* w, int64_t ldw, const float* bias, bool relu, int npix, int nk) {
  constexpr int KB = KV * VEC;
  for (int i = 0; i < npix; ++i) {
    float acc[KB] = {};
    if (bias)
      for (int k = 0; k < KB; ++k) acc[k] = bias[k];
    for (int r = 0; r < R; ++r) {
      const float* xr = band + r * band_stride + i * xs;
      const float* wr = w + static_cast<int64_t>(r) * SC * ldw;
      for (int j = 0; j < SC; ++j, wr += ldw)
        for (int k = 0; k < KB; ++k) acc[k] += xr[j] * wr[k];
    }
    for (int k = 0; k < nk; ++k) y[i * ldy + k] = relu && acc[k] < 0.0f ? 0.0f : acc[k];  // NaN stays NaN
  }
}
#endif

template <int T, int KV, bool DB>
void backward_tile(float* dw, int64_t ldw, float* db, const float* x, int64_t xs, const float* dy, int64_t ldy,
                   int64_t npix, int nk, const float* /*prefetch*/) {
  constexpr int KB = KV * VEC;
  float acc[T][KB] = {}, dbacc[KB] = {};
  for (int64_t q = 0; q < npix; ++q, x += xs, dy += ldy) {
    float g[KB];
#pragma GCC unroll 8
    for (int k = 0; k < KB; ++k) g[k] = k < nk ? dy[k] : 0.0f;  // lanes >= nk read nothing past the row
    if (DB)
#pragma GCC unroll 8
      for (int k = 0; k < KB; ++k) dbacc[k] += g[k];
#pragma GCC unroll 4
    for (int t = 0; t < T; ++t)
#pragma GCC unroll 8
      for (int k = 0; k < KB; ++k) acc[t][k] += x[t] * g[k];
  }
  for (int t = 0; t < T; ++t)
    for (int k = 0; k < KB; ++k) dw[t * ldw + k] += acc[t][k];
  if (DB)
    for (int k = 0; k < KB; ++k) db[k] += dbacc[k];
}

void stream_copy(void* dst, const void* src, int64_t n) { std::memcpy(dst, src, sizeof(float) * n); }

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

const Kernels& generic_kernels() {
  // One kernel per kv for every pixel step: the step is a run-time argument here.
  static const Kernels k{Isa::generic,
                         VEC,
                         MR,
                         MAX_TAPS,
                         {{forward_tile<1>, forward_tile<2>},
                          {forward_tile<1>, forward_tile<2>},
                          {forward_tile<1>, forward_tile<2>},
                          {forward_tile<1>, forward_tile<2>},
                          {forward_tile<1>, forward_tile<2>},
                          {forward_tile<1>, forward_tile<2>},
                          {forward_tile<1>, forward_tile<2>},
                          {forward_tile<1>, forward_tile<2>}},
                         backward,
                         stream_copy,
                         pool_rows,
                         unpool_rows_impl};
  return k;
}

}  // namespace microcnn::conv_direct
