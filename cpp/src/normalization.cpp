#include "microcnn/normalization.hpp"

#include <algorithm>
#include <cmath>
#include <vector>

#include "microcnn/threads.hpp"

namespace microcnn {
namespace {

// Row chunks for the per-channel sums: ~8K elements each, at most 256 of them. The split depends only on
// (M, C), never on the thread count, so the chunk partials and their in-order sum are reproducible bit-for-bit.
struct RowChunks {
  int64_t rows;
  int64_t count;
};

RowChunks row_chunks(int64_t M, int64_t C) {
  int64_t rows = std::max<int64_t>(1, (8192 + C - 1) / C);
  rows = std::max(rows, (M + 255) / 256);
  return {rows, (M + rows - 1) / rows};
}

// out (S*C) = sum over rows m of the S*C contributions row_fn(m, acc) adds into acc, in double.
template <int S, class RowFn>
void channel_sums(double* out, int64_t M, int64_t C, RowFn row_fn) {
  const RowChunks chunks = row_chunks(M, C);
  const int64_t width = S * C;
  std::vector<double> partial(static_cast<size_t>(chunks.count * width), 0.0);
#pragma omp parallel
  {
    DenormalGuard guard;
#pragma omp for schedule(static)
    for (int64_t k = 0; k < chunks.count; ++k) {
      double* acc = partial.data() + k * width;
      const int64_t m1 = std::min(M, (k + 1) * chunks.rows);
      for (int64_t m = k * chunks.rows; m < m1; ++m) row_fn(m, acc);
    }
  }
  std::fill(out, out + width, 0.0);
  for (int64_t k = 0; k < chunks.count; ++k)
    for (int64_t i = 0; i < width; ++i) out[i] += partial[k * width + i];
}

// The same rounding in forward and backward: both see var as float32 (backward receives it from Python).
inline float inv_std(float var, float epsilon) {
  return static_cast<float>(1.0 / std::sqrt(static_cast<double>(var) + static_cast<double>(epsilon)));
}

// y (M,C) = (x - mean) * scale + shift, per channel.
void normalize_rows(float* y, const float* x, const float* mean, const float* scale, const float* shift,
                    int64_t M, int64_t C) {
#pragma omp parallel
  {
    DenormalGuard guard;
#pragma omp for schedule(static)
    for (int64_t m = 0; m < M; ++m) {
      const float* xr = x + m * C;
      float* yr = y + m * C;
      for (int64_t c = 0; c < C; ++c) yr[c] = (xr[c] - mean[c]) * scale[c] + shift[c];
    }
  }
}

}  // namespace

void batchnorm_forward_train(float* y, float* mean, float* var, const float* x, const float* gamma,
                             const float* beta, int64_t M, int64_t C, float epsilon) {
  // Two passes (mean, then squared deviations from it), both in double: no cancellation when |mean| >> std.
  std::vector<double> sum(C), sq(C);
  channel_sums<1>(sum.data(), M, C, [&](int64_t m, double* acc) {
    const float* xr = x + m * C;
    for (int64_t c = 0; c < C; ++c) acc[c] += xr[c];
  });
  for (int64_t c = 0; c < C; ++c) sum[c] /= static_cast<double>(M);
  const double* mean_d = sum.data();
  channel_sums<1>(sq.data(), M, C, [&](int64_t m, double* acc) {
    const float* xr = x + m * C;
    for (int64_t c = 0; c < C; ++c) {
      const double d = xr[c] - mean_d[c];
      acc[c] += d * d;
    }
  });
  std::vector<float> scale(C);
  for (int64_t c = 0; c < C; ++c) {
    mean[c] = static_cast<float>(mean_d[c]);
    var[c] = static_cast<float>(sq[c] / static_cast<double>(M));
    scale[c] = gamma[c] * inv_std(var[c], epsilon);
  }
  normalize_rows(y, x, mean, scale.data(), beta, M, C);
}

void batchnorm_forward_infer(float* y, const float* x, const float* gamma, const float* beta,
                             const float* moving_mean, const float* moving_var, int64_t M, int64_t C,
                             float epsilon) {
  std::vector<float> scale(C);
  for (int64_t c = 0; c < C; ++c) scale[c] = gamma[c] * inv_std(moving_var[c], epsilon);
  normalize_rows(y, x, moving_mean, scale.data(), beta, M, C);
}

void batchnorm_backward(float* dx, float* dgamma, float* dbeta, const float* dy, const float* x,
                        const float* gamma, const float* mean, const float* var, int64_t M, int64_t C,
                        float epsilon) {
  std::vector<float> inv(C);
  for (int64_t c = 0; c < C; ++c) inv[c] = inv_std(var[c], epsilon);
  // sums[0:C] = sum(dy) = dbeta, sums[C:2C] = sum(dy * xhat) = dgamma
  std::vector<double> sums(2 * C);
  channel_sums<2>(sums.data(), M, C, [&](int64_t m, double* acc) {
    const float* xr = x + m * C;
    const float* dyr = dy + m * C;
    for (int64_t c = 0; c < C; ++c) {
      const float xhat = (xr[c] - mean[c]) * inv[c];
      acc[c] += dyr[c];
      acc[C + c] += static_cast<double>(dyr[c]) * xhat;
    }
  });
  // dx = gamma * inv * (dy - mean(dy) - xhat * mean(dy * xhat)): the batch statistics depend on every x.
  std::vector<float> scale(C), mean_dy(C), mean_dyxhat(C);
  for (int64_t c = 0; c < C; ++c) {
    dbeta[c] = static_cast<float>(sums[c]);
    dgamma[c] = static_cast<float>(sums[C + c]);
    scale[c] = gamma[c] * inv[c];
    mean_dy[c] = static_cast<float>(sums[c] / static_cast<double>(M));
    mean_dyxhat[c] = static_cast<float>(sums[C + c] / static_cast<double>(M));
  }
#pragma omp parallel
  {
    DenormalGuard guard;
#pragma omp for schedule(static)
    for (int64_t m = 0; m < M; ++m) {
      const float* xr = x + m * C;
      const float* dyr = dy + m * C;
      float* dxr = dx + m * C;
      for (int64_t c = 0; c < C; ++c) {
        const float xhat = (xr[c] - mean[c]) * inv[c];
        dxr[c] = scale[c] * (dyr[c] - mean_dy[c] - xhat * mean_dyxhat[c]);
      }
    }
  }
}

void global_avgpool_forward(float* y, const float* x, int64_t N, int64_t HW, int64_t C) {
  // Allocated before the parallel region: an exception must not escape an OpenMP thread.
  std::vector<double> sums(static_cast<size_t>(N * C), 0.0);
#pragma omp parallel
  {
    DenormalGuard guard;
#pragma omp for schedule(static)
    for (int64_t n = 0; n < N; ++n) {
      double* acc = sums.data() + n * C;
      const float* xn = x + n * HW * C;
      for (int64_t p = 0; p < HW; ++p)
        for (int64_t c = 0; c < C; ++c) acc[c] += xn[p * C + c];
      for (int64_t c = 0; c < C; ++c) y[n * C + c] = static_cast<float>(acc[c] / static_cast<double>(HW));
    }
  }
}

void global_avgpool_backward(float* dx, const float* dy, int64_t N, int64_t HW, int64_t C) {
  const float inv_hw = static_cast<float>(1.0 / static_cast<double>(HW));
#pragma omp parallel
  {
    DenormalGuard guard;
#pragma omp for schedule(static)
    for (int64_t n = 0; n < N; ++n) {
      float* dxn = dx + n * HW * C;
      const float* dyn = dy + n * C;
      for (int64_t p = 0; p < HW; ++p)
        for (int64_t c = 0; c < C; ++c) dxn[p * C + c] = dyn[c] * inv_hw;
    }
  }
}

}  // namespace microcnn
