// Portable micro-kernel: 4 x 16 tile (2 x 16 for a short last one), two 8-float portable vectors per row that the
// compiler lowers for the baseline target; B is always packed (reading it in place does not pay without SIMD
// loads of known width).
#include "microkernel.hpp"
#include "../simd/portable.hpp"

namespace microcnn::gemm_detail {

const KernelInfo& generic_kernel() {
  static const KernelInfo info =
      simd_kernel_info<Portable<8>, 4, 2>(Isa::generic, "generic", 256, 256, 2048, /*in_place=*/false);
  return info;
}

}  // namespace microcnn::gemm_detail
