// Direct convolution driver: shape selection, ISA dispatch, the zero-padded input band of each output row,
// blocking over pixels / taps / output channels, and the thread split.
#include "conv_direct.hpp"

#include <algorithm>
#include <cstring>
#include <vector>

#include "microcnn/threads.hpp"

#ifdef MICROCNN_OPENMP
#include <omp.h>
#endif

namespace microcnn::conv_direct {

namespace {

// Below this many multiply-adds a parallel region costs more than it saves.
constexpr double kParallelMinWork = 1 << 20;
// Outputs at least this large go to memory with non-temporal stores: they would not stay in the caches for
// the next layer anyway, and a normal store first reads every line it writes.
constexpr double kStreamMinBytes = 16 << 20;

int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }
int64_t ceil_div(int64_t x, int64_t m) { return (x + m - 1) / m; }

int max_threads() {
#ifdef MICROCNN_OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

// The same ISA as the GEMM micro-kernel (kernel_isa(): MICROCNN_ISA / set_kernel_isa apply to both).
const Kernels& active_kernels() {
#ifdef MICROCNN_X86
  if (kernel_isa() == Isa::avx512) return avx512_kernels();
  if (kernel_isa() == Isa::avx2) return avx2_kernels();
#endif
  return generic_kernels();
}

// Band of output row (n, p), `cols` columns wide (see conv_direct.hpp), rows band_stride floats apart.
void fill_band(float* band, int64_t band_stride, int64_t cols, const float* x, const ConvShape& s, int64_t n,
               int64_t p) {
  const int64_t C = s.C;
  // Band columns [u0, u1) hold input columns [0, u1 - u0); the rest is zero padding.
  const int64_t u0 = std::min(cols, s.pad_left), u1 = std::min(cols, s.pad_left + s.W);
  for (int64_t r = 0; r < s.R; ++r) {
    float* d = band + r * band_stride;
    const int64_t h = p * s.stride_h - s.pad_top + r;
    if (h < 0 || h >= s.H) {
      std::fill(d, d + cols * C, 0.0f);
      continue;
    }
    std::fill(d, d + u0 * C, 0.0f);
    std::memcpy(d + u0 * C, x + (n * s.H + h) * s.W * C, sizeof(float) * (u1 - u0) * C);
    std::fill(d + u1 * C, d + cols * C, 0.0f);
  }
}

// (rows, K) -> (rows, Kpad), zero in the padding columns.
std::vector<float> pad_columns(const float* src, int64_t rows, int64_t K, int64_t Kpad) {
  std::vector<float> out(static_cast<size_t>(rows * Kpad), 0.0f);
  for (int64_t i = 0; i < rows; ++i) std::copy(src + i * K, src + (i + 1) * K, out.begin() + i * Kpad);
  return out;
}

// A block of output channels [k0, k0 + nk): kv vectors, the last one possibly partial.
struct KBlock {
  int64_t k0;
  int kv, nk;
};

std::vector<KBlock> k_blocks(int64_t K, int vec) {
  std::vector<KBlock> blocks;
  for (int64_t k0 = 0; k0 < K;) {
    const int64_t rem = K - k0;
    const int kv = rem > vec ? 2 : 1;
    const int nk = static_cast<int>(std::min<int64_t>(rem, int64_t{kv} * vec));
    blocks.push_back({k0, kv, nk});
    k0 += nk;
  }
  return blocks;
}

}  // namespace

bool applies(const ConvShape& s) {
  // Few input channels: the im2col rows are runs of C <= 4 floats, expensive to gather. The forward kernels
  // are specialised on the pixel step stride_w*C, up to kMaxPixelStep.
  return s.C <= 4 && s.C * s.stride_w <= kMaxPixelStep;
}

// x (N,H,W,C), w (R,S,C,K), b (K) or nullptr -> y (N,P,Q,K)
void forward(float* y, const float* x, const float* w, const float* b, const ConvShape& s, bool relu) {
  const Kernels& kn = active_kernels();
  const int64_t K = s.K, Q = s.Q, SC = s.S * s.C, taps = s.R * SC, xs = s.stride_w * s.C;
  const int64_t Kpad = round_up(K, kn.vec);
  const std::vector<float> wpad = pad_columns(w, taps, K, Kpad);
  const std::vector<float> bpad = b ? pad_columns(b, 1, K, Kpad) : std::vector<float>();
  const float* bias = b ? bpad.data() : nullptr;
  const std::vector<KBlock> blocks = k_blocks(K, kn.vec);
  const ForwardTile* tiles = kn.forward[xs - 1];
  // The last pixel tile may run past Q: the band is wide enough for whole tiles (the extra columns are zero).
  const int64_t cols = (round_up(Q, kn.mr) - 1) * s.stride_w + s.S;
  const int64_t band_stride = round_up(cols * s.C, 16);
  const int64_t rows = s.N * s.P;
  const double work = static_cast<double>(rows * Q) * static_cast<double>(K * taps);
  const bool stream = static_cast<double>(rows * Q * K) * sizeof(float) >= kStreamMinBytes;
#pragma omp parallel if (work >= kParallelMinWork)
  {
    DenormalGuard guard;
    std::vector<float> band(static_cast<size_t>(s.R * band_stride));
    std::vector<float> staged(stream ? static_cast<size_t>(Q * K) : 0);  // one output row, in L1/L2
#pragma omp for schedule(dynamic, 4)
    for (int64_t np = 0; np < rows; ++np) {
      fill_band(band.data(), band_stride, cols, x, s, np / s.P, np % s.P);
      float* yrow = stream ? staged.data() : y + np * Q * K;
      for (int64_t q0 = 0; q0 < Q; q0 += kn.mr) {
        const int npix = static_cast<int>(std::min<int64_t>(kn.mr, Q - q0));
        for (const KBlock& kb : blocks)
          tiles[kb.kv - 1](yrow + q0 * K + kb.k0, K, band.data() + q0 * xs, band_stride, static_cast<int>(xs),
                           static_cast<int>(s.R), static_cast<int>(SC), wpad.data() + kb.k0, Kpad,
                           bias ? bias + kb.k0 : nullptr, relu, npix, kb.nk);
      }
      if (stream) kn.stream_copy(y + np * Q * K, staged.data(), Q * K);
    }
  }
}

// dy (N,P,Q,K), x (N,H,W,C) -> dw (R,S,C,K), db (K) or nullptr
void backward_weights(float* dw, float* db, const float* dy, const float* x, const ConvShape& s) {
  const Kernels& kn = active_kernels();
  const int64_t K = s.K, Q = s.Q, SC = s.S * s.C, taps = s.R * SC, xs = s.stride_w * s.C;
  const int64_t Kpad = round_up(K, kn.vec);
  const std::vector<KBlock> blocks = k_blocks(K, kn.vec);
  // A kernel row's S*C taps in slabs of at most max_taps, as even as possible.
  const int64_t slabs = ceil_div(SC, kn.max_taps);
  const int64_t cols = (Q - 1) * s.stride_w + s.S;
  const int64_t band_stride = round_up(cols * s.C, 16);
  const int64_t rows = s.N * s.P;
  const double work = static_cast<double>(rows * Q) * static_cast<double>(K * taps);
  // Output rows are cut into a fixed number of contiguous chunks, each summed into its own (taps + 1, Kpad)
  // partial [dw; db]; the partials are added in chunk order, so a result is reproducible for a given thread
  // count. Each kernel call sums one output row from zero before adding it in (blocked summation).
  const int threads = work >= kParallelMinWork ? max_threads() : 1;
  const int64_t chunks = std::min<int64_t>(rows, int64_t{4} * threads);
  const int64_t part = (taps + 1) * Kpad;
  std::vector<float> partial(static_cast<size_t>(chunks * part), 0.0f);
#pragma omp parallel num_threads(threads) if (threads > 1)
  {
    DenormalGuard guard;
    std::vector<float> band(static_cast<size_t>(s.R * band_stride));
#pragma omp for schedule(dynamic, 1)
    for (int64_t c = 0; c < chunks; ++c) {
      float* pdw = partial.data() + c * part;
      float* pdb = pdw + taps * Kpad;
      for (int64_t np = rows * c / chunks; np < rows * (c + 1) / chunks; ++np) {
        fill_band(band.data(), band_stride, cols, x, s, np / s.P, np % s.P);
        const float* dyrow = dy + np * Q * K;
        const float* next = np + 1 < rows ? dyrow + Q * K : nullptr;
        for (int64_t r = 0; r < s.R; ++r)
          for (int64_t i = 0; i < slabs; ++i) {
            const int64_t j0 = SC * i / slabs, j1 = SC * (i + 1) / slabs;
            const bool first = r == 0 && i == 0;  // the first pass over the row sums db and prefetches
            for (const KBlock& kb : blocks)
              kn.backward(static_cast<int>(j1 - j0), kb.kv, db && first)(
                  pdw + (r * SC + j0) * Kpad + kb.k0, Kpad, pdb + kb.k0, band.data() + r * band_stride + j0, xs,
                  dyrow + kb.k0, K, Q, kb.nk, first && next ? next + kb.k0 : nullptr);
          }
      }
    }
  }
  for (int64_t t = 0; t < taps; ++t)
    for (int64_t k = 0; k < K; ++k) {
      float v = 0.0f;
      for (int64_t c = 0; c < chunks; ++c) v += partial[c * part + t * Kpad + k];
      dw[t * K + k] = v;
    }
  if (db)
    for (int64_t k = 0; k < K; ++k) {
      float v = 0.0f;
      for (int64_t c = 0; c < chunks; ++c) v += partial[c * part + taps * Kpad + k];
      db[k] = v;
    }
}

}  // namespace microcnn::conv_direct
