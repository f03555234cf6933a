// Inference: the dense forward pass on weights packed once into the GEMM's micro-panel layout (PackedB). With
// a batch of 5-256 rows the GEMM otherwise reads the weights in place, 64 bytes from each of kc rows 1 KB
// apart for every micro-panel: addresses that share a handful of L1 sets, so the panel does not stay in L1
// while the batch's row tiles pass over it. Packed, each micro-panel is one sequential run. The values are
// dense_forward's bit for bit (the same micro-kernel arithmetic in the same order, the same thread split).
#include "microcnn/dense.hpp"
#include "microcnn/gemm.hpp"
#include "microcnn/infer.hpp"
#include "dense_rows.hpp"
#include "gemm/kernels.hpp"

namespace microcnn {

int dense_packed_nr() { return gemm_detail::active_kernel().nr; }

int64_t dense_packed_size(int64_t K, int64_t M) { return packed_panels_size(K, M, dense_packed_nr()); }

void dense_pack_weights(float* dst, const float* w, int64_t K, int64_t M) {
  pack_panels_b(dst, w, K, M, dense_packed_nr());
}

void dense_forward_packed(float* y, const float* x, const float* w, const float* w_packed, int nr, const float* b,
                          int64_t N, int64_t K, int64_t M, bool relu) {
  // A few rows stream the plain weights (dense_rows.hpp); so does a packing for another micro-kernel.
  if (N <= dense_rows::kMaxRows || nr != dense_packed_nr()) return dense_forward(y, x, w, b, N, K, M, relu);
  gemm(y, M, StridedA(x, K, 1, /*rows_panels=*/M <= 128 || N <= 64), PackedB(w_packed, K, nr), N, M, K,
       GemmEpilogue{b, relu});
}

}  // namespace microcnn
