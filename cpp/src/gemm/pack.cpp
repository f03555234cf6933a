// Packing of strided (plain matrix) GEMM operands into the micro-kernels' panel layouts.
#include <algorithm>
#include <cstring>

#include "microcnn/gemm.hpp"

namespace microcnn {

namespace {
// dst[k*MR + i] = src[k*stride + i] for i < MR, k < kb: a k-major micro-panel of a transposed operand.
template <int MR>
void pack_runs(float* dst, const float* src, int64_t stride, int kb) {
  for (int k = 0; k < kb; ++k)
    for (int i = 0; i < MR; ++i) dst[k * MR + i] = src[k * stride + i];
}
}  // namespace

void StridedA::pack(float* dst, int64_t i0, int mb, int64_t p0, int kb, int mr) const {
  if (rows_) {  // row-major operand, row-major panels: one contiguous copy per row
    const int padded = (mb + mr - 1) / mr * mr;
    for (int i = 0; i < padded; ++i) {
      float* d = dst + static_cast<int64_t>(i) * kPackedRowStride;
      if (i < mb)
        std::memcpy(d, d_ + (i0 + i) * rs_ + p0, sizeof(float) * kb);
      else
        std::fill(d, d + kb, 0.0f);
    }
    return;
  }
  for (int t = 0; t * mr < mb; ++t) {
    float* d = dst + static_cast<int64_t>(t) * kb * mr;
    const int64_t ib = i0 + static_cast<int64_t>(t) * mr;
    const int rows = std::min(mr, mb - t * mr);
    if (rs_ == 1 && rows == mr && (mr == 12 || mr == 6 || mr == 4)) {  // fixed-length copies (vectorised)
      switch (mr) {
        case 12: pack_runs<12>(d, d_ + p0 * cs_ + ib, cs_, kb); break;
        case 6: pack_runs<6>(d, d_ + p0 * cs_ + ib, cs_, kb); break;
        default: pack_runs<4>(d, d_ + p0 * cs_ + ib, cs_, kb); break;
      }
    } else if (rs_ == 1) {  // transposed operand: each k is a contiguous run of rows
      for (int k = 0; k < kb; ++k) {
        const float* src = d_ + (p0 + k) * cs_ + ib;
        for (int i = 0; i < rows; ++i) d[k * mr + i] = src[i];
        for (int i = rows; i < mr; ++i) d[k * mr + i] = 0.0f;
      }
    } else {
      for (int i = 0; i < rows; ++i) {
        const float* src = d_ + (ib + i) * rs_ + p0 * cs_;
        for (int k = 0; k < kb; ++k) d[k * mr + i] = src[k * cs_];
      }
      for (int i = rows; i < mr; ++i)
        for (int k = 0; k < kb; ++k) d[k * mr + i] = 0.0f;
    }
  }
}

void StridedB::pack(float* dst, int64_t p0, int kb, int64_t j0, int nb, int nr) const {
  if (cs_ == 1 && nb % nr == 0) {  // row-major, whole panels: read B row by row, the order memory streams best
    for (int k = 0; k < kb; ++k) {
      const float* src = d_ + (p0 + k) * rs_ + j0;
      for (int t = 0; t * nr < nb; ++t) {
        float* d = dst + static_cast<int64_t>(t) * kb * nr + static_cast<int64_t>(k) * nr;
        for (int j = 0; j < nr; ++j) d[j] = src[t * nr + j];
      }
    }
    return;
  }
  for (int t = 0; t * nr < nb; ++t) {
    float* d = dst + static_cast<int64_t>(t) * kb * nr;
    const int64_t jb = j0 + static_cast<int64_t>(t) * nr;
    const int cols = std::min(nr, nb - t * nr);
    if (cs_ == 1) {  // row-major operand: each k is a contiguous run of columns
      for (int k = 0; k < kb; ++k) {
        const float* src = d_ + (p0 + k) * rs_ + jb;
        for (int j = 0; j < cols; ++j) d[k * nr + j] = src[j];
        for (int j = cols; j < nr; ++j) d[k * nr + j] = 0.0f;
      }
    } else {
      for (int j = 0; j < cols; ++j) {
        const float* src = d_ + (jb + j) * cs_ + p0 * rs_;
        for (int k = 0; k < kb; ++k) d[k * nr + j] = src[k * rs_];
      }
      for (int j = cols; j < nr; ++j)
        for (int k = 0; k < kb; ++k) d[k * nr + j] = 0.0f;
    }
  }
}

int64_t packed_panels_size(int64_t K, int64_t N, int nr) { return (N + nr - 1) / nr * K * nr; }

void pack_panels_b(float* dst, const float* w, int64_t K, int64_t N, int nr) {
  // Row by row (w read as one sequential stream, each row scattered into the panels), rows split over threads.
  const int64_t panels = (N + nr - 1) / nr;
#pragma omp parallel for schedule(static) if (K * N >= (int64_t{1} << 20))
  for (int64_t k = 0; k < K; ++k) {
    const float* src = w + k * N;
    for (int64_t t = 0; t < panels; ++t) {
      float* d = dst + (t * K + k) * nr;
      const int64_t j0 = t * nr, cols = std::min<int64_t>(nr, N - j0);
      for (int64_t j = 0; j < cols; ++j) d[j] = src[j0 + j];
      for (int64_t j = cols; j < nr; ++j) d[j] = 0.0f;
    }
  }
}

void PackedB::pack(float* dst, int64_t p0, int kb, int64_t j0, int nb, int nr) const {
  // Another panel width than stored (not the driver's path, which takes prepacked()): element by element.
  for (int t = 0; t * nr < nb; ++t)
    for (int k = 0; k < kb; ++k)
      for (int j = 0; j < nr; ++j) {
        const int64_t col = j0 + static_cast<int64_t>(t) * nr + j;
        const bool inside = t * nr + j < nb;
        dst[(static_cast<int64_t>(t) * kb + k) * nr + j] =
            inside ? d_[col / nr_ * k_ * nr_ + (p0 + k) * nr_ + col % nr_] : 0.0f;
      }
}

}  // namespace microcnn
