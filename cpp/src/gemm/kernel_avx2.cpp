// AVX2/FMA micro-kernel: 6 x 16 tile (4 x 16 for a short last one), 12 ymm accumulators (-mavx2 -mfma only).
#include "microkernel.hpp"
#include "../simd/avx2.hpp"

namespace microcnn::gemm_detail {

const KernelInfo& avx2_kernel() {
  static const KernelInfo info = simd_kernel_info<Avx2, 6, 4>(Isa::avx2, "avx2/fma", 240, 256, 2048);
  return info;
}

}  // namespace microcnn::gemm_detail
