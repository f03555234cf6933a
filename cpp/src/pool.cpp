// Max pooling. Memory-bound: one pass over the input, split by output row (forward) or sample (backward).
#include "microcnn/pool.hpp"

#include <algorithm>

#include "conv_direct_pool.hpp"
#include "microcnn/threads.hpp"

namespace microcnn {

namespace {
// Below this many element visits a parallel region costs more than it saves.
constexpr int64_t kParallelMin = 1 << 15;
constexpr int kChannelBlock = 16;
}  // namespace

// Max and first argmax over one window for cn channels starting at input offset `first` (whose channel
// block starts the window). Local accumulators and branch-free selects let the compiler vectorise over
// channels: with a branch, the coin-flip comparison on real data mispredicted once per element. FIXED > 0
// makes the channel count a compile-time constant.
template <int FIXED>
static void window_max(float* out, int32_t* idx, const float* xn, int64_t first, int64_t h0, int64_t h1,
                       int64_t w0, int64_t w1, int64_t W, int64_t C, int64_t cn_runtime) {
  const int64_t cn = FIXED > 0 ? FIXED : cn_runtime;
  float best[kChannelBlock];
  int32_t where[kChannelBlock];
  const int64_t c_off = first % C;  // channel offset of this block
  for (int64_t j = 0; j < cn; ++j) {
    best[j] = xn[first + j];
    where[j] = static_cast<int32_t>(first + j);
  }
  for (int64_t h = h0; h < h1; ++h)
    for (int64_t w = (h == h0 ? w0 + 1 : w0); w < w1; ++w) {
      const int64_t base = (h * W + w) * C + c_off;
      const float* in = xn + base;
      const int32_t base32 = static_cast<int32_t>(base);
      for (int64_t j = 0; j < cn; ++j) {  // the mask form vectorises; a `greater ? a : b` on the index does not
        const float v = in[j], b = best[j];
        const int32_t greater = -static_cast<int32_t>(v > b);
        best[j] = v > b ? v : b;
        where[j] = (greater & (base32 + static_cast<int32_t>(j))) | (~greater & where[j]);
      }
    }
  for (int64_t j = 0; j < cn; ++j) {
    out[j] = best[j];
    idx[j] = where[j];
  }
}

// x (N,H,W,C) -> y (N,P,Q,C), argmax (N,P,Q,C)
void maxpool2d_forward(float* y, int32_t* argmax, const float* x, const ConvShape& s) {
  const int64_t N = s.N, H = s.H, W = s.W, C = s.C, R = s.R, S = s.S, P = s.P, Q = s.Q;
  const double work = static_cast<double>(N * P * Q * C) * static_cast<double>(R * S);  // element visits
#pragma omp parallel if (work >= kParallelMin)
  {
    DenormalGuard guard;
#pragma omp for schedule(static)
    for (int64_t np = 0; np < N * P; ++np) {
      const int64_t n = np / P, p = np % P;
      const float* xn = x + n * H * W * C;
      const int64_t h0 = std::max<int64_t>(p * s.stride_h - s.pad_top, 0);
      const int64_t h1 = std::min<int64_t>(p * s.stride_h - s.pad_top + R, H);
      if (R == 2 && S == 2 && s.stride_h == 2 && s.stride_w == 2 && s.pad_top == 0 && s.pad_left == 0 &&
          2 * P <= H && 2 * Q <= W) {
        // The seed net's pooling (2x2, stride 2, no padding, whole windows): the fused conv block's pooled row
        // (the same ties and NaN rule as window_max), from input rows 2p and 2p + 1.
        const int64_t row = W * C, base = 2 * p * row;
        conv_direct::pool_rows(y + (n * P + p) * Q * C, argmax + (n * P + p) * Q * C, xn + base, xn + base + row,
                               Q, C, static_cast<int32_t>(base), static_cast<int32_t>(row));
        continue;
      }
      for (int64_t q = 0; q < Q; ++q) {
        const int64_t w0 = std::max<int64_t>(q * s.stride_w - s.pad_left, 0);
        const int64_t w1 = std::min<int64_t>(q * s.stride_w - s.pad_left + S, W);
        float* out = y + ((n * P + p) * Q + q) * C;
        int32_t* idx = argmax + ((n * P + p) * Q + q) * C;
        // Start from the first real input of the window, so padding never wins and a NaN-free window always
        // yields a valid index; strict > keeps the first of equal maxima.
        const int64_t first = (h0 * W + w0) * C;
        for (int64_t c0 = 0; c0 < C; c0 += kChannelBlock) {
          const int64_t cn = std::min<int64_t>(kChannelBlock, C - c0);
          if (cn == kChannelBlock)
            window_max<kChannelBlock>(out + c0, idx + c0, xn, first + c0, h0, h1, w0, w1, W, C, kChannelBlock);
          else
            window_max<0>(out + c0, idx + c0, xn, first + c0, h0, h1, w0, w1, W, C, cn);
        }
      }
    }
  }
}

// dy (N,P,Q,C), argmax (N,P,Q,C) -> dx (N,H,W,C)
void maxpool2d_backward(float* dx, const float* dy, const int32_t* argmax, int64_t N, int64_t H, int64_t W,
                        int64_t C, int64_t P, int64_t Q) {
  const int64_t in_size = H * W * C, out_size = P * Q * C;
#pragma omp parallel if (N * (in_size + out_size) >= kParallelMin)
  {
    DenormalGuard guard;
    // One sample per iteration: overlapping windows only scatter within their own sample.
#pragma omp for schedule(static)
    for (int64_t n = 0; n < N; ++n) {
      float* dxn = dx + n * in_size;
      std::fill(dxn, dxn + in_size, 0.0f);
      const float* g = dy + n * out_size;
      const int32_t* idx = argmax + n * out_size;
      for (int64_t i = 0; i < out_size; ++i) dxn[idx[i]] += g[i];
    }
  }
}

}  // namespace microcnn
