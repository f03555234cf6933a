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

// dst[t*kb*mr + k*mr + i] = im2col[i0 + t*mr + i, p0 + k]
void Im2colA::pack(float* dst, int64_t i0, int mb, int64_t p0, int kb, int mr) const {
  const int64_t C = g_.Cs;
  const bool unit_transposed = g_.stride_h == 1 && g_.stride_w == 1;
  PixelCursor px(i0, g_.Ho, g_.Wo);
  for (int t = 0; t * mr < mb; ++t) {
    float* d = dst + static_cast<int64_t>(t) * kb * mr;
    const int rows = std::min(mr, mb - t * mr);
    if (rows == mr && px.w + mr <= g_.Wo && (!g_.transposed_conv || unit_transposed)) {
      // Fast path: the mr rows are consecutive pixels of one output row, so every tap (r, s) reads one input
      // row at evenly spaced columns; each k fills mr contiguous panel entries.
      int64_t h_base, w_base, w_step, sign;
      if (!g_.transposed_conv) {
        h_base = px.h * g_.stride_h - g_.pad_top;
        w_base = px.w * g_.stride_w - g_.pad_left;
        w_step = g_.stride_w;
        sign = 1;
      } else {
        h_base = px.h + g_.pad_top;
        w_base = px.w + g_.pad_left;
        w_step = 1;
        sign = -1;
      }
      int64_t r = (p0 / C) / g_.S, s = (p0 / C) % g_.S, c = p0 % C;
      for (int k = 0; k < kb;) {
        const int run = static_cast<int>(std::min<int64_t>(C - c, kb - k));
        const int64_t h = h_base + sign * r, w0 = w_base + sign * s;
        float* out = d + static_cast<int64_t>(k) * mr;
        if (h < 0 || h >= g_.Hs) {
          std::fill(out, out + static_cast<int64_t>(run) * mr, 0.0f);
        } else {
          const float* row = g_.src + (px.n * g_.Hs + h) * g_.Ws * C;
          if (w0 >= 0 && w0 + (mr - 1) * w_step < g_.Ws) {
            const float* src = row + w0 * C + c;
            const int64_t step = w_step * C;
            for (int j = 0; j < run; ++j, out += mr, ++src)
              for (int i = 0; i < mr; ++i) out[i] = src[i * step];
          } else {
            for (int j = 0; j < run; ++j, out += mr)
              for (int i = 0; i < mr; ++i) {
                const int64_t w = w0 + i * w_step;
                out[i] = (w >= 0 && w < g_.Ws) ? row[w * C + c + j] : 0.0f;
              }
          }
        }
        k += run;
        c = 0;
        if (++s == g_.S) {
          s = 0;
          ++r;
        }
      }
      for (int i = 0; i < mr; ++i) px.next();
      continue;
    }
    for (int i = 0; i < rows; ++i, px.next()) {
      int64_t r = (p0 / C) / g_.S, s = (p0 / C) % g_.S, c = p0 % C;
      for (int k = 0; k < kb;) {
        const int run = static_cast<int>(std::min<int64_t>(C - c, kb - k));
        const float* src = g_.tap(px.n, px.h, px.w, r, s);
        float* out = d + static_cast<int64_t>(k) * mr + i;
        if (src) {
          src += c;
          for (int j = 0; j < run; ++j) out[j * mr] = src[j];
        } else {
          for (int j = 0; j < run; ++j) out[j * mr] = 0.0f;
        }
        k += run;
        c = 0;
        if (++s == g_.S) {
          s = 0;
          ++r;
        }
      }
    }
    for (int i = rows; i < mr; ++i)
      for (int k = 0; k < kb; ++k) d[static_cast<int64_t>(k) * mr + i] = 0.0f;
  }
}

// dst[t*kb*mr + k*mr + i] = im2col[p0 + k, i0 + t*mr + i]; row R*S*C (when ones_row) is all ones.
void Im2colTransposedA::pack(float* dst, int64_t i0, int mb, int64_t p0, int kb, int mr) const {
  const int64_t C = g_.Cs, taps = g_.R * g_.S * C;
  const int padded = (mb + mr - 1) / mr * mr;
  std::vector<float> row(padded);
  const int64_t tap_end = std::min<int64_t>(i0 + mb, taps);
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
    for (int64_t m = i0 + idx; idx < padded; ++idx, ++m) row[idx] = (ones_row_ && m == taps && m < i0 + mb) ? 1.0f : 0.0f;
    for (int t = 0; t * mr < padded; ++t)
      std::memcpy(dst + (static_cast<int64_t>(t) * kb + k) * mr, row.data() + t * mr, sizeof(float) * mr);
  }
}

}  // namespace microcnn::conv_gemm
