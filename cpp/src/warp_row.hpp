// One output row of the bilinear affine warp, shared by affine_warp and augment_batch (conventions in
// microcnn/augment.hpp). Internal to cpp/src: static inline helpers only.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>

#include "microcnn/augment.hpp"

namespace microcnn {
namespace warp_detail {

// Integer neighbour index of a sample along one axis of length n, or -1 when it lies outside the image and
// the fill mode is Constant.
static inline int64_t resolve_index(int64_t i, int64_t n, FillMode mode) {
  if (i >= 0 && i < n) return i;
  switch (mode) {
    case FillMode::Nearest:
      return i < 0 ? 0 : n - 1;
    case FillMode::Constant:
      return -1;
    case FillMode::Reflect: {
      const int64_t period = 2 * n;
      int64_t k = i % period;
      if (k < 0) k += period;
      return k < n ? k : period - 1 - k;
    }
  }
  return -1;
}

// Sample coordinates far outside the image give the same result as coordinates just outside it for Nearest
// and Constant (both neighbours resolve to the edge, or both to cval); Reflect is periodic with period 2n.
// Bringing the coordinate into a small range keeps the float->int conversion defined for any finite matrix.
static inline double bring_into_range(double s, int64_t n, FillMode mode) {
  if (mode == FillMode::Reflect) {
    const double period = 2.0 * static_cast<double>(n);
    return s - period * std::floor(s / period);
  }
  return std::min(std::max(s, -2.0), static_cast<double>(n) + 1.0);
}

// Bilinear blend of four neighbour pixels into one output pixel, written as base + fraction * difference so
// that an integer sample position (identity, flips) reproduces the input exactly.
static inline void blend(float* o, const float* p00, const float* p01, const float* p10, const float* p11,
                         float fr, float fc, int64_t C) {
  for (int64_t k = 0; k < C; ++k) {
    const float top = p00[k] + fc * (p01[k] - p00[k]);
    const float bottom = p10[k] + fc * (p11[k] - p10[k]);
    o[k] = top + fr * (bottom - top);
  }
}

}  // namespace warp_detail

// img (H,W,C), a (2,3), row r -> out (W,C): output row r of the warp; fill holds C values of cval.
static inline void warp_row(float* out, const float* img, const float* a, int64_t r, int64_t H, int64_t W,
                            int64_t C, FillMode fill_mode, const float* fill) {
  using namespace warp_detail;
  const double row0 = double(a[0]) * r + double(a[2]), col0 = double(a[3]) * r + double(a[5]);
  for (int64_t c = 0; c < W; ++c) {
    const double sr_raw = row0 + double(a[1]) * c, sc_raw = col0 + double(a[4]) * c;
    float* o = out + c * C;
    // Fast path: all four neighbours inside the image (most pixels of a mild augmentation).
    if (sr_raw >= 0.0 && sc_raw >= 0.0 && sr_raw < double(H - 1) && sc_raw < double(W - 1)) {
      const int64_t r0 = static_cast<int64_t>(sr_raw), c0 = static_cast<int64_t>(sc_raw);
      const float fr = static_cast<float>(sr_raw - double(r0)), fc = static_cast<float>(sc_raw - double(c0));
      const float* p = img + (r0 * W + c0) * C;
      blend(o, p, p + C, p + W * C, p + W * C + C, fr, fc, C);
      continue;
    }
    const double sr = bring_into_range(sr_raw, H, fill_mode);
    const double sc = bring_into_range(sc_raw, W, fill_mode);
    const double r0f = std::floor(sr), c0f = std::floor(sc);
    const float fr = static_cast<float>(sr - r0f), fc = static_cast<float>(sc - c0f);
    const int64_t r0 = static_cast<int64_t>(r0f), c0 = static_cast<int64_t>(c0f);
    const int64_t ra = resolve_index(r0, H, fill_mode), rb = resolve_index(r0 + 1, H, fill_mode);
    const int64_t ca = resolve_index(c0, W, fill_mode), cb = resolve_index(c0 + 1, W, fill_mode);
    const float* p00 = (ra < 0 || ca < 0) ? fill : img + (ra * W + ca) * C;
    const float* p01 = (ra < 0 || cb < 0) ? fill : img + (ra * W + cb) * C;
    const float* p10 = (rb < 0 || ca < 0) ? fill : img + (rb * W + ca) * C;
    const float* p11 = (rb < 0 || cb < 0) ? fill : img + (rb * W + cb) * C;
    blend(o, p00, p01, p10, p11, fr, fc, C);
  }
}

}  // namespace microcnn
