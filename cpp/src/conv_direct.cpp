// Direct convolution driver: shape selection, ISA dispatch, the zero-padded input band of each output row,
// blocking over pixels / taps / output channels, and the thread split.
#include "conv_direct.hpp"

#include <algorithm>
#include <array>
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

namespace {

// The forward pass of one output row at a time: padded weights, K blocks and band geometry, set up once.
class ForwardRows {
 public:
  ForwardRows(const float* x, const float* w, const float* b, const ConvShape& s, bool relu)
      : kn_(active_kernels()), s_(s), x_(x), relu_(relu) {
    K_ = s.K;
    SC_ = s.S * s.C;
    xs_ = s.stride_w * s.C;
    Kpad_ = round_up(K_, kn_.vec);
    wpad_ = pad_columns(w, s.R * SC_, K_, Kpad_);
    if (b) bpad_ = pad_columns(b, 1, K_, Kpad_);
    blocks_ = k_blocks(K_, kn_.vec);
    // The last pixel tile may run past Q: the band is wide enough for whole tiles (the extra columns are 0).
    cols_ = (round_up(s.Q, kn_.mr) - 1) * s.stride_w + s.S;
    band_stride_ = round_up(cols_ * s.C, 16);
  }
  size_t band_size() const { return static_cast<size_t>(s_.R * band_stride_); }
  const Kernels& kernels() const { return kn_; }

  // Output row (n, p), pixels [0, Q) -> out (Q, K); band is this thread's scratch of band_size().
  void compute(float* out, float* band, int64_t n, int64_t p, int64_t Q) const {
    fill_band(band, band_stride_, cols_, x_, s_, n, p);
    const ForwardTile* tiles = kn_.forward[xs_ - 1];
    const float* bias = bpad_.empty() ? nullptr : bpad_.data();
    for (int64_t q0 = 0; q0 < Q; q0 += kn_.mr) {
      const int npix = static_cast<int>(std::min<int64_t>(kn_.mr, Q - q0));
      for (const KBlock& kb : blocks_)
        tiles[kb.kv - 1](out + q0 * K_ + kb.k0, K_, band + q0 * xs_, band_stride_, static_cast<int>(xs_),
                         static_cast<int>(s_.R), static_cast<int>(SC_), wpad_.data() + kb.k0, Kpad_,
                         bias ? bias + kb.k0 : nullptr, relu_, npix, kb.nk);
    }
  }

 private:
  const Kernels& kn_;
  const ConvShape& s_;
  const float* x_;
  bool relu_;
  int64_t K_, SC_, xs_, Kpad_, cols_, band_stride_;
  std::vector<float> wpad_, bpad_;
  std::vector<KBlock> blocks_;
};

// The weight gradient summed one output row at a time into per-chunk partials [dw; db] (taps + 1, Kpad).
class WeightGradRows {
 public:
  WeightGradRows(const float* x, const ConvShape& s) : kn_(active_kernels()), s_(s), x_(x) {
    K_ = s.K;
    SC_ = s.S * s.C;
    taps_ = s.R * SC_;
    xs_ = s.stride_w * s.C;
    Kpad_ = round_up(K_, kn_.vec);
    blocks_ = k_blocks(K_, kn_.vec);
    slabs_ = ceil_div(SC_, kn_.max_taps);  // a kernel row's S*C taps in slabs of <= max_taps, as even as possible
    cols_ = (s.Q - 1) * s.stride_w + s.S;
    band_stride_ = round_up(cols_ * s.C, 16);
  }
  size_t band_size() const { return static_cast<size_t>(s_.R * band_stride_); }
  int64_t partial_size() const { return (taps_ + 1) * Kpad_; }
  const Kernels& kernels() const { return kn_; }

  // partial += the contribution of output row (n, p), pixels [0, Q), whose gradient is dyrow (Q, K). with_db:
  // also sum dyrow into the db row. prefetch: up to three arrays read next (nullptr for none), prefetched while
  // this row is summed, one by the first pass over each of the first three kernel rows, K floats a pixel.
  void add(float* partial, float* band, int64_t n, int64_t p, const float* dyrow, int64_t Q,
           const std::array<const void*, 3>& prefetch, bool with_db) const {
    fill_band(band, band_stride_, cols_, x_, s_, n, p);
    float* pdb = partial + taps_ * Kpad_;
    for (int64_t r = 0; r < s_.R; ++r)
      for (int64_t i = 0; i < slabs_; ++i) {
        const int64_t j0 = SC_ * i / slabs_, j1 = SC_ * (i + 1) / slabs_;
        const float* pf = i == 0 && r < 3 ? static_cast<const float*>(prefetch[r]) : nullptr;
        for (const KBlock& kb : blocks_)
          kn_.backward(static_cast<int>(j1 - j0), kb.kv, with_db && r == 0 && i == 0)(
              partial + (r * SC_ + j0) * Kpad_ + kb.k0, Kpad_, pdb + kb.k0, band + r * band_stride_ + j0, xs_,
              dyrow + kb.k0, K_, Q, kb.nk, pf ? pf + kb.k0 : nullptr);
      }
  }

  // dw, db (if not nullptr) = the sum of `chunks` partials, added in chunk order.
  void reduce(float* dw, float* db, const std::vector<float>& partials, int64_t chunks) const {
    const int64_t part = partial_size();
    for (int64_t t = 0; t < taps_ + (db ? 1 : 0); ++t)
      for (int64_t k = 0; k < K_; ++k) {
        float v = 0.0f;
        for (int64_t c = 0; c < chunks; ++c) v += partials[c * part + t * Kpad_ + k];
        (t < taps_ ? dw + t * K_ : db)[k] = v;
      }
  }

 private:
  const Kernels& kn_;
  const ConvShape& s_;
  const float* x_;
  int64_t K_, SC_, taps_, xs_, Kpad_, slabs_, cols_, band_stride_;
  std::vector<KBlock> blocks_;
};

double multiply_adds(const ConvShape& s) {
  return static_cast<double>(s.N * s.P * s.Q) * static_cast<double>(s.K * s.R * s.S * s.C);
}

// Threads for a weight gradient, and the fixed number of row chunks (partials) that goes with it: the chunk
// count depends on the thread count only, so a result is reproducible for a given thread count.
int64_t gradient_chunks(const ConvShape& s, int64_t rows, int* threads) {
  *threads = multiply_adds(s) >= kParallelMinWork ? get_num_threads() : 1;
  return std::min<int64_t>(rows, int64_t{4} * *threads);
}

}  // namespace

// x (N,H,W,C), w (R,S,C,K), b (K) or nullptr -> y (N,P,Q,K)
void forward(float* y, const float* x, const float* w, const float* b, const ConvShape& s, bool relu) {
  const ForwardRows rows_of(x, w, b, s, relu);
  const int64_t Q = s.Q, K = s.K, rows = s.N * s.P;
  const bool stream = static_cast<double>(rows * Q * K) * sizeof(float) >= kStreamMinBytes;
#pragma omp parallel if (multiply_adds(s) >= kParallelMinWork)
  {
    DenormalGuard guard;
    std::vector<float> band(rows_of.band_size());
    std::vector<float> staged(stream ? static_cast<size_t>(Q * K) : 0);  // one output row, in L1/L2
#pragma omp for schedule(dynamic, 4)
    for (int64_t np = 0; np < rows; ++np) {
      rows_of.compute(stream ? staged.data() : y + np * Q * K, band.data(), np / s.P, np % s.P, Q);
      if (stream) rows_of.kernels().stream_copy(y + np * Q * K, staged.data(), Q * K);
    }
  }
}

// dy (N,P,Q,K), x (N,H,W,C) -> dw (R,S,C,K), db (K) or nullptr
void backward_weights(float* dw, float* db, const float* dy, const float* x, const ConvShape& s) {
  const WeightGradRows grad(x, s);
  const int64_t Q = s.Q, K = s.K, rows = s.N * s.P;
  // Output rows are cut into contiguous chunks, each summed into its own partial; each kernel call sums one
  // output row from zero before adding it in (blocked summation).
  int threads;
  const int64_t chunks = gradient_chunks(s, rows, &threads);
  std::vector<float> partials(static_cast<size_t>(chunks * grad.partial_size()), 0.0f);
#pragma omp parallel num_threads(threads) if (threads > 1)
  {
    DenormalGuard guard;
    std::vector<float> band(grad.band_size());
#pragma omp for schedule(dynamic, 1)
    for (int64_t c = 0; c < chunks; ++c)
      for (int64_t np = rows * c / chunks; np < rows * (c + 1) / chunks; ++np) {
        const float* dyrow = dy + np * Q * K;
        const void* next = np + 1 < rows ? dyrow + Q * K : nullptr;  // dy is read from memory once, in order
        grad.add(partials.data() + c * grad.partial_size(), band.data(), np / s.P, np % s.P, dyrow, Q,
                 {next, nullptr, nullptr}, db != nullptr);
      }
  }
  grad.reduce(dw, db, partials, chunks);
}

int64_t unpool_rows(float* dz, const float* dy, const int32_t* argmax, const float* y, int64_t Q2, int64_t Q,
                    int64_t K, int64_t base) {
  return active_kernels().unpool_rows(dz, dy, argmax, y, Q2, Q, K, base);
}

// x (N,H,W,C), w (R,S,C,K), b (K) or nullptr -> y (N,P/2,Q/2,K), argmax (N,P/2,Q/2,K)
void forward_relu_maxpool(float* y, int32_t* argmax, const float* x, const float* w, const float* b,
                          const ConvShape& s) {
  const ForwardRows rows_of(x, w, b, s, /*relu=*/true);
  const int64_t Q = s.Q, K = s.K, P2 = s.P / 2, Q2 = s.Q / 2, rows = s.N * P2, row = Q2 * K;
  const bool stream = static_cast<double>(rows * row) * sizeof(float) >= kStreamMinBytes;
#pragma omp parallel if (multiply_adds(s) >= kParallelMinWork)
  {
    DenormalGuard guard;
    std::vector<float> band(rows_of.band_size()), z(static_cast<size_t>(2 * Q * K));
    std::vector<float> staged_y(stream ? static_cast<size_t>(row) : 0);
    // argmax nullptr (inference): the indices go to this scratch row and are dropped
    std::vector<int32_t> staged_argmax(stream || !argmax ? static_cast<size_t>(row) : 0);
#pragma omp for schedule(dynamic, 2)
    for (int64_t np2 = 0; np2 < rows; ++np2) {
      const int64_t n = np2 / P2, p2 = np2 % P2;
      float *z0 = z.data(), *z1 = z0 + Q * K;
      rows_of.compute(z0, band.data(), n, 2 * p2, 2 * Q2);  // a last odd column or row is never pooled
      rows_of.compute(z1, band.data(), n, 2 * p2 + 1, 2 * Q2);
      float* out = stream ? staged_y.data() : y + np2 * row;
      int32_t* idx = stream || !argmax ? staged_argmax.data() : argmax + np2 * row;
      rows_of.kernels().pool_rows(out, idx, z0, z1, Q2, K, static_cast<int32_t>(2 * p2 * Q * K),
                                  static_cast<int32_t>(Q * K));
      if (stream) {
        rows_of.kernels().stream_copy(y + np2 * row, out, row);
        if (argmax) rows_of.kernels().stream_copy(argmax + np2 * row, idx, row);
      }
    }
  }
}

// dy (N,P/2,Q/2,K), argmax (N,P/2,Q/2,K), y (N,P/2,Q/2,K), x (N,H,W,C) -> dw (R,S,C,K), db (K) or nullptr
int64_t backward_weights_maxpool(float* dw, float* db, const float* dy, const int32_t* argmax, const float* y,
                                 const float* x, const ConvShape& s) {
  const WeightGradRows grad(x, s);
  const int64_t Q = s.Q, K = s.K, P2 = s.P / 2, Q2 = s.Q / 2, rows = s.N * P2;
  int threads;
  const int64_t chunks = gradient_chunks(s, rows, &threads);
  std::vector<float> partials(static_cast<size_t>(chunks * grad.partial_size()), 0.0f);
  int64_t bad = 0;
#pragma omp parallel num_threads(threads) if (threads > 1) reduction(+ : bad)
  {
    DenormalGuard guard;
    std::vector<float> band(grad.band_size()), dz(static_cast<size_t>(2 * Q * K));
#pragma omp for schedule(dynamic, 1)
    for (int64_t c = 0; c < chunks; ++c)
      for (int64_t np2 = rows * c / chunks; np2 < rows * (c + 1) / chunks; ++np2) {
        const int64_t n = np2 / P2, p2 = np2 % P2, off = np2 * Q2 * K;
        bad += grad.kernels().unpool_rows(dz.data(), dy + off, argmax + off, y + off, Q2, Q, K, 2 * p2 * Q * K);
        // Rows and columns the pooling drops have a zero gradient: they are skipped.
        float* partial = partials.data() + c * grad.partial_size();
        // The next pooled row's three inputs come from memory: fetch them while these two rows are summed (the
        // kernel prefetches K floats for each of 2*Q2 pixels: two pooled rows, the next and the one after).
        const bool more = np2 + 1 < rows;
        const std::array<const void*, 3> next{more ? dy + off + Q2 * K : nullptr,
                                              more ? argmax + off + Q2 * K : nullptr,
                                              more ? y + off + Q2 * K : nullptr};
        grad.add(partial, band.data(), n, 2 * p2, dz.data(), 2 * Q2, next, db != nullptr);
        grad.add(partial, band.data(), n, 2 * p2 + 1, dz.data() + Q * K, 2 * Q2, {}, db != nullptr);
      }
  }
  grad.reduce(dw, db, partials, chunks);
  return bad;
}

}  // namespace microcnn::conv_direct
