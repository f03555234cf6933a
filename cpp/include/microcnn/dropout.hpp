// Inverted dropout with a counter-based mask. Legend: n element count.
// Backward OVERWRITES dx.
//
// The mask is a pure function of (seed, step, i), so it does not depend on the thread count and backward
// recomputes it instead of storing it:
//   mix(z)  = splitmix64 finaliser: z ^= z>>30; z *= 0xbf58476d1ce4e5b9; z ^= z>>27; z *= 0x94d049bb133111eb;
//             z ^= z>>31
//   key     = mix(mix(seed + G) ^ step),  G = 0x9e3779b97f4a7c15 (all arithmetic mod 2^64)
//   u_i     = (mix(key + (i+1)*G) >> 40) * 2^-24    (uniform in [0,1), exact in float)
//   keep_i  = u_(offset+i) >= rate;  y_i = keep_i ? x_i * (1/(1-rate)) : 0   (scale computed in float)
// `offset` is the index of x[0] in a larger tensor: a process holding rows [r, r + n) of a batch of F
// features per row passes offset r*F and draws exactly the mask those rows get in the whole batch.
#pragma once
#include <cstdint>

namespace microcnn {

// x (n) -> y (n); 0 <= rate < 1
void dropout_forward(float* y, const float* x, int64_t n, double rate, uint64_t seed, uint64_t step,
                     uint64_t offset = 0);
// dy (n) -> dx (n) with the mask of the forward call with the same (rate, seed, step, offset)
void dropout_backward(float* dx, const float* dy, int64_t n, double rate, uint64_t seed, uint64_t step,
                      uint64_t offset = 0);

}  // namespace microcnn
