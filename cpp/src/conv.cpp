// Production convolution: implicit GEMM on the packed SGEMM (conv_gemm.hpp gathers the im2col rows straight
// into the GEMM panels). forward: y = im2col(x) @ w (+ bias, ReLU in the epilogue); backward-data:
// dx = im2col_transposed_conv(dy) @ w laid out (R,S,K,C); backward-weights: [dw; db] = [im2col(x) | 1]^T @ dy.
// Layers with few input channels (an image network's first layer) take the direct kernels of conv_direct.hpp
// for the forward pass and the weight gradient instead, and stride-1 layers whose C fits whole register tiles
// compute backward-data with dy read in place (conv_gemm::backward_data_in_place).
#include "microcnn/conv.hpp"

#include <algorithm>
#include <memory>
#include <vector>

#include "conv_direct.hpp"
#include "conv_direct_pool.hpp"
#include "conv_gemm.hpp"
#include "microcnn/gemm.hpp"
#include "microcnn/pool.hpp"
#include "microcnn/threads.hpp"

namespace microcnn {

int64_t conv2d_output_size(int64_t size, int64_t kernel, int64_t stride, Padding padding) {
  if (padding == Padding::Same) return (size - 1) / stride + 1;  // ceil(size/stride) without overflow
  return (size - kernel) / stride + 1;
}

int64_t conv2d_pad_before(int64_t size, int64_t kernel, int64_t stride, Padding padding) {
  if (padding == Padding::Valid) return 0;
  const int64_t out = conv2d_output_size(size, kernel, stride, padding);
  const int64_t total = std::max<int64_t>((out - 1) * stride + kernel - size, 0);
  return total / 2;  // the odd extra row/column goes after the input, as in Keras/TF
}

ConvShape make_conv_shape(int64_t N, int64_t H, int64_t W, int64_t C, int64_t K, int64_t R, int64_t S,
                          int64_t stride_h, int64_t stride_w, Padding padding) {
  ConvShape s{};
  s.N = N;
  s.H = H;
  s.W = W;
  s.C = C;
  s.K = K;
  s.R = R;
  s.S = S;
  s.stride_h = stride_h;
  s.stride_w = stride_w;
  s.pad_top = conv2d_pad_before(H, R, stride_h, padding);
  s.pad_left = conv2d_pad_before(W, S, stride_w, padding);
  s.P = conv2d_output_size(H, R, stride_h, padding);
  s.Q = conv2d_output_size(W, S, stride_w, padding);
  return s;
}

// x (N,H,W,C), w (R,S,C,K), b (K) or nullptr -> y (N,P,Q,K)
void conv2d_forward(float* y, const float* x, const float* w, const float* b, const ConvShape& s, bool relu) {
  if (conv_direct::applies(s)) return conv_direct::forward(y, x, w, b, s, relu);
  const conv_gemm::Im2colA a(conv_gemm::forward_im2col(x, s));
  const StridedB b_w(w, s.K, 1);  // w as (R*S*C, K)
  gemm(y, s.K, a, b_w, s.N * s.P * s.Q, s.K, s.R * s.S * s.C, GemmEpilogue{b, relu});
}

// dy (N,P,Q,K), x (N,H,W,C), w (R,S,C,K) -> dx (N,H,W,C) or nullptr, dw (R,S,C,K), db (K) or nullptr
void conv2d_backward(float* dx, float* dw, float* db, const float* dy, const float* x, const float* w,
                     const ConvShape& s) {
  const int64_t taps = s.R * s.S * s.C, pixels = s.N * s.P * s.Q;
  if (conv_direct::applies(s)) {
    conv_direct::backward_weights(dw, db, dy, x, s);
  } else {
    // dw (taps, K) and db (K) from one GEMM: a row of ones under the transposed im2col sums dy over pixels.
    // The GEMM splits the long pixel reduction over threads and adds the partial sums in thread order.
    const conv_gemm::Im2colTransposedA a(conv_gemm::forward_im2col(x, s), db != nullptr);
    const StridedB b_dy(dy, s.K, 1);
    if (db) {
      std::vector<float> dwb(static_cast<size_t>(taps + 1) * s.K);
      gemm(dwb.data(), s.K, a, b_dy, taps + 1, s.K, pixels);
      std::copy(dwb.begin(), dwb.begin() + taps * s.K, dw);
      std::copy(dwb.begin() + taps * s.K, dwb.end(), db);
    } else {
      gemm(dw, s.K, a, b_dy, taps, s.K, pixels);
    }
  }
  if (dx && !conv_gemm::backward_data_in_place(dx, dy, w, s)) {
    // w (R,S,C,K) -> (R,S,K,C): the GEMM's B is then row-major (R*S*K, C).
    std::vector<float> wt(static_cast<size_t>(taps) * s.K);
    for (int64_t rs = 0; rs < s.R * s.S; ++rs)
      for (int64_t c = 0; c < s.C; ++c)
        for (int64_t k = 0; k < s.K; ++k) wt[(rs * s.K + k) * s.C + c] = w[(rs * s.C + c) * s.K + k];
    const conv_gemm::Im2colA a(conv_gemm::backward_data_im2col(dy, s));
    const StridedB b_wt(wt.data(), s.C, 1);
    gemm(dx, s.C, a, b_wt, s.N * s.H * s.W, s.C, s.R * s.S * s.K);
  }
}

// x (N,H,W,C), w (R,S,C,K), b (K) or nullptr -> y (N,P/2,Q/2,K), argmax (N,P/2,Q/2,K)
void conv2d_relu_maxpool_forward(float* y, int32_t* argmax, const float* x, const float* w, const float* b,
                                 const ConvShape& s) {
  if (conv_direct::applies(s)) return conv_direct::forward_relu_maxpool(y, argmax, x, w, b, s);
  const int64_t pixels = s.N * s.P * s.Q, taps = s.R * s.S * s.C;
  if (pixels * s.K <= kGemmSplitSumMaxOutput && taps >= 8 * std::max(pixels, s.K)) {
    // A long reduction for a small output: gemm() may split it over threads; pool its result as is.
    const std::unique_ptr<float[]> z(new float[pixels * s.K]);  // not zeroed: every element is written
    conv2d_forward(z.get(), x, w, b, s, /*relu=*/true);
    maxpool2d_forward(y, argmax, z.get(), make_conv_shape(s.N, s.P, s.Q, s.K, s.K, 2, 2, 2, 2, Padding::Valid));
    return;
  }
  // Blocks of whole conv row pairs (at least 512 pixels, within one sample: above the 256 rows up to which the
  // GEMM reads B in place, which ran slower here; small enough to stay in L2): each a serial GEMM into a buffer
  // pooled at once, so the full-resolution output is never written out. Every element is the GEMM's own (one
  // reduction order, bias and ReLU in the epilogue): bit for bit conv2d_forward, then the pool.
  const int64_t P2 = s.P / 2, Q2 = s.Q / 2, pair = 2 * s.Q;
  const int64_t per_block = std::clamp<int64_t>((512 + pair - 1) / pair, 1, P2);
  const int64_t blocks_per_sample = (P2 + per_block - 1) / per_block, blocks = s.N * blocks_per_sample;
  const conv_gemm::Im2colA im2col(conv_gemm::forward_im2col(x, s));
  const StridedB b_w(w, s.K, 1);
#pragma omp parallel if (pixels * s.K * taps >= (int64_t{1} << 22))
  {
    DenormalGuard guard;
    std::vector<float> z(static_cast<size_t>(per_block * pair * s.K));
#pragma omp for schedule(dynamic, 1)
    for (int64_t blk = 0; blk < blocks; ++blk) {
      const int64_t n = blk / blocks_per_sample, p2_0 = blk % blocks_per_sample * per_block;
      const int64_t pairs = std::min(per_block, P2 - p2_0);
      const conv_gemm::RowOffsetA a(im2col, (n * s.P + 2 * p2_0) * s.Q);
      gemm_serial(z.data(), s.K, a, b_w, pairs * pair, s.K, taps, GemmEpilogue{b, true});
      for (int64_t i = 0; i < pairs; ++i) {
        const int64_t p2 = p2_0 + i, out = (n * P2 + p2) * Q2 * s.K;
        const float* z0 = z.data() + i * pair * s.K;
        conv_direct::pool_rows(y + out, argmax + out, z0, z0 + s.Q * s.K, Q2, s.K,
                               static_cast<int32_t>(2 * p2 * s.Q * s.K), static_cast<int32_t>(s.Q * s.K));
      }
    }
  }
}

namespace {
// dz (N,P,Q,K) = maxpool2d_backward(relu_backward(dy, y), argmax) for the 2x2 stride-2 pooling, in one pass
// that writes every element of dz once (no zero fill, no scatter): each window's four positions from bit masks,
// the row and column a pooling with odd P or Q drops set to zero. Returns the argmax entries outside their window.
int64_t unpool_relu(float* dz, const float* dy, const int32_t* argmax, const float* y, const ConvShape& s) {
  const int64_t P2 = s.P / 2, Q2 = s.Q / 2, row = s.Q * s.K, rows = s.N * P2;
  int64_t bad = 0;
#pragma omp parallel for schedule(static) reduction(+ : bad) if (rows * row >= (int64_t{1} << 15))
  for (int64_t np2 = 0; np2 < rows; ++np2) {
    const int64_t n = np2 / P2, p2 = np2 % P2, off = np2 * Q2 * s.K;
    float* d = dz + (n * s.P + 2 * p2) * row;
    bad += conv_direct::unpool_rows(d, dy + off, argmax + off, y + off, Q2, s.Q, s.K, 2 * p2 * row);
    if (s.Q % 2) {  // the last column of both rows
      std::fill(d + row - s.K, d + row, 0.0f);
      std::fill(d + 2 * row - s.K, d + 2 * row, 0.0f);
    }
    if (s.P % 2 && p2 == P2 - 1) std::fill(d + 2 * row, d + 3 * row, 0.0f);  // the sample's last row
  }
  return bad;
}
}  // namespace

// dy (N,P/2,Q/2,K), argmax (N,P/2,Q/2,K), y (N,P/2,Q/2,K), x (N,H,W,C) -> dw (R,S,C,K), db (K) or nullptr
int64_t conv2d_relu_maxpool_backward(float* dw, float* db, const float* dy, const int32_t* argmax, const float* y,
                                     const float* x, const ConvShape& s) {
  if (conv_direct::applies(s)) return conv_direct::backward_weights_maxpool(dw, db, dy, argmax, y, x, s);
  return conv2d_relu_maxpool_backward_data(nullptr, dw, db, dy, argmax, y, x, nullptr, s);
}

// As above, and dx (N,H,W,C) or nullptr: conv2d_backward of the unpooled gradient.
int64_t conv2d_relu_maxpool_backward_data(float* dx, float* dw, float* db, const float* dy, const int32_t* argmax,
                                          const float* y, const float* x, const float* w, const ConvShape& s) {
  if (!dx && conv_direct::applies(s)) return conv_direct::backward_weights_maxpool(dw, db, dy, argmax, y, x, s);
  const std::unique_ptr<float[]> dz(new float[s.N * s.P * s.Q * s.K]);  // not zeroed: every element is written
  const int64_t bad = unpool_relu(dz.get(), dy, argmax, y, s);
  conv2d_backward(dx, dw, db, dz.get(), x, w, s);  // w is only read for dx
  return bad;
}

}  // namespace microcnn
