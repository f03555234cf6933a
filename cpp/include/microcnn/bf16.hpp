// bfloat16 inference (opt-in precision "bf16"). Weights are stored as bf16 (round to nearest even) in a packed
// layout; products are accumulated in float32. On CPUs with AVX512_BF16 the activations are rounded to bf16 too
// and the dot products run on vdpbf16ps; elsewhere the activations stay float32 and the bf16 weights are widened
// to float32 in registers (half the weight memory traffic, the same FMA count as float32).
// Legend as dense.hpp: N batch, K in-features, M out-features; for convolutions as conv.hpp.
#pragma once
#include <cstdint>

#include "microcnn/conv.hpp"

namespace microcnn {

// float32 -> bfloat16 bits, round to nearest even (NaN stays NaN).
uint16_t float_to_bf16(float v);
inline float bf16_to_float(uint16_t h) {
  const uint32_t bits = static_cast<uint32_t>(h) << 16;
  float v;
  __builtin_memcpy(&v, &bits, sizeof v);
  return v;
}

// "avx512_bf16", "avx2/fma" or "generic": the kernel the bf16 functions run on this CPU (MICROCNN_ISA and
// set_kernel_isa lower it as they lower the float32 kernels).
const char* bf16_kernel_name();

// Packed layout of a (K, M) weight matrix: panels of 32 columns; in panel t, the pair of rows (2p, 2p+1) is 64
// values at packed[(t*KP + p)*64 + 2j + r] = bf16(w[2p + r, 32t + j]), KP = ceil(K/2); zero past K and M.
constexpr int64_t kBf16PanelCols = 32;
int64_t bf16_packed_size(int64_t K, int64_t M);
// w (K,M) -> packed (bf16_packed_size(K, M))
void pack_bf16_weights(uint16_t* packed, const float* w, int64_t K, int64_t M);

// x (N,K), packed w (K,M), b (M) or nullptr -> y (N,M); relu: y = max(0, x w + b)
void dense_forward_bf16(float* y, const float* x, const uint16_t* w, const float* b, int64_t N, int64_t K,
                        int64_t M, bool relu);

// x (N,H,W,C), packed w (R*S*C, K), b (K) or nullptr -> y (N,P/2,Q/2,K): conv2d_relu_maxpool_infer with bf16
// weights (and, on AVX512_BF16, bf16 activations). Requires P, Q >= 2.
void conv2d_relu_maxpool_infer_bf16(float* y, const float* x, const uint16_t* w, const float* b,
                                    const ConvShape& s);

namespace bf16_detail {
// c[0:N, j0:j1] (row stride ldc) = a (N,K) (row stride lda) @ packed w columns [j0, j1) [+ b] [ReLU],
// in the calling thread; j0 a multiple of kBf16PanelCols. One per ISA.
using GemmFn = void (*)(float* c, int64_t ldc, const float* a, int64_t lda, const uint16_t* w, int64_t N,
                        int64_t K, int64_t j0, int64_t j1, const float* b, bool relu);
// The kernel for this CPU (and MICROCNN_ISA / set_kernel_isa): avx512_bf16 rounds the rows of a to bf16 itself;
// avx2 and generic multiply a as given (the bf16 training kernels pass rows already rounded).
GemmFn active_gemm();
void gemm_generic(float* c, int64_t ldc, const float* a, int64_t lda, const uint16_t* w, int64_t N, int64_t K,
                  int64_t j0, int64_t j1, const float* b, bool relu);
#ifdef MICROCNN_X86
void gemm_avx2(float* c, int64_t ldc, const float* a, int64_t lda, const uint16_t* w, int64_t N, int64_t K,
               int64_t j0, int64_t j1, const float* b, bool relu);  // kernel_bf16_avx2.cpp
#ifdef MICROCNN_AVX512_BF16
void gemm_avx512_bf16(float* c, int64_t ldc, const float* a, int64_t lda, const uint16_t* w, int64_t N,
                      int64_t K, int64_t j0, int64_t j1, const float* b, bool relu);  // kernel_bf16_avx512.cpp
#endif
#endif
}  // namespace bf16_detail

}  // namespace microcnn
