// bfloat16 training convolutions: blocks of the im2col matrix (or of dy) rounded to bf16, multiplied with the
// packed bf16 weights on the GEMM kernel bf16.cpp chooses for this CPU, summed in float32.
#include "microcnn/bf16_train.hpp"

#include <algorithm>
#include <cstring>
#include <vector>

#include "conv_gemm.hpp"
#include "microcnn/bf16.hpp"
#include "microcnn/threads.hpp"

#ifdef MICROCNN_OPENMP
#include <omp.h>
#endif

namespace microcnn {

namespace {

constexpr int64_t kRows = 64;     // output pixels per GEMM block (forward, backward-data)
constexpr int64_t kPixels = 256;  // pixels per backward-weights block: the inner dimension of its GEMM

int64_t ceil_div(int64_t x, int64_t m) { return (x + m - 1) / m; }

// float_to_bf16 widened back, without branches (the loops below vectorise).
inline float round_one(float v) {
  uint32_t bits;
  std::memcpy(&bits, &v, sizeof bits);
  const uint32_t rounded = (bits + 0x7fffu + ((bits >> 16) & 1u)) & 0xffff0000u;
  const uint32_t quiet_nan = (bits | 0x00400000u) & 0xffff0000u;
  bits = (bits & 0x7fffffffu) > 0x7f800000u ? quiet_nan : rounded;
  std::memcpy(&v, &bits, sizeof v);
  return v;
}

// Offset in one sample of x of the input pixel that tap (r, sc) of output pixel (ho, wo) reads, or -1 where it
// falls in the padding.
inline int64_t tap(const ConvShape& s, int64_t ho, int64_t wo, int64_t r, int64_t sc) {
  const int64_t hs = ho * s.stride_h - s.pad_top + r, ws = wo * s.stride_w - s.pad_left + sc;
  if (hs < 0 || hs >= s.H || ws < 0 || ws >= s.W) return -1;
  return (hs * s.W + ws) * s.C;
}

// Rows [i0, i0 + rows) of the bf16-rounded im2col matrix of x, transposed -> at (R*S*C, rows).
void gather_columns(float* at, const float* x, const ConvShape& s, int64_t i0, int64_t rows) {
  for (int64_t i = 0; i < rows; ++i) {
    const int64_t pix = i0 + i, n = pix / (s.P * s.Q), ho = pix / s.Q % s.P, wo = pix % s.Q;
    for (int64_t r = 0; r < s.R; ++r)
      for (int64_t sc = 0; sc < s.S; ++sc) {
        float* dst = at + (r * s.S + sc) * s.C * rows + i;
        const int64_t offset = tap(s, ho, wo, r, sc);
        const float* src = x + n * s.H * s.W * s.C + offset;
        for (int64_t c = 0; c < s.C; ++c) dst[c * rows] = offset >= 0 ? round_one(src[c]) : 0.0f;
      }
  }
}

int thread_index() {
#ifdef MICROCNN_OPENMP
  return omp_get_thread_num();
#else
  return 0;
#endif
}

int max_threads() {
#ifdef MICROCNN_OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

// True where the bf16 GEMM would only widen bf16 to float32 (AVX2): there the float32 kernels run on
// bf16-rounded copies of the operands instead, the same products at float32 speed (plus the rounding pass).
bool widening_cpu() {
#ifdef MICROCNN_X86
  return bf16_detail::active_gemm() == bf16_detail::gemm_avx2;
#else
  return false;
#endif
}

std::vector<float> rounded_copy(const float* x, int64_t n) {
  std::vector<float> y(static_cast<size_t>(n));
  round_to_bf16(y.data(), x, n);
  return y;
}

}  // namespace

void round_to_bf16(float* y, const float* x, int64_t n) {
#pragma omp parallel for schedule(static) if (n >= (1 << 20))
  for (int64_t i = 0; i < n; ++i) y[i] = round_one(x[i]);
}

void pack_bf16_weights_transposed(uint16_t* packed, const float* w, int64_t K, int64_t M) {
  const int64_t KP = ceil_div(M, 2), panels = ceil_div(K, kBf16PanelCols);
  // panel t reads rows [32t, 32t + 32) of w: 32 rows of M floats, in cache while the panel is written
#pragma omp parallel for schedule(static) if (K * M >= (1 << 20))
  for (int64_t t = 0; t < panels; ++t)
    for (int64_t p = 0; p < KP; ++p) {
      uint16_t* row = packed + (t * KP + p) * 64;
      for (int64_t j = 0; j < kBf16PanelCols; ++j)
        for (int64_t r = 0; r < 2; ++r) {
          const int64_t k = t * kBf16PanelCols + j, m = 2 * p + r;
          row[2 * j + r] = k < K && m < M ? float_to_bf16(w[k * M + m]) : 0;
        }
    }
}

void conv2d_forward_bf16(float* y, const float* x, const float* w, const float* b, const ConvShape& s, bool relu) {
  if (widening_cpu()) {
    const std::vector<float> xr = rounded_copy(x, s.N * s.H * s.W * s.C), wr = rounded_copy(w, s.R * s.S * s.C * s.K);
    conv2d_forward(y, xr.data(), wr.data(), b, s, relu);
    return;
  }
  const int64_t taps = s.R * s.S * s.C, pixels = s.N * s.P * s.Q, blocks = ceil_div(pixels, kRows);
  std::vector<uint16_t> packed(static_cast<size_t>(bf16_packed_size(taps, s.K)));
  pack_bf16_weights(packed.data(), w, taps, s.K);  // w (R,S,C,K) is the (R*S*C, K) B operand
  const bf16_detail::GemmFn gemm = bf16_detail::active_gemm();
  const conv_gemm::Im2col g = conv_gemm::forward_im2col(x, s);
  const double flops = 2.0 * pixels * taps * s.K;
#pragma omp parallel if (flops >= 4e6 && blocks > 1)
  {
    DenormalGuard guard;
    std::vector<float> a(static_cast<size_t>(kRows * taps));
#pragma omp for schedule(static)
    for (int64_t blk = 0; blk < blocks; ++blk) {
      const int64_t i0 = blk * kRows, rows = std::min(kRows, pixels - i0);
      conv_gemm::gather_rows(a.data(), g, s, i0, rows, round_one);
      gemm(y + i0 * s.K, s.K, a.data(), taps, packed.data(), rows, taps, 0, s.K, b, relu);
    }
  }
}

namespace {

// dx = col2im(round(dy) @ w^T): one sample per task, so no two threads add into the same dx.
void backward_data(float* dx, const float* dy, const float* w, const ConvShape& s) {
  const int64_t taps = s.R * s.S * s.C, K = s.K, PQ = s.P * s.Q, HWC = s.H * s.W * s.C;
  std::vector<uint16_t> wt(static_cast<size_t>(bf16_packed_size(K, taps)));
  pack_bf16_weights_transposed(wt.data(), w, taps, K);
  const bf16_detail::GemmFn gemm = bf16_detail::active_gemm();
  const double flops = 2.0 * s.N * PQ * taps * K;
#pragma omp parallel if (flops >= 4e6 && s.N > 1)
  {
    DenormalGuard guard;
    std::vector<float> a(static_cast<size_t>(kRows * K)), dcol(static_cast<size_t>(kRows * taps));
#pragma omp for schedule(dynamic, 1)
    for (int64_t n = 0; n < s.N; ++n) {
      float* dxn = dx + n * HWC;
      std::fill(dxn, dxn + HWC, 0.0f);
      for (int64_t p0 = 0; p0 < PQ; p0 += kRows) {
        const int64_t rows = std::min(kRows, PQ - p0);
        const float* src = dy + (n * PQ + p0) * K;
        for (int64_t j = 0; j < rows * K; ++j) a[j] = round_one(src[j]);
        gemm(dcol.data(), taps, a.data(), K, wt.data(), rows, K, 0, taps, nullptr, false);
        for (int64_t i = 0; i < rows; ++i) {
          const int64_t ho = (p0 + i) / s.Q, wo = (p0 + i) % s.Q;
          for (int64_t r = 0; r < s.R; ++r)
            for (int64_t sc = 0; sc < s.S; ++sc) {
              const int64_t offset = tap(s, ho, wo, r, sc);
              if (offset < 0) continue;
              float* dst = dxn + offset;
              const float* add = dcol.data() + i * taps + (r * s.S + sc) * s.C;
              for (int64_t c = 0; c < s.C; ++c) dst[c] += add[c];
            }
        }
      }
    }
  }
}

// dw = sum over pixel blocks of round(im2col)^T @ round(dy), db = sum of dy: each thread sums its share of the
// blocks (a static split), the shares are added in thread order (the same result for the same thread count).
void backward_weights(float* dw, float* db, const float* dy, const float* x, const ConvShape& s) {
  const int64_t taps = s.R * s.S * s.C, K = s.K, pixels = s.N * s.P * s.Q, blocks = ceil_div(pixels, kPixels);
  const bf16_detail::GemmFn gemm = bf16_detail::active_gemm();
  const double flops = 2.0 * pixels * taps * K;
  const int threads = flops >= 4e6 && blocks > 1 ? max_threads() : 1;
  std::vector<std::vector<float>> partial(static_cast<size_t>(threads));
#pragma omp parallel num_threads(threads) if (threads > 1)
  {
    DenormalGuard guard;
    std::vector<float>& sum = partial[static_cast<size_t>(thread_index())];
    sum.assign(static_cast<size_t>(taps * K + K), 0.0f);
    std::vector<float> at(static_cast<size_t>(taps * kPixels)), product(static_cast<size_t>(taps * K));
    std::vector<uint16_t> packed(static_cast<size_t>(bf16_packed_size(kPixels, K)));
#pragma omp for schedule(static)
    for (int64_t blk = 0; blk < blocks; ++blk) {
      const int64_t i0 = blk * kPixels, rows = std::min(kPixels, pixels - i0);
      const float* dyb = dy + i0 * K;
      gather_columns(at.data(), x, s, i0, rows);
      pack_bf16_weights(packed.data(), dyb, rows, K);
      gemm(product.data(), K, at.data(), rows, packed.data(), taps, rows, 0, K, nullptr, false);
      for (int64_t j = 0; j < taps * K; ++j) sum[j] += product[j];
      for (int64_t i = 0; i < rows; ++i)
        for (int64_t k = 0; k < K; ++k) sum[taps * K + k] += dyb[i * K + k];
    }
  }
  std::fill(dw, dw + taps * K, 0.0f);
  if (db) std::fill(db, db + K, 0.0f);
  for (const std::vector<float>& sum : partial) {
    if (sum.empty()) continue;  // a thread the runtime did not start
    for (int64_t j = 0; j < taps * K; ++j) dw[j] += sum[j];
    if (db)
      for (int64_t k = 0; k < K; ++k) db[k] += sum[taps * K + k];
  }
}

}  // namespace

void conv2d_backward_bf16(float* dx, float* dw, float* db, const float* dy, const float* x, const float* w,
                          const ConvShape& s) {
  if (!widening_cpu()) {
    if (dx) backward_data(dx, dy, w, s);
    backward_weights(dw, db, dy, x, s);
    return;
  }
  const int64_t pixels = s.N * s.P * s.Q;
  const std::vector<float> dyr = rounded_copy(dy, pixels * s.K), xr = rounded_copy(x, s.N * s.H * s.W * s.C),
                           wr = rounded_copy(w, s.R * s.S * s.C * s.K);
  conv2d_backward(dx, dw, nullptr, dyr.data(), xr.data(), wr.data(), s);
  if (db) {  // the bias gradient sums dy as given, as on the packed path
    std::fill(db, db + s.K, 0.0f);
    for (int64_t i = 0; i < pixels; ++i)
      for (int64_t k = 0; k < s.K; ++k) db[k] += dy[i * s.K + k];
  }
}

}  // namespace microcnn
