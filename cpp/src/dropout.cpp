// Inverted dropout with a counter-based (splitmix64) mask: a pure function of (seed, step, index), so the
// mask is the same for any thread count and backward recomputes it instead of storing it.
#include "microcnn/dropout.hpp"

#include "microcnn/threads.hpp"

namespace microcnn {

namespace {

constexpr uint64_t kGolden = 0x9e3779b97f4a7c15ULL;
constexpr int64_t kParallelMin = 1 << 15;

inline uint64_t mix(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

inline uint64_t stream_key(uint64_t seed, uint64_t step) { return mix(mix(seed + kGolden) ^ step); }

inline float uniform(uint64_t key, uint64_t i) {
  return static_cast<float>(mix(key + (i + 1) * kGolden) >> 40) * (1.0f / 16777216.0f);
}

// dst = keep ? src * scale : 0, for forward and backward alike.
void apply_mask(float* dst, const float* src, int64_t n, double rate, uint64_t seed, uint64_t step,
                uint64_t offset) {
  const uint64_t key = stream_key(seed, step);
  const float scale = 1.0f / (1.0f - static_cast<float>(rate));
#pragma omp parallel if (n >= kParallelMin)
  {
    DenormalGuard guard;
#pragma omp for schedule(static)
    for (int64_t i = 0; i < n; ++i)
      dst[i] = uniform(key, offset + static_cast<uint64_t>(i)) >= rate ? src[i] * scale : 0.0f;
  }
}

}  // namespace

// x (n) -> y (n)
void dropout_forward(float* y, const float* x, int64_t n, double rate, uint64_t seed, uint64_t step,
                     uint64_t offset) {
  apply_mask(y, x, n, rate, seed, step, offset);
}

// dy (n) -> dx (n)
void dropout_backward(float* dx, const float* dy, int64_t n, double rate, uint64_t seed, uint64_t step,
                      uint64_t offset) {
  apply_mask(dx, dy, n, rate, seed, step, offset);
}

}  // namespace microcnn
