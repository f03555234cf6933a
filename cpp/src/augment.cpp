#include "microcnn/augment.hpp"

#include <algorithm>
#include <cmath>
#include <vector>

#include "microcnn/threads.hpp"
#include "warp_row.hpp"

namespace microcnn {

// x (N,H,W,C), matrices (N,2,3) -> y (N,H,W,C)
void affine_warp(float* y, const float* x, const float* matrices, int64_t N, int64_t H, int64_t W, int64_t C,
                 FillMode fill_mode, float cval) {
  const int64_t rows = N * H;
  // Dynamic chunks of rows: a warp runs between training steps on a machine that may be busy, and a static
  // split would wait for the slowest core. Each row is written by one thread, so the result is the same.
#pragma omp parallel
  {
    DenormalGuard guard;
    std::vector<float> fill(static_cast<size_t>(C), cval);
#pragma omp for schedule(dynamic, 8)
    for (int64_t nr = 0; nr < rows; ++nr) {
      const int64_t n = nr / H, r = nr % H;
      const float* a = matrices + n * 6;
      const float* img = x + n * H * W * C;
      float* out = y + (n * H + r) * W * C;
      warp_row(out, img, a, r, H, W, C, fill_mode, fill.data());
    }
  }
}

}  // namespace microcnn
