#include <cmath>
#include <cstring>
#include <vector>

#include "microcnn/augment.hpp"
#include "microcnn/threads.hpp"
#include "warp_row.hpp"

namespace microcnn {
namespace {

constexpr double kPi = 3.14159265358979323846;

inline uint64_t mix(uint64_t z) {
  z += 0x9E3779B97F4A7C15ULL;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

inline uint64_t draw_bits(uint64_t key, uint64_t j) { return mix(key ^ (j * 0xD1B54A32D192ED03ULL)); }
inline double uniform(uint64_t key, uint64_t j) { return double(draw_bits(key, j) >> 11) * 0x1p-53; }

// The 2x3 sampling matrix of one sample (see the header): Keras's rotation @ shear @ zoom, then the dihedral
// element or flips acting on the output, all about the image centre.
void compose(float* out, const double* p, int64_t H, int64_t W) {
  const double t = p[3] * kPi / 180.0, s = p[4] * kPi / 180.0, zx = p[5], zy = p[6];
  // rot [[cos t, sin t], [-sin t, cos t]] @ shear [[cos s, 0], [-sin s, 1]] @ zoom diag(zy, zx)
  const double rs00 = std::cos(t) * std::cos(s) - std::sin(t) * std::sin(s), rs01 = std::sin(t);
  const double rs10 = -std::sin(t) * std::cos(s) - std::cos(t) * std::sin(s), rs11 = std::cos(t);
  double m[2][2] = {{rs00 * zy, rs01 * zx}, {rs10 * zy, rs11 * zx}};
  const int d = static_cast<int>(p[0]);
  const double fh = ((d & 1) || p[1] != 0) ? -1.0 : 1.0, fv = ((d & 2) || p[2] != 0) ? -1.0 : 1.0;
  // F = diag(fv, fh) @ (transpose when bit 2); m = m @ F.
  double f[2][2] = {{fv, 0.0}, {0.0, fh}};
  if (d & 4) f[0][0] = 0.0, f[0][1] = fv, f[1][0] = fh, f[1][1] = 0.0;
  double g[2][2];
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 2; ++j) g[i][j] = m[i][0] * f[0][j] + m[i][1] * f[1][j];
  const double cr = (H - 1) / 2.0, cc = (W - 1) / 2.0;
  out[0] = float(g[0][0]), out[1] = float(g[0][1]), out[2] = float(cr - g[0][0] * cr - g[0][1] * cc);
  out[3] = float(g[1][0]), out[4] = float(g[1][1]), out[5] = float(cc - g[1][0] * cr - g[1][1] * cc);
}

// One pass of the separable Gaussian along rows (axis 0) or columns (axis 1), reflect edges through an index
// table (positions -R .. n+R-1 of the axis), so the inner loops have no branches.
void blur_axis(float* dst, const float* src, const std::vector<float>& w, const std::vector<int64_t>& at,
               int64_t H, int64_t W, int64_t C, int axis) {
  const int64_t R = static_cast<int64_t>(w.size()) - 1;
  const int64_t row_len = W * C;
  for (int64_t r = 0; r < H; ++r) {
    float* o = dst + r * row_len;
    if (axis == 0) {  // dst row r = sum_t w[|t|] src row at[r + t]
      for (int64_t i = 0; i < row_len; ++i) o[i] = w[0] * src[r * row_len + i];
      for (int64_t t = 1; t <= R; ++t) {
        const float* up = src + at[size_t(r - t + R)] * row_len;
        const float* down = src + at[size_t(r + t + R)] * row_len;
        const float wt = w[size_t(t)];
        for (int64_t i = 0; i < row_len; ++i) o[i] += wt * (up[i] + down[i]);
      }
    } else {
      const float* s = src + r * row_len;
      for (int64_t c = 0; c < W; ++c)
        for (int64_t k = 0; k < C; ++k) {
          float acc = w[0] * s[c * C + k];
          for (int64_t t = 1; t <= R; ++t)
            acc += w[size_t(t)] * (s[at[size_t(c - t + R)] * C + k] + s[at[size_t(c + t + R)] * C + k]);
          o[c * C + k] = acc;
        }
    }
  }
}

void gaussian_blur(float* img, float* tmp, double sigma, int64_t H, int64_t W, int64_t C) {
  const int64_t R = static_cast<int64_t>(3.0 * sigma + 0.5);
  if (R == 0) return;
  std::vector<double> wd(static_cast<size_t>(R + 1));
  double sum = 0.0;
  for (int64_t i = 0; i <= R; ++i) sum += (i ? 2.0 : 1.0) * (wd[size_t(i)] = std::exp(-0.5 * i * i / (sigma * sigma)));
  std::vector<float> w(wd.size());
  for (size_t i = 0; i < w.size(); ++i) w[i] = float(wd[i] / sum);
  std::vector<int64_t> rows(size_t(H + 2 * R)), cols(size_t(W + 2 * R));
  for (int64_t i = -R; i < H + R; ++i) rows[size_t(i + R)] = warp_detail::resolve_index(i, H, FillMode::Reflect);
  for (int64_t i = -R; i < W + R; ++i) cols[size_t(i + R)] = warp_detail::resolve_index(i, W, FillMode::Reflect);
  blur_axis(tmp, img, w, rows, H, W, C, 0);
  blur_axis(img, tmp, w, cols, H, W, C, 1);
}

// Gamma, then contrast about the channel means, brightness and noise in one more pass.
void photometric(float* img, uint64_t key, const double* p, int64_t H, int64_t W, int64_t C) {
  const int64_t pixels = H * W, n = pixels * C;
  const float g = float(p[8]), k = float(p[9]), b = float(p[10]), s = float(p[11]);
  if (g != 1.0f)
    for (int64_t i = 0; i < n; ++i)
      if (img[i] > 0.0f) img[i] = std::exp2(g * std::log2(img[i]));
  std::vector<float> shift(static_cast<size_t>(C), b);  // v -> k v + (1 - k) mean_c + b
  if (k != 1.0f) {
    std::vector<double> mean(static_cast<size_t>(C), 0.0);
    for (int64_t q = 0; q < pixels; ++q)
      for (int64_t c = 0; c < C; ++c) mean[size_t(c)] += img[q * C + c];
    for (int64_t c = 0; c < C; ++c) shift[size_t(c)] = float((1.0 - double(k)) * mean[size_t(c)] / double(pixels)) + b;
  }
  if (k != 1.0f || b != 0.0f)
    for (int64_t q = 0; q < pixels; ++q)
      for (int64_t c = 0; c < C; ++c) img[q * C + c] = k * img[q * C + c] + shift[size_t(c)];
  if (s != 0.0f)
    for (int64_t i = 0; i < n; i += 2) {
      const uint64_t bits = draw_bits(key, kNoiseStream + uint64_t(i / 2));
      const float u1 = float(bits >> 40) * 0x1p-24f, u2 = float((bits >> 8) & 0xFFFFFFULL) * 0x1p-24f;
      const float r = s * std::sqrt(-2.0f * std::log(1.0f - u1)), a = 6.2831853f * u2;
      img[i] += r * std::cos(a);
      if (i + 1 < n) img[i + 1] += r * std::sin(a);
    }
}

bool is_identity(const float* a) {
  return a[0] == 1.0f && a[1] == 0.0f && a[2] == 0.0f && a[3] == 0.0f && a[4] == 1.0f && a[5] == 0.0f;
}

}  // namespace

uint64_t augment_sample_key(uint64_t seed, int64_t epoch, int64_t index) {
  return mix(mix(mix(seed) ^ uint64_t(epoch)) ^ uint64_t(index));
}

void augment_params(double* params, float* matrices, uint64_t seed, int64_t epoch, const int64_t* indices,
                    int64_t N, int64_t H, int64_t W, const AugmentConfig& cfg) {
  for (int64_t n = 0; n < N; ++n) {
    const uint64_t key = augment_sample_key(seed, epoch, indices[n]);
    double* p = params + n * kAugmentParams;
    p[0] = cfg.dihedral ? std::floor(uniform(key, 0) * (H == W ? 8 : 4)) : 0.0;
    p[1] = (!cfg.dihedral && cfg.horizontal_flip && uniform(key, 1) < 0.5) ? 1.0 : 0.0;
    p[2] = (!cfg.dihedral && cfg.vertical_flip && uniform(key, 2) < 0.5) ? 1.0 : 0.0;
    p[3] = (2.0 * uniform(key, 3) - 1.0) * cfg.rotation;
    p[4] = (2.0 * uniform(key, 4) - 1.0) * cfg.shear;
    p[5] = cfg.zoom_lo + (cfg.zoom_hi - cfg.zoom_lo) * uniform(key, 5);
    p[6] = cfg.zoom_lo + (cfg.zoom_hi - cfg.zoom_lo) * uniform(key, 6);
    // Blur, gamma and noise each touch half of the images (draws 12-14): the other half keeps sharp edges, the
    // original intensity curve and no noise, and the costliest per-value work is halved.
    p[7] = uniform(key, 12) < 0.5 ? uniform(key, 7) * cfg.blur : 0.0;
    p[8] = uniform(key, 13) < 0.5 ? std::exp((2.0 * uniform(key, 8) - 1.0) * cfg.gamma) : 1.0;
    p[9] = 1.0 + (2.0 * uniform(key, 9) - 1.0) * cfg.contrast;
    p[10] = (2.0 * uniform(key, 10) - 1.0) * cfg.brightness;
    p[11] = uniform(key, 14) < 0.5 ? uniform(key, 11) * cfg.noise : 0.0;
    compose(matrices + n * 6, p, H, W);
  }
}

void augment_batch(float* y, const float* x, uint64_t seed, int64_t epoch, const int64_t* indices, int64_t N,
                   int64_t H, int64_t W, int64_t C, const AugmentConfig& cfg) {
  std::vector<double> params(static_cast<size_t>(N * kAugmentParams));
  std::vector<float> matrices(static_cast<size_t>(N * 6));
  augment_params(params.data(), matrices.data(), seed, epoch, indices, N, H, W, cfg);
  const int64_t image = H * W * C;
  // One sample per iteration: its result depends on its own stream only, so any schedule gives the same bits.
#pragma omp parallel
  {
    DenormalGuard guard;
    std::vector<float> fill(static_cast<size_t>(C), cfg.cval), tmp;
#pragma omp for schedule(dynamic, 1)
    for (int64_t n = 0; n < N; ++n) {
      const float* a = matrices.data() + n * 6;
      const double* p = params.data() + n * kAugmentParams;
      float* out = y + n * image;
      const float* img = x + n * image;
      if (is_identity(a)) {
        std::memcpy(out, img, sizeof(float) * size_t(image));
      } else {
        for (int64_t r = 0; r < H; ++r) warp_row(out + r * W * C, img, a, r, H, W, C, cfg.fill_mode, fill.data());
      }
      if (p[7] > 0.0) {
        tmp.resize(size_t(image));
        gaussian_blur(out, tmp.data(), p[7], H, W, C);
      }
      photometric(out, augment_sample_key(seed, epoch, indices[n]), p, H, W, C);
    }
  }
}

}  // namespace microcnn
