// 2-D convolution, NHWC activations, HWIO weights (Keras layout).
// Legend: N batch, H W input height/width, C in-channels, K out-channels, R S kernel height/width,
//         P Q output height/width.
// Backward OVERWRITES its outputs (dx, dw, db); callers need not zero them.
#pragma once
#include <cstdint>

namespace microcnn {

enum class Padding { Valid, Same };

// The whole geometry of one convolution (or pooling) layer. Build it with make_conv_shape so P, Q and the
// padding are computed in one place.
struct ConvShape {
  int64_t N, H, W, C, K, R, S;
  int64_t stride_h, stride_w;
  int64_t pad_top, pad_left;  // rows/cols of implicit zero padding before the input ("same" only)
  int64_t P, Q;
};

// Output length along one axis. valid: (size - kernel) / stride + 1 (size >= kernel); same: ceil(size / stride).
int64_t conv2d_output_size(int64_t size, int64_t kernel, int64_t stride, Padding padding);

// "same" padding before the input along one axis, as Keras/TF: total = max((out-1)*stride + kernel - size, 0),
// floor(total/2) before, the rest after. 0 for "valid".
int64_t conv2d_pad_before(int64_t size, int64_t kernel, int64_t stride, Padding padding);

// Caller guarantees all sizes >= 1, strides >= 1 and (valid) H >= R, W >= S.
ConvShape make_conv_shape(int64_t N, int64_t H, int64_t W, int64_t C, int64_t K, int64_t R, int64_t S,
                          int64_t stride_h, int64_t stride_w, Padding padding);

// x (N,H,W,C), w (R,S,C,K), b (K) or nullptr -> y (N,P,Q,K); relu: y = max(0, conv + b).
void conv2d_forward(float* y, const float* x, const float* w, const float* b, const ConvShape& s, bool relu);

// dy (N,P,Q,K), x (N,H,W,C), w (R,S,C,K) -> dx (N,H,W,C) or nullptr, dw (R,S,C,K), db (K) or nullptr.
// dw, db are summed over the batch.
void conv2d_backward(float* dx, float* dw, float* db, const float* dy, const float* x, const float* w,
                     const ConvShape& s);

// The block conv + ReLU + 2x2 stride-2 "valid" max pool, without the full-resolution conv output z (N,P,Q,K) in
// memory. x (N,H,W,C), w (R,S,C,K), b (K) or nullptr -> y (N,P/2,Q/2,K), argmax (N,P/2,Q/2,K): exactly
// maxpool2d_forward of z = max(0, conv + b) (argmax: per-sample flat index (h*Q + w)*K + k into z).
// Requires P, Q >= 2 and P*Q*K <= INT32_MAX.
void conv2d_relu_maxpool_forward(float* y, int32_t* argmax, const float* x, const float* w, const float* b,
                                 const ConvShape& s);

// dy (N,P/2,Q/2,K), argmax and y from the forward, x (N,H,W,C) -> dw (R,S,C,K), db (K) or nullptr: the weight
// gradient of conv2d_backward for dz = maxpool2d_backward(relu_backward(dy, y), argmax), without dz in memory.
// Returns the number of argmax entries that are not in their own pooling window (skipped); 0 for the forward's.
int64_t conv2d_relu_maxpool_backward(float* dw, float* db, const float* dy, const int32_t* argmax, const float* y,
                                     const float* x, const ConvShape& s);

// The same with the input gradient: dx (N,H,W,C) or nullptr, dw, db (or nullptr) of conv2d_backward for
// dz = maxpool2d_backward(relu_backward(dy, y), argmax), bit for bit (dz is written once, in one pass, instead of
// a ReLU pass, a zero fill and a scatter). w (R,S,C,K) is read only for dx. Returns as above.
int64_t conv2d_relu_maxpool_backward_data(float* dx, float* dw, float* db, const float* dy, const int32_t* argmax,
                                          const float* y, const float* x, const float* w, const ConvShape& s);

// Naive loops: the oracle the production kernels are tested against. Same contracts as above.
namespace reference {
// x (N,H,W,C), w (R,S,C,K), b (K) or nullptr -> y (N,P,Q,K)
void conv2d_forward(float* y, const float* x, const float* w, const float* b, const ConvShape& s, bool relu);
// dy (N,P,Q,K), x (N,H,W,C), w (R,S,C,K) -> dx (N,H,W,C) or nullptr, dw (R,S,C,K), db (K) or nullptr
void conv2d_backward(float* dx, float* dw, float* db, const float* dy, const float* x, const float* w,
                     const ConvShape& s);
}  // namespace reference

}  // namespace microcnn
