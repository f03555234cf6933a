// bfloat16 inference: weight packing, the portable kernel, ISA dispatch and the thread split.
#include "microcnn/bf16.hpp"

#include <algorithm>
#include <cstring>
#include <vector>

#include "conv_gemm.hpp"
#include "microcnn/gemm.hpp"
#include "microcnn/threads.hpp"

#ifdef MICROCNN_OPENMP
#include <omp.h>
#endif

namespace microcnn {

uint16_t float_to_bf16(float v) {
  uint32_t bits;
  std::memcpy(&bits, &v, sizeof bits);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((bits >> 16) | 0x40u);  // quiet NaN
  bits += 0x7fffu + ((bits >> 16) & 1u);  // round to nearest, ties to even (an overflow rounds to infinity)
  return static_cast<uint16_t>(bits >> 16);
}

namespace {

bool cpu_has_avx512_bf16() {
#if defined(MICROCNN_X86) && defined(MICROCNN_AVX512_BF16)
  static const bool has = __builtin_cpu_supports("avx512bf16");
  return has;
#else
  return false;
#endif
}

int64_t ceil_div(int64_t x, int64_t m) { return (x + m - 1) / m; }

}  // namespace

bf16_detail::GemmFn bf16_detail::active_gemm() {
#ifdef MICROCNN_X86
#ifdef MICROCNN_AVX512_BF16
  if (kernel_isa() == Isa::avx512 && cpu_has_avx512_bf16()) return bf16_detail::gemm_avx512_bf16;
#endif
  if (kernel_isa() != Isa::generic) return bf16_detail::gemm_avx2;
#endif
  return bf16_detail::gemm_generic;
}

using bf16_detail::active_gemm;

const char* bf16_kernel_name() {
  const bf16_detail::GemmFn fn = active_gemm();
  if (fn == bf16_detail::gemm_generic) return "generic";
#if defined(MICROCNN_X86) && defined(MICROCNN_AVX512_BF16)
  if (fn == bf16_detail::gemm_avx512_bf16) return "avx512_bf16";
#endif
  return "avx2/fma";
}

int64_t bf16_packed_size(int64_t K, int64_t M) { return ceil_div(M, kBf16PanelCols) * ceil_div(K, 2) * 64; }

// w (K,M) -> packed (bf16_packed_size(K, M))
void pack_bf16_weights(uint16_t* packed, const float* w, int64_t K, int64_t M) {
  const int64_t KP = ceil_div(K, 2), panels = ceil_div(M, kBf16PanelCols);
  // bf16 training re-packs every step (the seed net's 87616x256 Dense kernel at 150 px): threads over panels
#pragma omp parallel for schedule(static) if (K * M >= (1 << 20) && panels > 1)
  for (int64_t t = 0; t < panels; ++t)
    for (int64_t p = 0; p < KP; ++p) {
      uint16_t* row = packed + (t * KP + p) * 64;
      for (int64_t j = 0; j < kBf16PanelCols; ++j)
        for (int64_t r = 0; r < 2; ++r) {
          const int64_t k = 2 * p + r, m = t * kBf16PanelCols + j;
          row[2 * j + r] = k < K && m < M ? float_to_bf16(w[k * M + m]) : 0;
        }
    }
}

namespace bf16_detail {

// The portable kernel: float32 activations, widened bf16 weights, one output row at a time.
void gemm_generic(float* c, int64_t ldc, const float* a, int64_t lda, const uint16_t* w, int64_t N, int64_t K,
                  int64_t j0, int64_t j1, const float* b, bool relu) {
  const int64_t KP = ceil_div(K, 2);
  std::vector<float> acc(static_cast<size_t>(kBf16PanelCols));
  for (int64_t i = 0; i < N; ++i)
    for (int64_t jt = j0; jt < j1; jt += kBf16PanelCols) {
      const uint16_t* panel = w + jt / kBf16PanelCols * KP * 64;
      std::fill(acc.begin(), acc.end(), 0.0f);
      for (int64_t k = 0; k < K; ++k) {
        const float av = a[i * lda + k];
        const uint16_t* row = panel + k / 2 * 64 + k % 2;
        for (int64_t j = 0; j < kBf16PanelCols; ++j) acc[j] += av * bf16_to_float(row[2 * j]);
      }
      const int64_t nj = std::min(kBf16PanelCols, j1 - jt);
      for (int64_t j = 0; j < nj; ++j) {
        float v = acc[j] + (b ? b[jt + j] : 0.0f);
        if (relu && v < 0.0f) v = 0.0f;
        c[i * ldc + jt + j] = v;
      }
    }
}

}  // namespace bf16_detail

// x (N,K), packed w (K,M), b (M) or nullptr -> y (N,M)
void dense_forward_bf16(float* y, const float* x, const uint16_t* w, const float* b, int64_t N, int64_t K,
                        int64_t M, bool relu) {
  const bf16_detail::GemmFn gemm_fn = active_gemm();
  const int64_t panels = ceil_div(M, kBf16PanelCols);
  // Threads take contiguous runs of column panels: each streams its share of the weights once (a batch-1
  // prediction is a matrix-vector product, bound by reading the weights).
  const int threads = 2.0 * N * K * M >= 4e6 ? static_cast<int>(std::min<int64_t>(get_num_threads(), panels)) : 1;
#pragma omp parallel num_threads(threads) if (threads > 1)
  {
    DenormalGuard guard;
    int t = 0, nt = 1;
#ifdef MICROCNN_OPENMP
    t = omp_get_thread_num();
    nt = omp_get_num_threads();
#endif
    const int64_t p0 = panels * t / nt, p1 = panels * (t + 1) / nt;
    if (p1 > p0)
      gemm_fn(y, M, x, K, w, N, K, p0 * kBf16PanelCols, std::min(M, p1 * kBf16PanelCols), b, relu);
  }
}

// x (N,H,W,C), packed w (R*S*C, K), b (K) or nullptr -> y (N,P/2,Q/2,K)
void conv2d_relu_maxpool_infer_bf16(float* y, const float* x, const uint16_t* w, const float* b,
                                    const ConvShape& s) {
  const bf16_detail::GemmFn gemm_fn = active_gemm();
  const int64_t P2 = s.P / 2, Q2 = s.Q / 2, K = s.K, taps = s.R * s.S * s.C;
  const conv_gemm::Im2col g = conv_gemm::forward_im2col(x, s);
  const int64_t per_block = std::clamp<int64_t>(128 / (2 * s.Q), 1, P2);  // pooled rows per block
  const int64_t blocks_per_sample = ceil_div(P2, per_block), blocks = s.N * blocks_per_sample;
  const double flops = 2.0 * s.N * s.P * s.Q * taps * K;
#pragma omp parallel if (flops >= 4e6 && blocks > 1)
  {
    DenormalGuard guard;
    static thread_local std::vector<float> a, z;  // kept between calls: no allocation per call once warm
    a.resize(static_cast<size_t>(2 * per_block * s.Q * taps));
    z.resize(static_cast<size_t>(2 * per_block * s.Q * K));
#pragma omp for schedule(dynamic, 1)
    for (int64_t blk = 0; blk < blocks; ++blk) {
      const int64_t n = blk / blocks_per_sample, p0 = blk % blocks_per_sample * per_block;
      const int64_t p1 = std::min(P2, p0 + per_block), rows = 2 * (p1 - p0) * s.Q;
      conv_gemm::gather_rows(a.data(), g, s, (n * s.P + 2 * p0) * s.Q, rows, [](float v) { return v; });
      gemm_fn(z.data(), K, a.data(), taps, w, rows, taps, 0, K, b, /*relu=*/true);
      for (int64_t p2 = p0; p2 < p1; ++p2) {
        const float* z0 = z.data() + 2 * (p2 - p0) * s.Q * K;
        const float* z1 = z0 + s.Q * K;
        float* out = y + (n * P2 + p2) * Q2 * K;
        for (int64_t q2 = 0; q2 < Q2; ++q2)
          for (int64_t k = 0; k < K; ++k) {
            const int64_t o = 2 * q2 * K + k;
            float best = z0[o];
            best = z0[o + K] > best ? z0[o + K] : best;
            best = z1[o] > best ? z1[o] : best;
            best = z1[o + K] > best ? z1[o + K] : best;
            out[q2 * K + k] = best;
          }
      }
    }
  }
}

}  // namespace microcnn
