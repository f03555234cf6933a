// Naive convolution loops: the oracle for the production kernels. Parallel loops are chosen so that every
// output element is summed in the same order whatever the thread count (results are bit-identical for 1 and
// many threads): forward and dx are split by sample/row, dw by kernel tap (r, s), db is serial.
#include <algorithm>

#include "microcnn/conv.hpp"
#include "microcnn/threads.hpp"

namespace microcnn::reference {

namespace {
// Below this many multiply-adds a parallel region costs more than it saves (and on a loaded machine a barrier
// can cost milliseconds). Serial or parallel, every element is summed in the same order.
constexpr int64_t kParallelMinWork = 1 << 16;
}  // namespace

// x (N,H,W,C), w (R,S,C,K), b (K) or nullptr -> y (N,P,Q,K)
void conv2d_forward(float* y, const float* x, const float* w, const float* b, const ConvShape& s, bool relu) {
  const int64_t N = s.N, H = s.H, W = s.W, C = s.C, K = s.K, R = s.R, S = s.S, P = s.P, Q = s.Q;
  const double work = static_cast<double>(N * P * Q * K) * static_cast<double>(R * S * C);  // multiply-adds
#pragma omp parallel if (work >= kParallelMinWork)
  {
    DenormalGuard guard;
#pragma omp for schedule(static)
    for (int64_t np = 0; np < N * P; ++np) {
      const int64_t n = np / P, p = np % P;
      for (int64_t q = 0; q < Q; ++q) {
        float* out = y + ((n * P + p) * Q + q) * K;
        for (int64_t k = 0; k < K; ++k) out[k] = b ? b[k] : 0.0f;
        for (int64_t r = 0; r < R; ++r) {
          const int64_t h = p * s.stride_h - s.pad_top + r;
          if (h < 0 || h >= H) continue;  // zero padding contributes nothing
          for (int64_t t = 0; t < S; ++t) {
            const int64_t col = q * s.stride_w - s.pad_left + t;
            if (col < 0 || col >= W) continue;
            const float* in = x + ((n * H + h) * W + col) * C;
            const float* wt = w + (r * S + t) * C * K;
            for (int64_t c = 0; c < C; ++c) {
              const float xv = in[c];
              for (int64_t k = 0; k < K; ++k) out[k] += xv * wt[c * K + k];
            }
          }
        }
        if (relu)
          for (int64_t k = 0; k < K; ++k) out[k] = std::max(out[k], 0.0f);
      }
    }
  }
}

// dy (N,P,Q,K), x (N,H,W,C), w (R,S,C,K) -> dx (N,H,W,C) or nullptr, dw (R,S,C,K), db (K) or nullptr
void conv2d_backward(float* dx, float* dw, float* db, const float* dy, const float* x, const float* w,
                     const ConvShape& s) {
  const int64_t N = s.N, H = s.H, W = s.W, C = s.C, K = s.K, R = s.R, S = s.S, P = s.P, Q = s.Q;
  if (db) {
    std::fill(db, db + K, 0.0f);
    for (int64_t i = 0; i < N * P * Q; ++i)
      for (int64_t k = 0; k < K; ++k) db[k] += dy[i * K + k];
  }
  const double work = static_cast<double>(N * P * Q * K) * static_cast<double>(R * S * C);  // multiply-adds
#pragma omp parallel if (work >= kParallelMinWork)
  {
    DenormalGuard guard;
    // dw: one kernel tap (r, s) per iteration; its C*K slice is summed over (n, p, q) in order.
#pragma omp for schedule(static)
    for (int64_t rs = 0; rs < R * S; ++rs) {
      const int64_t r = rs / S, t = rs % S;
      float* dwt = dw + rs * C * K;
      std::fill(dwt, dwt + C * K, 0.0f);
      for (int64_t n = 0; n < N; ++n)
        for (int64_t p = 0; p < P; ++p) {
          const int64_t h = p * s.stride_h - s.pad_top + r;
          if (h < 0 || h >= H) continue;
          for (int64_t q = 0; q < Q; ++q) {
            const int64_t col = q * s.stride_w - s.pad_left + t;
            if (col < 0 || col >= W) continue;
            const float* in = x + ((n * H + h) * W + col) * C;
            const float* g = dy + ((n * P + p) * Q + q) * K;
            for (int64_t c = 0; c < C; ++c) {
              const float xv = in[c];
              for (int64_t k = 0; k < K; ++k) dwt[c * K + k] += xv * g[k];
            }
          }
        }
    }
    // dx: one sample per iteration (windows overlap inside a sample, never across samples).
    if (dx) {
#pragma omp for schedule(static)
      for (int64_t n = 0; n < N; ++n) {
        float* dxn = dx + n * H * W * C;
        std::fill(dxn, dxn + H * W * C, 0.0f);
        for (int64_t p = 0; p < P; ++p)
          for (int64_t q = 0; q < Q; ++q) {
            const float* g = dy + ((n * P + p) * Q + q) * K;
            for (int64_t r = 0; r < R; ++r) {
              const int64_t h = p * s.stride_h - s.pad_top + r;
              if (h < 0 || h >= H) continue;
              for (int64_t t = 0; t < S; ++t) {
                const int64_t col = q * s.stride_w - s.pad_left + t;
                if (col < 0 || col >= W) continue;
                float* out = dxn + (h * W + col) * C;
                const float* wt = w + (r * S + t) * C * K;
                for (int64_t c = 0; c < C; ++c) {
                  float acc = 0.0f;
                  for (int64_t k = 0; k < K; ++k) acc += g[k] * wt[c * K + k];
                  out[c] += acc;
                }
              }
            }
          }
      }
    }
  }
}

}  // namespace microcnn::reference
