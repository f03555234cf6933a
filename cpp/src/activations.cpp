// ReLU and softmax. Memory-bound; element-wise loops split statically (no reductions across threads).
#include "microcnn/activations.hpp"

#include <algorithm>
#include <cmath>

#include "microcnn/threads.hpp"

namespace microcnn {

namespace {
// Below this many elements the OpenMP fork costs more than the loop.
constexpr int64_t kParallelMin = 1 << 15;
}  // namespace

// x (n) -> y (n)
void relu_forward(float* y, const float* x, int64_t n) {
#pragma omp parallel if (n >= kParallelMin)
  {
    DenormalGuard guard;
#pragma omp for schedule(static)
    for (int64_t i = 0; i < n; ++i) y[i] = x[i] > 0.0f ? x[i] : 0.0f;
  }
}

// dy (n), y (n) -> dx (n)
void relu_backward(float* dx, const float* dy, const float* y, int64_t n) {
#pragma omp parallel if (n >= kParallelMin)
  {
    DenormalGuard guard;
#pragma omp for schedule(static)
    // Load dy unconditionally: `y > 0 ? dy[i] : 0` is a conditional load the compiler will not vectorise,
    // and its branch mispredicts on about half the elements of a real activation.
    for (int64_t i = 0; i < n; ++i) {
      const float g = dy[i];
      dx[i] = y[i] > 0.0f ? g : 0.0f;
    }
  }
}

// x (M) -> probs (M), log-sum-exp
double softmax_row(float* probs, const float* x, int64_t M) {
  const float mx = *std::max_element(x, x + M);
  double sum = 0.0;
  for (int64_t m = 0; m < M; ++m) {
    probs[m] = std::exp(x[m] - mx);
    sum += probs[m];
  }
  const float inv = static_cast<float>(1.0 / sum);
  for (int64_t m = 0; m < M; ++m) probs[m] *= inv;
  return static_cast<double>(mx) + std::log(sum);
}

// x (N,M) -> y (N,M)
void softmax_forward(float* y, const float* x, int64_t N, int64_t M) {
#pragma omp parallel if (N * M >= kParallelMin)
  {
    DenormalGuard guard;
#pragma omp for schedule(static)
    for (int64_t n = 0; n < N; ++n) softmax_row(y + n * M, x + n * M, M);
  }
}

// dy (N,M), y (N,M) -> dx (N,M)
void softmax_backward(float* dx, const float* dy, const float* y, int64_t N, int64_t M) {
#pragma omp parallel if (N * M >= kParallelMin)
  {
    DenormalGuard guard;
#pragma omp for schedule(static)
    for (int64_t n = 0; n < N; ++n) {
      const float* g = dy + n * M;
      const float* yn = y + n * M;
      float dot = 0.0f;
      for (int64_t m = 0; m < M; ++m) dot += g[m] * yn[m];
      for (int64_t m = 0; m < M; ++m) dx[n * M + m] = yn[m] * (g[m] - dot);
    }
  }
}

}  // namespace microcnn
