// Implicit-GEMM convolution: the gathers that pack im2col rows straight into GEMM panels.
#include "conv_gemm.hpp"

#include <algorithm>
#include <cstring>
#include <vector>

#include "gemm/kernels.hpp"
#include "microcnn/threads.hpp"

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

// How far ahead (in pixels) the transposed pack prefetches its input rows.
constexpr int64_t kPrefetchPixels = 32;

// dst[t*kb*MR + i] = row[t*MR + i]: one pixel's im2col row into the k-major micro-panels (dst at its k).
template <int MR>
void scatter_row(float* dst, const float* row, int padded, int kb) {
  for (int t = 0; t * MR < padded; ++t) {
    float* d = dst + static_cast<int64_t>(t) * kb * MR;
    const float* s = row + t * MR;
    for (int i = 0; i < MR; ++i) d[i] = s[i];
  }
}

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
      for (int64_t r = 0; r < g_.R; ++r, idx += static_cast<int>(run)) {
        const int64_t offset = ((px.n * g_.Hs + h0 + r) * g_.Ws + w0) * C;
        const float* src = g_.src + offset;
#if defined(__GNUC__)
        // The same input row a few pixels on: R interleaved streams that the hardware prefetchers follow late.
        // Only addresses inside the source are formed (a pointer past the end would be undefined behaviour).
        const int64_t ahead = offset + kPrefetchPixels * g_.stride_w * C;
        if (ahead + g_.stride_w * C <= g_.N * g_.Hs * g_.Ws * C)
          for (int64_t f = 0; f < g_.stride_w * C; f += 16) __builtin_prefetch(g_.src + ahead + f);
#endif
        std::memcpy(row.data() + idx, src, sizeof(float) * run);
      }
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
    switch (mr) {  // fixed-length copies, inlined: a libc call per 48-byte chunk cost more than the copy
      case 12: scatter_row<12>(dst + static_cast<int64_t>(k) * 12, row.data(), padded, kb); break;
      case 6: scatter_row<6>(dst + static_cast<int64_t>(k) * 6, row.data(), padded, kb); break;
      case 4: scatter_row<4>(dst + static_cast<int64_t>(k) * 4, row.data(), padded, kb); break;
      default:
        for (int t = 0; t * mr < padded; ++t)
          std::memcpy(dst + (static_cast<int64_t>(t) * kb + k) * mr, row.data() + t * mr, sizeof(float) * mr);
    }
  }
}

bool backward_data_in_place(float* dx, const float* dy, const float* w, const ConvShape& s) {
  namespace gd = gemm_detail;
  const gd::KernelInfo& ki = gd::active_kernel();
  const int64_t K = s.K, C = s.C, SK = s.S * s.K;
  if (!ki.in_place || s.stride_h != 1 || s.stride_w != 1 || C % ki.nr != 0 || SK > 2 * ki.kc) return false;
  // For kernel row r, dx pixel (h, w) reads dy[h + pad_top - r, w + pad_left - s, :] for s = S-1 .. 0: one
  // contiguous run of S*K values. B is w laid out to match: (R, S reversed, K, C).
  std::vector<float> wr(static_cast<size_t>(s.R) * SK * C);
  for (int64_t r = 0; r < s.R; ++r)
    for (int64_t j = 0; j < s.S; ++j)
      for (int64_t k = 0; k < K; ++k)
        for (int64_t c = 0; c < C; ++c)
          wr[((r * s.S + j) * K + k) * C + c] = w[((r * s.S + s.S - 1 - j) * C + c) * K + k];
  const int mr = ki.mr, nr = ki.nr;
  const int64_t rows = s.N * s.H;
  const int64_t dy_size = s.N * s.P * s.Q * K;
  const int64_t pf_len = SK * gd::kLineFloats;
  const int64_t multiply_adds = rows * s.W * C * SK * s.R;
#pragma omp parallel if (multiply_adds >= (int64_t{1} << 22))
  {
    DenormalGuard guard;
    // A tile with taps outside dy (borders) or fewer pixels than the kernel's rows: its dy runs gathered here,
    // zero where a tap falls outside, and (short tiles) its dx rows accumulated here.
    std::vector<float> a_buf(static_cast<size_t>(mr) * SK), c_buf(static_cast<size_t>(mr) * C);
#pragma omp for schedule(static)
    for (int64_t nh = 0; nh < rows; ++nh) {
      const int64_t n = nh / s.H, h = nh % s.H;
      for (int64_t w0 = 0; w0 < s.W; w0 += mr) {
        const int mm = static_cast<int>(std::min<int64_t>(mr, s.W - w0));
        const bool short_tile = mm <= ki.mr_short;
        const int tile_rows = short_tile ? ki.mr_short : mr;
        const gd::MicroKernel kernel = ki.kernels[short_tile][/*rows=*/1][/*in_place=*/1];
        const bool whole = mm == tile_rows;  // the kernel's rows are all dx pixels: it writes dx directly
        float* ct = whole ? dx + (nh * s.W + w0) * C : c_buf.data();
        if (!whole) std::fill(c_buf.begin(), c_buf.end(), 0.0f);
        bool first = whole;  // the first kernel row overwrites dx; later ones (and short tiles) accumulate
        const int64_t ws0 = w0 + s.pad_left - (s.S - 1);  // dy column of the tile's first run
        const bool inside = whole && ws0 >= 0 && ws0 + tile_rows + s.S - 1 <= s.Q;
        for (int64_t r = 0; r < s.R; ++r) {
          const int64_t hs = h + s.pad_top - r;
          if (hs < 0 || hs >= s.P) continue;
          const float* dy_row = dy + (n * s.P + hs) * s.Q * K;
          const float* a = a_buf.data();
          if (inside) {
            a = dy_row + ws0 * K;
          } else {
            for (int i = 0; i < tile_rows; ++i)
              for (int64_t j = 0; j < s.S; ++j) {
                float* d = a_buf.data() + i * SK + j * K;
                const int64_t ws = ws0 + i + j;
                if (i < mm && ws >= 0 && ws < s.Q)
                  std::memcpy(d, dy_row + ws * K, sizeof(float) * K);
                else
                  std::fill(d, d + K, 0.0f);
              }
          }
          const int64_t lda = inside ? K : SK;
          const float* b = wr.data() + r * SK * C;
          // The kernel prefetches SK lines from pf: the dy runs of the next tiles in this row, which it would
          // otherwise fetch as twelve interleaved streams the hardware prefetchers do not follow.
          const float* pf = nullptr;
          if (dy_size >= pf_len) pf = dy + std::min(((n * s.P + hs) * s.Q + ws0 + mr) * K, dy_size - pf_len);
          for (int64_t j0 = 0; j0 < C; j0 += nr)
            kernel(SK, a, lda, b + j0, C, ct + j0, C, !first, nullptr, false, j0 == 0 ? pf : nullptr);
          first = false;
        }
        if (first) {  // no tap reaches these pixels
          std::fill(ct, ct + static_cast<int64_t>(mm) * C, 0.0f);
        } else if (!whole) {
          std::memcpy(dx + (nh * s.W + w0) * C, c_buf.data(), sizeof(float) * mm * C);
        }
      }
    }
  }
  return true;
}

}  // namespace microcnn::conv_gemm
