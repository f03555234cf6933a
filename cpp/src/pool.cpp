// Max pooling. Memory-bound: one pass over the input, split by output row (forward) or sample (backward).
#include "microcnn/pool.hpp"

#include <algorithm>

#include "microcnn/threads.hpp"

namespace microcnn {

namespace {
// Below this many element visits a parallel region costs more than it saves.
constexpr int64_t kParallelMin = 1 << 15;
}  // namespace

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
      for (int64_t q = 0; q < Q; ++q) {
        const int64_t w0 = std::max<int64_t>(q * s.stride_w - s.pad_left, 0);
        const int64_t w1 = std::min<int64_t>(q * s.stride_w - s.pad_left + S, W);
        float* out = y + ((n * P + p) * Q + q) * C;
        int32_t* idx = argmax + ((n * P + p) * Q + q) * C;
        // Start from the first real input of the window, so padding never wins and a NaN-free window always
        // yields a valid index; strict > keeps the first of equal maxima.
        const int64_t first = (h0 * W + w0) * C;
        for (int64_t c = 0; c < C; ++c) {
          out[c] = xn[first + c];
          idx[c] = static_cast<int32_t>(first + c);
        }
        for (int64_t h = h0; h < h1; ++h)
          for (int64_t w = (h == h0 ? w0 + 1 : w0); w < w1; ++w) {
            const int64_t base = (h * W + w) * C;
            for (int64_t c = 0; c < C; ++c)
              if (xn[base + c] > out[c]) {
                out[c] = xn[base + c];
                idx[c] = static_cast<int32_t>(base + c);
              }
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
