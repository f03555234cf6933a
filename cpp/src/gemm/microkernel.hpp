// Internal: the one SIMD micro-kernel, a template over a vector-traits struct (cpp/src/simd/<isa>.hpp, in an
// anonymous namespace). kernel_avx2.cpp and kernel_avx512.cpp instantiate it, compiled for their ISA only, and
// kernel_generic.cpp over the portable traits: an instantiation over an internal-linkage type is internal too,
// so the linker cannot merge the copies compiled for different targets.
//
// Traits V: `reg` (the vector type), `width` (floats per vector), and static zero(), loadu(p), broadcast(p)
// (one float to every lane), fmadd(a, b, c) = a*b + c, add(a, b), max(a, b) (returns b where either is NaN,
// as max_ps), storeu(p, v), prefetch_l2(p).
#pragma once
#include "kernels.hpp"

namespace microcnn::gemm_detail {

// TM rows (MR, or the short tile's rows for a last tile of few rows) of the MR-row panel layout, 2 vectors
// wide; the contract is MicroKernel's (kernels.hpp).
template <class V, int MR, bool ROWS, bool IN_PLACE, int TM>
void micro_kernel(int64_t kc, const float* a, int64_t lda, const float* b, int64_t ldb, float* c, int64_t ldc,
                  bool accumulate, const float* bias, bool relu, const float* pf) {
  using R = typename V::reg;
  constexpr int W = V::width;
  // Packed row panels have a fixed row stride, which lets the compiler fold it into the addresses.
  if (!IN_PLACE) lda = kPackedRowStride;
  R c0[TM], c1[TM];
#pragma GCC unroll 16
  for (int i = 0; i < TM; ++i) c0[i] = c1[i] = V::zero();
  for (int64_t k = 0; k < kc; ++k) {
    if (IN_PLACE && pf) V::prefetch_l2(pf + k * kLineFloats);
    const R b0 = V::loadu(b);
    const R b1 = V::loadu(b + W);
#pragma GCC unroll 16
    for (int i = 0; i < TM; ++i) {
      const R ai = V::broadcast(ROWS ? a + i * lda : a + i);
      c0[i] = V::fmadd(ai, b0, c0[i]);
      c1[i] = V::fmadd(ai, b1, c1[i]);
    }
    a += ROWS ? 1 : MR;
    b += ldb;
  }
  const R zero = V::zero();
  const R bias0 = bias ? V::loadu(bias) : zero;
  const R bias1 = bias ? V::loadu(bias + W) : zero;
#pragma GCC unroll 16
  for (int i = 0; i < TM; ++i) {
    float* ci = c + i * ldc;
    R v0 = c0[i], v1 = c1[i];
    if (accumulate) {
      v0 = V::add(v0, V::loadu(ci));
      v1 = V::add(v1, V::loadu(ci + W));
    }
    if (bias) {
      v0 = V::add(v0, bias0);
      v1 = V::add(v1, bias1);
    }
    if (relu) {  // max returns its second operand for a NaN: NaN stays NaN, like std::max(v, 0.0f)
      v0 = V::max(zero, v0);
      v1 = V::max(zero, v1);
    }
    V::storeu(ci, v0);
    V::storeu(ci + W, v1);
  }
}

// The KernelInfo of an MR x 2*width register tile (MR_SHORT rows for a short last tile).
template <class V, int MR, int MR_SHORT>
KernelInfo simd_kernel_info(Isa isa, const char* name, int mc, int kc, int nc, bool in_place = true) {
  return KernelInfo{isa, name, MR, 2 * V::width, MR_SHORT, mc, kc, nc, in_place,
                    {{{micro_kernel<V, MR, false, false, MR>, micro_kernel<V, MR, false, true, MR>},
                      {micro_kernel<V, MR, true, false, MR>, micro_kernel<V, MR, true, true, MR>}},
                     {{micro_kernel<V, MR, false, false, MR_SHORT>, micro_kernel<V, MR, false, true, MR_SHORT>},
                      {micro_kernel<V, MR, true, false, MR_SHORT>, micro_kernel<V, MR, true, true, MR_SHORT>}}}};
}

}  // namespace microcnn::gemm_detail
