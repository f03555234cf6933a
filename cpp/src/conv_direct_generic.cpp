// Portable direct-convolution micro-kernels: plain loops over fixed-size register tiles (4 pixels or 4 taps x
// 8 or 16 channels) that the compiler vectorises for whatever baseline the target has.
#include <array>
#include <cstring>
#include <utility>

#include "conv_direct.hpp"
#include "conv_direct_pool.hpp"

namespace microcnn::conv_direct {
namespace {

constexpr int VEC = 8;
constexpr int MR = 4;
constexpr int MAX_TAPS = 4;

template <int KV>
void forward_tile(float* y, int64_t ldy, const float* band, int64_t band_stride, int xs, int R, int SC,
                  const float* w, int64_t ldw, const float* bias, bool relu, int npix, int nk) {
  constexpr int KB = KV * VEC;
  float acc[MR][KB];
  for (int i = 0; i < MR; ++i)
    for (int k = 0; k < KB; ++k) acc[i][k] = bias ? bias[k] : 0.0f;
  for (int r = 0; r < R; ++r) {
    const float* xr = band + r * band_stride;
    const float* wr = w + static_cast<int64_t>(r) * SC * ldw;
    for (int j = 0; j < SC; ++j, wr += ldw)
      for (int i = 0; i < MR; ++i) {
        const float xv = xr[i * xs + j];
        for (int k = 0; k < KB; ++k) acc[i][k] += xv * wr[k];
      }
  }
  for (int i = 0; i < npix; ++i)
    for (int k = 0; k < nk; ++k) {
      const float v = acc[i][k];
      y[i * ldy + k] = relu && v < 0.0f ? 0.0f : v;  // NaN stays NaN
    }
}

template <int T, int KV, bool DB>
void backward_tile(float* dw, int64_t ldw, float* db, const float* x, int64_t xs, const float* dy, int64_t ldy,
                   int64_t npix, int nk, const float* /*prefetch*/) {
  constexpr int KB = KV * VEC;
  float acc[T][KB] = {}, dbacc[KB] = {}, g[KB] = {};
  for (int64_t q = 0; q < npix; ++q, x += xs, dy += ldy) {
    for (int k = 0; k < nk; ++k) g[k] = dy[k];  // lanes >= nk stay 0
    if (DB)
      for (int k = 0; k < KB; ++k) dbacc[k] += g[k];
    for (int t = 0; t < T; ++t)
      for (int k = 0; k < KB; ++k) acc[t][k] += x[t] * g[k];
  }
  for (int t = 0; t < T; ++t)
    for (int k = 0; k < KB; ++k) dw[t * ldw + k] += acc[t][k];
  if (DB)
    for (int k = 0; k < KB; ++k) db[k] += dbacc[k];
}

void stream_copy(float* dst, const float* src, int64_t n) { std::memcpy(dst, src, sizeof(float) * n); }

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
