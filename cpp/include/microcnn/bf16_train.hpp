// bfloat16 training (opt-in precision "bf16"): every operand of a convolution's GEMMs (forward, backward-data,
// backward-weights) is rounded to bf16 (nearest even, as vcvtne2ps2bf16 rounds) and the products are summed in
// float32. A product of two bf16 values is exact in float32, so the AVX512_BF16 kernel (vdpbf16ps) and the
// generic kernel (bf16 widened to float32) compute the same products; only the order of the float32 sums
// differs. On AVX2 without AVX512_BF16 the float32 convolution kernels run on bf16-rounded copies of the
// operands (the same products again, at float32 speed). The float32 weights stay the master copy: each call
// rounds them afresh.
// Legend as conv.hpp: x (N,H,W,C), w (R,S,C,K), y (N,P,Q,K).
#pragma once
#include <cstdint>

#include "microcnn/conv.hpp"

namespace microcnn {

// x (n) -> y (n): each value rounded to the nearest bf16 (ties to even; NaN stays NaN), kept as float32.
// y may be x.
void round_to_bf16(float* y, const float* x, int64_t n);

// w (K,M) -> packed (bf16_packed_size(M, K)): pack_bf16_weights of the transpose w^T (M,K).
void pack_bf16_weights_transposed(uint16_t* packed, const float* w, int64_t K, int64_t M);

// x (N,H,W,C), w (R,S,C,K), b (K) or nullptr -> y (N,P,Q,K); relu: y = max(0, conv + b).
// conv2d_forward on bf16-rounded x and w. OVERWRITES y.
void conv2d_forward_bf16(float* y, const float* x, const float* w, const float* b, const ConvShape& s, bool relu);

// dy (N,P,Q,K), x (N,H,W,C), w (R,S,C,K) -> dx (N,H,W,C) or nullptr, dw (R,S,C,K), db (K) or nullptr.
// conv2d_backward on bf16-rounded dy, x and w (db sums dy unrounded). OVERWRITES dx, dw, db.
void conv2d_backward_bf16(float* dx, float* dw, float* db, const float* dy, const float* x, const float* w,
                          const ConvShape& s);

}  // namespace microcnn
