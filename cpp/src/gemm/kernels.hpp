// Internal: the register-tiled micro-kernels, one per ISA, and their blocking parameters.
#pragma once
#include "microcnn/gemm.hpp"

namespace microcnn::gemm_detail {

// c (MR,NR) tile, row stride ldc  =  [c +] a_panel (MR x kc) @ b_panel (kc x NR, k-major)
//                                    [+ bias (NR,)] [ReLU].
// a_panel is k-major (a[k*MR + i]) for `kernel` and row-major with the fixed row stride kPackedRowStride
// (a[i*kPackedRowStride + k]) for `kernel_rows`. Panels are 64-byte aligned; c may be unaligned.
using MicroKernel = void (*)(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, bool accumulate,
                             const float* bias, bool relu);

struct KernelInfo {
  Isa isa;
  const char* name;
  int mr, nr;      // register tile
  int mc, kc, nc;  // cache blocks: A block mc x kc in L2, B block kc x nc in L3, B micro-panel kc x nr in L1
  MicroKernel kernel;       // k-major A panels
  MicroKernel kernel_rows;  // row-major A panels
};

const KernelInfo& generic_kernel();
#ifdef MICROCNN_X86
const KernelInfo& avx2_kernel();    // kernel_avx2.cpp, compiled with -mavx2 -mfma
const KernelInfo& avx512_kernel();  // kernel_avx512.cpp, compiled with -mavx512f -mavx512dq
#endif

}  // namespace microcnn::gemm_detail
