// Internal: the register-tiled micro-kernels, one per ISA, and their blocking parameters.
#pragma once
#include "microcnn/gemm.hpp"

namespace microcnn::gemm_detail {

// c (MR,NR) tile, row stride ldc  =  [c +] a_panel (MR x kc) @ b_panel (kc x NR, row stride ldb)
//                                    [+ bias (NR,)] [ReLU].
// a_panel is k-major (a[k*MR + i], 64-byte aligned) for the plain kernels and row-major (a[i*lda + k]) for
// the `rows` ones. b[k*ldb + j]: a packed micro-panel (ldb = NR, aligned) or, when few micro-kernel calls
// share each B element (small M), the B matrix itself read in place (any ldb, unaligned). c may be unaligned.
//
// The packed variants take A row panels with the fixed row stride kPackedRowStride (lda is ignored). The
// in-place variants accept any lda (so A, too, can be a row-major matrix read in place, when N is small) and
// prefetch kc consecutive 64-byte lines from pf into L2, one per k step (none when pf is null): the driver
// points pf into the next block of the in-place operand, so memory sees one sequential stream rather than,
// for B, the column panels' pattern of a short run every row (a new page every few rows, which the hardware
// prefetchers do not follow).
using MicroKernel = void (*)(int64_t kc, const float* a, int64_t lda, const float* b, int64_t ldb, float* c,
                             int64_t ldc, bool accumulate, const float* bias, bool relu, const float* pf);

// Floats per 64-byte cache line: the prefetch step of the in-place micro-kernels.
constexpr int kLineFloats = 16;

struct KernelInfo {
  Isa isa;
  const char* name;
  int mr, nr;      // register tile
  int mr_short;    // rows of the short tile for a last micro-panel of few rows (e.g. 8 of a 32-row batch)
  int mc, kc, nc;  // cache blocks: A block mc x kc in L2, B block kc x nc in L3, B micro-panel kc x nr in L1
  // Whether the driver may read small operands in place (PanelA/PanelB::direct). Off for the portable kernel:
  // with a run-time A stride the compiler vectorises it across rows (shuffles) and it ran 1.2-3.7x slower.
  bool in_place;
  // kernels[short][rows][in_place]: `short` computes mr_short rows of an mr-row panel layout; `rows` takes
  // row-major A panels (else k-major); `in_place` any lda/ldb and the prefetch stream (else packed panels:
  // row stride kPackedRowStride for row-major A, ldb = nr for B).
  MicroKernel kernels[2][2][2];
};

const KernelInfo& generic_kernel();
#ifdef MICROCNN_X86
const KernelInfo& avx2_kernel();    // kernel_avx2.cpp, compiled with -mavx2 -mfma
const KernelInfo& avx512_kernel();  // kernel_avx512.cpp, compiled with -mavx512f -mavx512dq
#endif

}  // namespace microcnn::gemm_detail
