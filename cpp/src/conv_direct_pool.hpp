// Internal, included by each conv_direct_<isa>.cpp and by pool.cpp: the 2x2 stride-2 max/argmax (the pooling
// side of the fused conv + ReLU + 2x2 max-pool block, and maxpool2d_forward's fast path), plain loops over
// channels that the compiler vectorises for the ISA of the including file. Everything here is in an anonymous
// namespace: each ISA gets its own copy, which the linker cannot merge across targets.
#pragma once
#include <cstdint>
#include <cstring>

namespace microcnn::conv_direct {
namespace {

// One pooled row from conv rows z0, z1 (pixel stride K): y, argmax (Q2, K). base is the flat index of z0's
// first value in its sample, row = Q*K the distance between the two rows. The window in row-major order with
// strict >, as maxpool2d_forward: the first maximum wins, a NaN wins only where it comes first.
[[maybe_unused]] void pool_rows(float* __restrict y, int32_t* __restrict argmax, const float* __restrict z0,
               const float* __restrict z1, int64_t Q2, int64_t K, int32_t base, int32_t row) {
  for (int64_t q2 = 0; q2 < Q2; ++q2, y += K, argmax += K) {
    const int64_t o0 = 2 * q2 * K, o1 = o0 + K;
    const float *x0 = z0 + o0, *x1 = z0 + o1, *x2 = z1 + o0, *x3 = z1 + o1;
    const int32_t j0 = base + static_cast<int32_t>(o0), j1 = base + static_cast<int32_t>(o1);
    const int32_t j2 = j0 + row, j3 = j1 + row;
    for (int64_t k = 0; k < K; ++k) {
      const int32_t kk = static_cast<int32_t>(k);
      float best = x0[k];
      int32_t where = j0 + kk;
      int32_t g = -static_cast<int32_t>(x1[k] > best);
      best = x1[k] > best ? x1[k] : best;
      where = (g & (j1 + kk)) | (~g & where);
      g = -static_cast<int32_t>(x2[k] > best);
      best = x2[k] > best ? x2[k] : best;
      where = (g & (j2 + kk)) | (~g & where);
      g = -static_cast<int32_t>(x3[k] > best);
      best = x3[k] > best ? x3[k] : best;
      where = (g & (j3 + kk)) | (~g & where);
      y[k] = best;
      argmax[k] = where;
    }
  }
}

// One pooling window's K channels: each of its four positions (d0..d3) gets relu_backward(g, y) or 0 by bit
// masks (a scatter to argmax would mispredict a branch on most elements: the position is a coin flip). `at` is
// the argmax's unsigned offset from the window's first position, so an index outside the window matches none
// of them. Returns how many did not match.
[[maybe_unused]] int64_t unpool_window(float* __restrict d0, float* __restrict d1, float* __restrict d2, float* __restrict d3,
                      const int32_t* __restrict a, const float* __restrict g, const float* __restrict yv,
                      uint32_t first, int64_t K, uint32_t right, uint32_t below, uint32_t diag) {
  int64_t bad = 0;
  for (int64_t k = 0; k < K; ++k) {
    const uint32_t at = static_cast<uint32_t>(a[k]) - (first + static_cast<uint32_t>(k));
    uint32_t v;
    std::memcpy(&v, g + k, sizeof v);
    v &= 0u - static_cast<uint32_t>(yv[k] > 0.0f);  // relu_backward on the pooled side, as MaxPooling2D does
    const uint32_t m0 = 0u - static_cast<uint32_t>(at == 0), m1 = 0u - static_cast<uint32_t>(at == right);
    const uint32_t m2 = 0u - static_cast<uint32_t>(at == below), m3 = 0u - static_cast<uint32_t>(at == diag);
    const uint32_t o0 = v & m0, o1 = v & m1, o2 = v & m2, o3 = v & m3;
    std::memcpy(d0 + k, &o0, sizeof o0);
    std::memcpy(d1 + k, &o1, sizeof o1);
    std::memcpy(d2 + k, &o2, sizeof o2);
    std::memcpy(d3 + k, &o3, sizeof o3);
    bad += (m0 | m1 | m2 | m3) == 0;
  }
  return bad;
}

// See unpool_rows in conv_direct.hpp.
[[maybe_unused]] int64_t unpool_rows_impl(float* dz, const float* dy, const int32_t* argmax, const float* y, int64_t Q2, int64_t Q,
                         int64_t K, int64_t base) {
  const uint32_t right = static_cast<uint32_t>(K), below = static_cast<uint32_t>(Q * K), diag = below + right;
  int64_t bad = 0;
  for (int64_t q2 = 0; q2 < Q2; ++q2) {
    float* d0 = dz + 2 * q2 * K;
    bad += unpool_window(d0, d0 + K, d0 + Q * K, d0 + Q * K + K, argmax + q2 * K, dy + q2 * K, y + q2 * K,
                         static_cast<uint32_t>(base + 2 * q2 * K), K, right, below, diag);
  }
  return bad;
}

}  // namespace
}  // namespace microcnn::conv_direct
