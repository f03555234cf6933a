// SGD and Adam updates in place (Keras 3 formulas). Element-wise, split statically across threads.
#include "microcnn/optim.hpp"

#include <algorithm>
#include <cmath>

#include "microcnn/threads.hpp"

namespace microcnn {

namespace {
constexpr int64_t kParallelMin = 1 << 15;
constexpr int64_t kChunk = 1 << 14;  // elements per task of adam_update (a multiple of any SIMD width)
}  // namespace

// param (n), velocity (n) or nullptr, grad (n)
void sgd_update(float* param, float* velocity, const float* grad, int64_t n, double learning_rate,
                double momentum, bool nesterov) {
  const float lr = static_cast<float>(learning_rate), mu = static_cast<float>(momentum);
#pragma omp parallel if (n >= kParallelMin)
  {
    DenormalGuard guard;
    if (momentum == 0.0) {
#pragma omp for schedule(static)
      for (int64_t i = 0; i < n; ++i) param[i] -= lr * grad[i];
    } else {
#pragma omp for schedule(static)
      for (int64_t i = 0; i < n; ++i) {
        const float v = mu * velocity[i] - lr * grad[i];
        velocity[i] = v;
        param[i] += nesterov ? mu * v - lr * grad[i] : v;
      }
    }
  }
}

AdamStep adam_step(double learning_rate, double beta_1, double beta_2, double epsilon, int64_t step) {
  const double t = static_cast<double>(step);
  return AdamStep{
      static_cast<float>(learning_rate * std::sqrt(1.0 - std::pow(beta_2, t)) / (1.0 - std::pow(beta_1, t))),
      1.0f - static_cast<float>(beta_1), 1.0f - static_cast<float>(beta_2), static_cast<float>(epsilon)};
}

// param (n), m (n), v (n), grad (n)
void adam_apply(float* param, float* m, float* v, const float* grad, int64_t n, const AdamStep& s) {
  const float alpha = s.alpha, one_minus_b1 = s.one_minus_b1, one_minus_b2 = s.one_minus_b2, eps = s.epsilon;
  for (int64_t i = 0; i < n; ++i) {
    const float g = grad[i];
    m[i] += (g - m[i]) * one_minus_b1;
    v[i] += (g * g - v[i]) * one_minus_b2;
    param[i] -= (m[i] * alpha) / (std::sqrt(v[i]) + eps);
  }
}

// param (n), m (n), v (n), grad (n)
void adam_update(float* param, float* m, float* v, const float* grad, int64_t n, double learning_rate,
                 double beta_1, double beta_2, double epsilon, int64_t step) {
  const AdamStep s = adam_step(learning_rate, beta_1, beta_2, epsilon, step);
  const int64_t chunks = (n + kChunk - 1) / kChunk;
#pragma omp parallel if (n >= kParallelMin)
  {
    DenormalGuard guard;
#pragma omp for schedule(static)
    for (int64_t c = 0; c < chunks; ++c) {
      const int64_t i0 = c * kChunk;
      adam_apply(param + i0, m + i0, v + i0, grad + i0, std::min(kChunk, n - i0), s);
    }
  }
}

}  // namespace microcnn
