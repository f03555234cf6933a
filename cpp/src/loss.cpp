// Fused softmax + cross-entropy from logits (stable log-sum-exp). Rows are independent and split across
// threads; the per-row losses are summed afterwards in sample order, in double, so the loss is the same for
// any thread count.
#include "microcnn/loss.hpp"

#include <algorithm>
#include <cmath>
#include <vector>

#include "microcnn/activations.hpp"
#include "microcnn/threads.hpp"

namespace microcnn {

namespace {

constexpr int64_t kParallelMin = 1 << 14;

// The rows of both label kinds: row(n, x, p, d, lse, scale) fills dlogits row d from probs p and returns the
// sample's cross-entropy; the weighted mean is then taken in sample order, in double.
template <class Row>
double softmax_cross_entropy_rows(float* probs, float* dlogits, const float* logits, const float* sample_weight,
                                  int64_t N, int64_t M, Row row) {
  std::vector<double> ce(N);
#pragma omp parallel if (N * M >= kParallelMin)
  {
    DenormalGuard guard;
#pragma omp for schedule(static)
    for (int64_t n = 0; n < N; ++n) {
      const float* x = logits + n * M;
      float* p = probs + n * M;
      const double lse = softmax_row(p, x, M);
      const float scale = static_cast<float>((sample_weight ? sample_weight[n] : 1.0) / N);
      ce[n] = row(n, x, p, dlogits + n * M, lse, scale);
    }
  }
  double total = 0.0;
  for (int64_t n = 0; n < N; ++n) total += (sample_weight ? sample_weight[n] : 1.0) * ce[n];
  return total / static_cast<double>(N);
}

}  // namespace

// logits (N,M), labels (N) -> probs (N,M), dlogits (N,M), loss
double softmax_cross_entropy_sparse(float* probs, float* dlogits, const float* logits, const int32_t* labels,
                                    const float* sample_weight, int64_t N, int64_t M) {
  return softmax_cross_entropy_rows(
      probs, dlogits, logits, sample_weight, N, M,
      [&](int64_t n, const float* x, const float* p, float* d, double lse, float scale) {
        const int64_t label = labels[n];
        for (int64_t m = 0; m < M; ++m) d[m] = scale * p[m];
        d[label] = scale * (p[label] - 1.0f);
        return lse - x[label];
      });
}

// logits (N,M), targets (N,M) -> probs (N,M), dlogits (N,M), loss
double softmax_cross_entropy_dense(float* probs, float* dlogits, const float* logits, const float* targets,
                                   const float* sample_weight, int64_t N, int64_t M) {
  return softmax_cross_entropy_rows(
      probs, dlogits, logits, sample_weight, N, M,
      [&](int64_t n, const float* x, const float* p, float* d, double lse, float scale) {
        const float* t = targets + n * M;
        double loss = 0.0, mass = 0.0;
        for (int64_t m = 0; m < M; ++m) {
          loss += static_cast<double>(t[m]) * (lse - x[m]);
          mass += t[m];
        }
        const float total = static_cast<float>(mass);
        for (int64_t m = 0; m < M; ++m) d[m] = scale * (total * p[m] - t[m]);
        return loss;
      });
}

}  // namespace microcnn
