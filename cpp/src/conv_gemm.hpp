// Internal: convolution as implicit GEMM. Panel sources that gather im2col rows (or their transpose) straight
// into the packed GEMM panels, so the im2col matrix never exists in memory.
#pragma once
#include <cstdint>

#include "microcnn/conv.hpp"
#include "microcnn/gemm.hpp"

namespace microcnn::conv_gemm {

// The im2col matrix of a convolution, as a GEMM A operand: row i = an output pixel (n, ho, wo), column
// (r, s, ch) = src[n, hs, ws, ch], zero where the tap falls outside src.
//   forward:       src = x (N,H,W,C), rows = y pixels (N,P,Q), hs = ho*stride - pad + r.
//   backward-data: src = dy (N,P,Q,K), rows = x pixels (N,H,W), hs = (ho + pad - r) / stride when that
//                  divides exactly (else zero): dx = this @ w laid out (R,S,K,C).
struct Im2col {
  const float* src;
  int64_t N, Hs, Ws, Cs;  // source tensor
  int64_t Ho, Wo;         // row pixels per sample
  int64_t R, S;
  int64_t stride_h, stride_w, pad_top, pad_left;
  bool transposed_conv;  // backward-data mapping

  // Pointer to the Cs channels of tap (r, s) for row pixel (n, ho, wo), or nullptr for a zero tap.
  const float* tap(int64_t n, int64_t ho, int64_t wo, int64_t r, int64_t s) const {
    int64_t hs, ws;
    if (!transposed_conv) {
      hs = ho * stride_h - pad_top + r;
      ws = wo * stride_w - pad_left + s;
    } else {
      hs = ho + pad_top - r;
      ws = wo + pad_left - s;
      if (stride_h != 1 || stride_w != 1) {  // integer divisions only for strided layers
        if (hs < 0 || ws < 0 || hs % stride_h || ws % stride_w) return nullptr;
        hs /= stride_h;
        ws /= stride_w;
      }
    }
    if (hs < 0 || hs >= Hs || ws < 0 || ws >= Ws) return nullptr;
    return src + ((n * Hs + hs) * Ws + ws) * Cs;
  }
};

Im2col forward_im2col(const float* x, const ConvShape& s);
Im2col backward_data_im2col(const float* dy, const ConvShape& s);

// Rows [i0, i0 + rows) of the forward im2col matrix g -> a (rows, R*S*C), each value through op, zero where a tap
// is padding (the bf16 kernels' A blocks: op copies for inference, rounds to bf16 for training).
template <class Op>
void gather_rows(float* a, const Im2col& g, const ConvShape& s, int64_t i0, int64_t rows, Op op) {
  const int64_t taps = s.R * s.S * s.C;
  for (int64_t i = 0; i < rows; ++i) {
    const int64_t pix = i0 + i, n = pix / (s.P * s.Q), ho = pix / s.Q % s.P, wo = pix % s.Q;
    for (int64_t r = 0; r < s.R; ++r)
      for (int64_t sc = 0; sc < s.S; ++sc) {
        float* dst = a + i * taps + (r * s.S + sc) * s.C;
        const float* src = g.tap(n, ho, wo, r, sc);
        for (int64_t c = 0; c < s.C; ++c) dst[c] = src ? op(src[c]) : 0.0f;
      }
  }
}

// Rows [offset, offset + M) of another A source, as rows [0, M): one block of output rows of a conv+pool step.
class RowOffsetA final : public PanelA {
 public:
  RowOffsetA(const PanelA& a, int64_t offset) : a_(a), offset_(offset) {}
  bool rows_layout() const override { return a_.rows_layout(); }
  void pack(float* dst, int64_t i0, int mb, int64_t p0, int kb, int mr) const override {
    a_.pack(dst, i0 + offset_, mb, p0, kb, mr);
  }

 private:
  const PanelA& a_;
  int64_t offset_;
};

// A = the im2col matrix (rows = output pixels, columns = R*S*Cs).
class Im2colA final : public PanelA {
 public:
  explicit Im2colA(const Im2col& g) : g_(g) {}
  bool rows_layout() const override { return true; }
  void pack(float* dst, int64_t i0, int mb, int64_t p0, int kb, int mr) const override;

 private:
  Im2col g_;
};

// A = the transposed im2col matrix (rows = R*S*Cs taps, then optionally one row of ones so that the same GEMM
// also sums the other operand over pixels; columns = pixels).
class Im2colTransposedA final : public PanelA {
 public:
  Im2colTransposedA(const Im2col& g, bool ones_row) : g_(g), ones_row_(ones_row) {}
  void pack(float* dst, int64_t i0, int mb, int64_t p0, int kb, int mr) const override;

 private:
  Im2col g_;
  bool ones_row_;
};

// Backward-data of a stride-1 convolution without im2col panels. For each tile of mr pixels of one dx row and
// each kernel row r, the dy values the tile's pixels read are, per pixel, one contiguous run of S*K floats
// (the S taps, last first) starting K floats after the previous pixel's: the micro-kernel reads them straight
// from dy (row stride K) against w laid out (R, S reversed, K, C), accumulating the kernel rows into dx. With
// C one or two register tiles wide each A value feeds one or two tiles, so packing A would mostly add a copy.
// dy (N,P,Q,K), w (R,S,C,K) -> dx (N,H,W,C). Returns false, touching nothing, when the layer does not qualify
// (strides, a kernel without in-place reads, C not a whole number of register tiles, S*K too deep).
bool backward_data_in_place(float* dx, const float* dy, const float* w, const ConvShape& s);

}  // namespace microcnn::conv_gemm
