// Fused softmax + cross-entropy from logits (stable log-sum-exp). Rows are independent and split across
// threads; the per-row losses are summed afterwards in sample order, in double, so the loss is the same for
// any thread count.
#include "microcnn/loss.hpp"

#include <algorithm>
#include <cmath>
#include <vector>

#include "microcnn/threads.hpp"

namespace microcnn {

namespace {

constexpr int64_t kParallelMin = 1 << 14;

// One row: probs = softmax(x); returns lse = log(sum exp(x)) computed stably.
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

double weighted_mean(const std::vector<double>& ce, const float* sample_weight, int64_t N) {
  double total = 0.0;
  for (int64_t n = 0; n < N; ++n) total += (sample_weight ? sample_weight[n] : 1.0) * ce[n];
  return total / static_cast<double>(N);
}

}  // namespace

// logits (N,M), labels (N) -> probs (N,M), dlogits (N,M), loss
double softmax_cross_entropy_sparse(float* probs, float* dlogits, const float* logits, const int32_t* labels,
                                    const float* sample_weight, int64_t N, int64_t M) {
  std::vector<double> ce(N);
#pragma omp parallel if (N * M >= kParallelMin)
  {
    DenormalGuard guard;
#pragma omp for schedule(static)
    for (int64_t n = 0; n < N; ++n) {
      const float* x = logits + n * M;
      float* p = probs + n * M;
      float* d = dlogits + n * M;
      const double lse = softmax_row(p, x, M);
      const int64_t label = labels[n];
      ce[n] = lse - x[label];
      const float scale = static_cast<float>((sample_weight ? sample_weight[n] : 1.0) / N);
      for (int64_t m = 0; m < M; ++m) d[m] = scale * p[m];
      d[label] = scale * (p[label] - 1.0f);
    }
  }
  return weighted_mean(ce, sample_weight, N);
}

// logits (N,M), targets (N,M) -> probs (N,M), dlogits (N,M), loss
double softmax_cross_entropy_dense(float* probs, float* dlogits, const float* logits, const float* targets,
                                   const float* sample_weight, int64_t N, int64_t M) {
  std::vector<double> ce(N);
#pragma omp parallel if (N * M >= kParallelMin)
  {
    DenormalGuard guard;
#pragma omp for schedule(static)
    for (int64_t n = 0; n < N; ++n) {
      const float* x = logits + n * M;
      const float* t = targets + n * M;
      float* p = probs + n * M;
      float* d = dlogits + n * M;
      const double lse = softmax_row(p, x, M);
      double loss = 0.0, mass = 0.0;
      for (int64_t m = 0; m < M; ++m) {
        loss += static_cast<double>(t[m]) * (lse - x[m]);
        mass += t[m];
      }
      ce[n] = loss;
      const float scale = static_cast<float>((sample_weight ? sample_weight[n] : 1.0) / N);
      const float total = static_cast<float>(mass);
      for (int64_t m = 0; m < M; ++m) d[m] = scale * (total * p[m] - t[m]);
    }
  }
  return weighted_mean(ce, sample_weight, N);
}

}  // namespace microcnn
