// Implicit-GEMM convolution: the gathers that pack im2col rows straight into GEMM panels.
#include "conv_gemm.hpp"

#include <algorithm>
#include <cstring>
#include <vector>

namespace microcnn::conv_gemm {

Im2col forward_im2col(const float* x, const ConvShape& s) {
  return Im2col{x, s.N, s.H, s.W, s.C, s.P, s.Q, s.R, s.S, s.stride_h, s.stride_w, s.pad_top, s.pad_left, false};
}

Im2col backward_data_im2col(const float* dy, const ConvShape& s) {
  return Im2col{dy, s.N, s.P, s.Q, s.K, s.H, s.W, s.R, s.S, s.stride_h, s.stride_w, s.pad_top, s.pad_left, true};
}

namespace {

// The pixel a GEMM row/column index stands for, stepped in order without divisions.
struct PixelCursor {
  int64_t n, h, w, H, W;
  PixelCursor(int64_t index, int64_t H_, int64_t W_) : H(H_), W(W_) {
    n = index / (H * W);
    const int64_t rem = index % (H * W);
    h = rem / W;
    w = rem % W;
  }
  void next() {
    if (++w == W) {
      w = 0;
      if (++h == H) {
        h = 0;
        ++n;
      }
    }
  }
};

}  // namespace

// Row-major panels: row i of the block at dst + i*kPackedRowStride holds im2col[i0 + i, p0 : p0 + kb], copied
// as contiguous runs (C channels of one tap, or all S*C of a kernel row inside the input).
void Im2colA::pack(float* dst, int64_t i0, int mb, int64_t p0, int kb, int mr) const {
  const int64_t C = g_.Cs;
  const int padded = (mb + mr - 1) / mr * mr;
  PixelCursor px(i0, g_.Ho, g_.Wo);
  for (int i = 0; i < padded; ++i) {
    float* d = dst + static_cast<int64_t>(i) * kPackedRowStride;
    if (i >= mb) {
      std::fill(d, d + kb, 0.0f);
      continue;
    }
    int64_t r = (p0 / C) / g_.S, s = (p0 / C) % g_.S, c = p0 % C;
    const int64_t w_first = px.w * g_.stride_w - g_.pad_left;  // forward: input column of tap s = 0
    const bool row_inside = !g_.transposed_conv && w_first >= 0 && w_first + g_.S <= g_.Ws;
    for (int k = 0; k < kb;) {
      if (row_inside && s == 0 && c == 0) {  // the whole kernel row r: S*C contiguous values
        const int run = static_cast<int>(std::min<int64_t>(g_.S * C, kb - k));
        const int64_t h = px.h * g_.stride_h - g_.pad_top + r;
        if (h >= 0 && h < g_.Hs)
          std::memcpy(d + k, g_.src + ((px.n * g_.Hs + h) * g_.Ws + w_first) * C, sizeof(float) * run);
        else
          std::fill(d + k, d + k + run, 0.0f);
        k += run;
        ++r;
        continue;
      }
      const int run = static_cast<int>(std::min<int64_t>(C - c, kb - k));
      const float* src = g_.tap(px.n, px.h, px.w, r, s);
      if (src)
        std::memcpy(d + k, src + c, sizeof(float) * run);
      else
        std::fill(d + k, d + k + run, 0.0f);
      k += run;
      c = 0;
      if (++s == g_.S) {
        s = 0;
        ++r;
      }
    }
    px.next();
  }
}

// dst[t*kb*mr + k*mr + i] = im2col[p0 + k, i0 + t*mr + i]; row R*S*C (when ones_row) is all ones.
void Im2colTransposedA::pack(float* dst, int64_t i0, int mb, int64_t p0, int kb, int mr) const {
  const int64_t C = g_.Cs, taps = g_.R * g_.S * C;
  const int padded = (mb + mr - 1) / mr * mr;
  std::vector<float> row(padded);
  const int64_t tap_end = std::min<int64_t>(i0 + mb, taps);
  // Entries past the taps (the ones row, then zero padding) are the same for every pixel: written once.
  const int tail = static_cast<int>(std::max<int64_t>(tap_end - i0, 0));
  for (int idx = tail; idx < padded; ++idx) {
    const int64_t m = i0 + idx;
    row[idx] = (ones_row_ && m == taps && m < i0 + mb) ? 1.0f : 0.0f;
  }
  PixelCursor px(p0, g_.Ho, g_.Wo);
  for (int k = 0; k < kb; ++k, px.next()) {
    // the im2col row of this pixel, entries i0 .. i0 + padded
    int idx = 0;
    const int64_t h0 = px.h * g_.stride_h - g_.pad_top, w0 = px.w * g_.stride_w - g_.pad_left;
    if (i0 == 0 && tap_end == taps && !g_.transposed_conv && h0 >= 0 && h0 + g_.R <= g_.Hs && w0 >= 0 &&
        w0 + g_.S <= g_.Ws) {
      // the whole window inside the input: each kernel row r is one contiguous run of S*C values
      const int64_t run = g_.S * C;
      for (int64_t r = 0; r < g_.R; ++r, idx += static_cast<int>(run))
        std::memcpy(row.data() + idx, g_.src + ((px.n * g_.Hs + h0 + r) * g_.Ws + w0) * C, sizeof(float) * run);
    } else if (i0 < taps) {
      int64_t r = (i0 / C) / g_.S, s = (i0 / C) % g_.S, c = i0 % C;
      for (int64_t m = i0; m < tap_end;) {
        const int run = static_cast<int>(std::min<int64_t>(C - c, tap_end - m));
        const float* src = g_.tap(px.n, px.h, px.w, r, s);
        if (src)
          std::memcpy(row.data() + idx, src + c, sizeof(float) * run);
        else
          std::fill(row.data() + idx, row.data() + idx + run, 0.0f);
        idx += run;
        m += run;
        c = 0;
        if (++s == g_.S) {
          s = 0;
          ++r;
        }
      }
    }
    for (int t = 0; t * mr < padded; ++t)
      std::memcpy(dst + (static_cast<int64_t>(t) * kb + k) * mr, row.data() + t * mr, sizeof(float) * mr);
  }
}

}  // namespace microcnn::conv_gemm
