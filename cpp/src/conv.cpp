// Production convolution. For now it forwards to the naive reference; the packed-GEMM implicit convolution
// will replace these bodies without changing the signatures.
#include "microcnn/conv.hpp"

#include <algorithm>

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
  reference::conv2d_forward(y, x, w, b, s, relu);
}

// dy (N,P,Q,K), x (N,H,W,C), w (R,S,C,K) -> dx (N,H,W,C) or nullptr, dw (R,S,C,K), db (K) or nullptr
void conv2d_backward(float* dx, float* dw, float* db, const float* dy, const float* x, const float* w,
                     const ConvShape& s) {
  reference::conv2d_backward(dx, dw, db, dy, x, w, s);
}

}  // namespace microcnn
