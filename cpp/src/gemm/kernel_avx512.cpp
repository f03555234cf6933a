// AVX-512 micro-kernel: 12 x 32 tile (8 x 32 for a short last one), 24 zmm accumulators (-mavx512f -mavx512dq).
#include "microkernel.hpp"
#include "../simd/avx512.hpp"

namespace microcnn::gemm_detail {

const KernelInfo& avx512_kernel() {
  static const KernelInfo info = simd_kernel_info<Avx512, 12, 8>(Isa::avx512, "avx512", 240, 256, 2048);
  return info;
}

}  // namespace microcnn::gemm_detail
