// Per-sample, per-channel spatial mean and standard deviation of feature maps: the open-set detector's
// per-layer features (microcnn/_ood_layers.py). One pass over each sample's map, sums in double.
#include <cmath>
#include <vector>

#include "microcnn/infer.hpp"
#include "microcnn/threads.hpp"

namespace microcnn {

// maps (N, P, C) -> out (N, 2C): out[n, c] = mean over p, out[n, C + c] = sqrt(max(E[x^2] - mean^2, 0))
void channel_stats(float* out, const float* maps, int64_t N, int64_t P, int64_t C) {
#pragma omp parallel for schedule(static) if (N * P * C >= (int64_t{1} << 18))
  for (int64_t n = 0; n < N; ++n) {
    std::vector<double> sum(static_cast<size_t>(C), 0.0), sq(static_cast<size_t>(C), 0.0);
    const float* m = maps + n * P * C;
    for (int64_t p = 0; p < P; ++p, m += C)
      for (int64_t c = 0; c < C; ++c) {
        const double v = m[c];
        sum[c] += v;
        sq[c] += v * v;
      }
    float* o = out + n * 2 * C;
    for (int64_t c = 0; c < C; ++c) {
      const double mean = sum[c] / static_cast<double>(P);
      const double var = sq[c] / static_cast<double>(P) - mean * mean;
      o[c] = static_cast<float>(mean);
      o[C + c] = static_cast<float>(std::isnan(var) ? var : std::sqrt(var > 0.0 ? var : 0.0));  // NaN stays NaN
    }
  }
}

}  // namespace microcnn
