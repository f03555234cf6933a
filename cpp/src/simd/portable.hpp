// Internal: portable vector traits for the SIMD templates (gemm/microkernel.hpp, conv_direct_tiles.hpp), for the
// generic kernels every build has: W floats as a GCC/Clang vector, which the compiler lowers to SSE2, NEON or
// scalar code for the baseline target (plain arrays on other compilers). A multiply-add is a*b + c, as the
// loops it replaced wrote it. As in avx2.hpp, the struct is internal to each including file.
#pragma once
#include <cstring>

namespace microcnn {
namespace {

#if defined(__GNUC__) || defined(__clang__)
// A vector_size that depends on a template parameter is not honoured inside the template: one type per width.
typedef float PortableF4 __attribute__((vector_size(16)));
typedef float PortableF8 __attribute__((vector_size(32)));
template <int W>
struct PortableVector;
template <>
struct PortableVector<4> {
  using type = PortableF4;
  static type splat(float x) { return type{x, x, x, x}; }
};
template <>
struct PortableVector<8> {
  using type = PortableF8;
  static type splat(float x) { return type{x, x, x, x, x, x, x, x}; }
};
#endif

template <int W>
struct Portable {
#if defined(__GNUC__) || defined(__clang__)
  using reg = typename PortableVector<W>::type;
  static reg zero() { return reg{}; }
  static reg broadcast(const float* p) { return PortableVector<W>::splat(*p); }
  static reg add(reg a, reg b) { return a + b; }
  static reg fmadd(reg a, reg b, reg c) { return a * b + c; }
  static reg max(reg a, reg b) { return a > b ? a : b; }  // b where either is NaN, as max_ps
#else
  struct reg {
    float lane[W];
    float& operator[](int i) { return lane[i]; }
    float operator[](int i) const { return lane[i]; }
  };
  static reg add(reg a, reg b) {
    for (int i = 0; i < W; ++i) a[i] += b[i];
    return a;
  }
  static reg fmadd(reg a, reg b, reg c) {
    for (int i = 0; i < W; ++i) c[i] += a[i] * b[i];
    return c;
  }
  static reg zero() { return reg{}; }
  static reg broadcast(const float* p) {
    reg v;
    for (int i = 0; i < W; ++i) v[i] = *p;
    return v;
  }
  static reg max(reg a, reg b) {  // b where either is NaN, as max_ps
    for (int i = 0; i < W; ++i) b[i] = a[i] > b[i] ? a[i] : b[i];
    return b;
  }
#endif
  using mask = int;  // the number of lanes in use, from 0
  static constexpr int width = W;
  static constexpr bool split_tail = true;  // whole blocks take plain loads
  static constexpr int stream_alignment = 1;
  static reg loadu(const float* p) {
    reg v;
    std::memcpy(&v, p, sizeof v);
    return v;
  }
  static void storeu(float* p, reg v) { std::memcpy(p, &v, sizeof v); }
  static mask lane_mask(int nk, int v) {
    const int n = nk - v * W;
    return n < 0 ? 0 : n > W ? W : n;
  }
  static reg load_masked(const float* p, mask m) {
    reg v = zero();
    for (int i = 0; i < m; ++i) v[i] = p[i];
    return v;
  }
  static void store_block(float* p, mask m, reg v, bool whole) {
    if (whole)
      storeu(p, v);
    else if (m > 0)
      std::memcpy(p, &v, sizeof(float) * m);
  }
  static void prefetch_l2(const float* p) {
#if defined(__GNUC__) || defined(__clang__)
    __builtin_prefetch(p, 0, 2);
#else
    (void)p;
#endif
  }
  static void prefetch_pixel(const float* /*p*/, int /*kv*/) {}
  static void stream(char* d, const char* s) { std::memcpy(d, s, sizeof(float) * W); }
  static void fence() {}
};

}  // namespace
}  // namespace microcnn
