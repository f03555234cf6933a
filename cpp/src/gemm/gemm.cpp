// The GEMM driver: cache blocking, in-place or packed operands, and the thread split (dispatch.cpp picks the
// micro-kernel, pack.cpp packs plain matrices).
#include <algorithm>
#include <cstring>
#include <new>
#include <vector>

#include "kernels.hpp"
#include "microcnn/gemm.hpp"
#include "microcnn/threads.hpp"

#ifdef MICROCNN_OPENMP
#include <omp.h>
#endif

namespace microcnn {
namespace gd = gemm_detail;

// --- driver ----------------------------------------------------------------------------------------------
namespace {

// Up to this many rows of C, B is read in place when its source allows it (PanelB::direct): measured faster
// than packing up to 256 rows for the dense forward (and no slower for the conv weight gradient, 129 rows).
// Up to this many columns, A is (PanelA::direct; measured for backward-data with a batch of 32 and 64).
constexpr int64_t kInPlaceMaxRows = 256;
constexpr int64_t kInPlaceMaxCols = 64;

int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }
int64_t ceil_div(int64_t x, int64_t m) { return (x + m - 1) / m; }

// A 64-byte aligned scratch buffer that only grows; one per thread for the packed panels.
class Scratch {
 public:
  ~Scratch() { release(); }
  float* get(size_t n) {
    if (n > size_) {
      release();
      data_ = static_cast<float*>(::operator new(n * sizeof(float), std::align_val_t(64)));
      size_ = n;
    }
    return data_;
  }

 private:
  void release() {
    if (data_) ::operator delete(data_, std::align_val_t(64));
    data_ = nullptr;
    size_ = 0;
  }
  float* data_ = nullptr;
  size_t size_ = 0;
};

thread_local Scratch tl_a, tl_b, tl_edge;

struct Problem {
  const gd::KernelInfo& ki;
  float* c;
  int64_t ldc;
  const PanelA& a;
  const PanelB& b;
  const float* bias;
  bool relu;
  bool accumulate;
  bool direct_b = false;  // read B in place where it allows (PanelB::direct) instead of packing it
  bool direct_a = false;  // the same for A (PanelA::direct)
  bool trans_c = false;   // store C^T (GemmEpilogue::transpose_c)
};

// One block of mb rows of A: packed panels, or A in place (row stride ld) for its first `full` rows with only
// the shorter last micro-panel packed (at `packed`).
struct BlockA {
  const float* packed;
  const float* direct = nullptr;
  int64_t ld = 0;
  int full = 0;
};

BlockA prepare_a(const Problem& p, float* buf, int64_t i0, int mb, int64_t p0, int kb) {
  const int mr = p.ki.mr;
  int64_t ld = 0;
  const float* d = p.direct_a ? p.a.direct(&ld) : nullptr;
  if (!d) {
    p.a.pack(buf, i0, mb, p0, kb, mr);
    return BlockA{buf};
  }
  const int full = mb / mr * mr;
  if (full < mb) p.a.pack(buf, i0 + full, mb - full, p0, kb, mr);
  return BlockA{buf, d + i0 * ld + p0, ld, full};
}

// One (kb x nb) block of B as the micro-kernels see it: packed micro-panels, or B in place (direct, row
// stride ld) for the first `full` columns with only the narrower last micro-panel packed (at `packed`).
struct BlockB {
  const float* packed;
  const float* direct = nullptr;
  int64_t ld = 0;
  int full = 0;
  const float* next = nullptr;  // the next block when it is contiguous: prefetched while this one runs
  int64_t next_floats = 0;
  int64_t panel_stride = 0;  // floats from one packed micro-panel to the next (0: kb * nr)
};

// The B block at (p0, j0) of a source packed once (PanelB::prepacked), in place; nullptr-packed when it is not.
BlockB prepacked_b(const Problem& p, int64_t p0, int64_t j0) {
  int64_t stride = 0;
  const float* d = p.b.prepacked(p.ki.nr, &stride);
  if (!d) return BlockB{nullptr};
  BlockB bb{d + j0 / p.ki.nr * stride + p0 * p.ki.nr};
  bb.panel_stride = stride;
  return bb;
}

// Sets up the B block at (p0, j0) in buf: packs all of it, or only its edge micro-panel when B is read in place.
// next_rows: rows of the block that follows in the same column range (0 if none).
BlockB prepare_b(const Problem& p, float* buf, int64_t p0, int kb, int64_t j0, int nb, int64_t next_rows) {
  const int nr = p.ki.nr;
  if (const BlockB pre = prepacked_b(p, p0, j0); pre.packed) return pre;
  int64_t ld = 0;
  const float* d = p.direct_b ? p.b.direct(&ld) : nullptr;
  if (!d) {
    p.b.pack(buf, p0, kb, j0, nb, nr);
    return BlockB{buf};
  }
  const int full = nb / nr * nr;
  if (full < nb) p.b.pack(buf, p0, kb, j0 + full, nb - full, nr);
  BlockB bb{buf, d + p0 * ld + j0, ld, full};
  if (nb == ld && next_rows > 0) {  // whole rows: the next block is one contiguous run
    bb.next = d + (p0 + kb) * ld;
    bb.next_floats = next_rows * ld;
  }
  return bb;
}

// The prefetch stream of the q-th in-place micro-kernel call of a block: the q-th run of kb lines of the next
// block, never past its end; null once the block is covered.
const float* prefetch_slice(const BlockB& bb, int64_t q, int kb) {
  const int64_t len = static_cast<int64_t>(kb) * gd::kLineFloats;
  if (!bb.next || len > bb.next_floats) return nullptr;
  const int64_t off = q * len;
  if (off >= bb.next_floats) return nullptr;
  return bb.next + std::min(off, bb.next_floats - len);
}

// Floats of one packed A block of mb rows and depth kb.
size_t a_block_size(const PanelA& a, int kb, int mb, int mr) {
  return static_cast<size_t>(a.rows_layout() ? kPackedRowStride : kb) * round_up(mb, mr);
}

// Micro-kernels over one A block (mb rows) x one B block (nb columns) of the slice starting at C(ic, jc).
// `last` marks the final K slice: only then are bias and ReLU applied.
void run_tiles(const Problem& p, const BlockA& ba, const BlockB& bb, int64_t ic, int mb, int64_t jc, int nb, int kb,
               bool accumulate, bool last) {
  const gd::KernelInfo& ki = p.ki;
  const int mr = ki.mr, nr = ki.nr;
  const float* bias = last ? p.bias : nullptr;
  const bool relu = last && p.relu;
  const bool rows = p.a.rows_layout();
  const int64_t a_panel = rows ? static_cast<int64_t>(mr) * kPackedRowStride : static_cast<int64_t>(kb) * mr;
  // A in place spanning whole rows: each call prefetches the next micro-panel's rows (contiguous), up to
  // the end of the block.
  const bool a_stream = ba.direct && ba.ld == kb;
  const int64_t a_end = static_cast<int64_t>(ba.full) * ba.ld, a_len = static_cast<int64_t>(kb) * gd::kLineFloats;
  int64_t calls = 0;  // calls with B in place so far, each prefetching its slice of the next B block
  for (int jr = 0; jr < nb; jr += nr) {
    const int nn = std::min(nr, nb - jr);
    const bool b_in_place = bb.direct && jr < bb.full;
    const float* bp = b_in_place ? bb.direct + jr
                      : bb.direct ? bb.packed
                                  : bb.packed + static_cast<int64_t>(jr / nr) * (bb.panel_stride ? bb.panel_stride
                                                                                                  : kb * nr);
    const int64_t ldb = b_in_place ? bb.ld : nr;
    const float* bias_j = bias ? bias + jc + jr : nullptr;
    for (int ir = 0; ir < mb; ir += mr) {
      const int mm = std::min(mr, mb - ir);
      const bool a_in_place = ba.direct && ir < ba.full;
      const float* ap = a_in_place ? ba.direct + ir * ba.ld
                        : ba.direct ? ba.packed
                                    : ba.packed + (ir / mr) * a_panel;
      const int64_t lda = a_in_place ? ba.ld : kPackedRowStride;
      const float* pf = nullptr;
      if (b_in_place) {
        pf = prefetch_slice(bb, calls++, kb);
      } else if (a_in_place && a_stream) {
        const int64_t next = static_cast<int64_t>(ir + mr) * ba.ld;
        if (next < a_end && a_len <= a_end) pf = ba.direct + std::min(next, a_end - a_len);
      }
      const bool short_tile = mm <= ki.mr_short;
      const int tile_rows = short_tile ? ki.mr_short : mr;
      const gd::MicroKernel kernel = ki.kernels[short_tile][rows][a_in_place || b_in_place];
      if (p.trans_c) {  // through the tile buffer, stored column by column (contiguous runs of C^T rows)
        float* edge = tl_edge.get(static_cast<size_t>(mr) * nr);
        kernel(kb, ap, lda, bp, ldb, edge, nr, false, nullptr, false, pf);
        const bool plain = !accumulate && !bias_j && !relu;
        for (int j = 0; j < nn; ++j) {
          float* cj = p.c + (jc + jr + j) * p.ldc + ic + ir;
          if (plain) {
            for (int i = 0; i < mm; ++i) cj[i] = edge[i * nr + j];
            continue;
          }
          for (int i = 0; i < mm; ++i) {
            float v = edge[i * nr + j];
            if (accumulate) v += cj[i];
            if (bias_j) v += bias_j[j];
            if (relu && v < 0.0f) v = 0.0f;
            cj[i] = v;
          }
        }
        continue;
      }
      float* ct = p.c + (ic + ir) * p.ldc + jc + jr;
      if (mm == tile_rows && nn == nr) {
        kernel(kb, ap, lda, bp, ldb, ct, p.ldc, accumulate, bias_j, relu, pf);
        continue;
      }
      float* edge = tl_edge.get(static_cast<size_t>(mr) * nr);
      kernel(kb, ap, lda, bp, ldb, edge, nr, false, nullptr, false, pf);
      for (int i = 0; i < mm; ++i)
        for (int j = 0; j < nn; ++j) {
          float v = edge[i * nr + j];
          if (accumulate) v += ct[i * p.ldc + j];
          if (bias_j) v += bias_j[j];
          if (relu && v < 0.0f) v = 0.0f;  // NaN stays NaN
          ct[i * p.ldc + j] = v;
        }
    }
  }
}

// C[i0:i1, j0:j1] over the reduction range [k0, k1), all in the calling thread.
void gemm_range(const Problem& p, int64_t i0, int64_t i1, int64_t j0, int64_t j1, int64_t k0, int64_t k1) {
  const gd::KernelInfo& ki = p.ki;
  for (int64_t jc = j0; jc < j1; jc += ki.nc) {
    const int nb = static_cast<int>(std::min<int64_t>(ki.nc, j1 - jc));
    for (int64_t pc = k0; pc < k1; pc += ki.kc) {
      const int kb = static_cast<int>(std::min<int64_t>(ki.kc, k1 - pc));
      float* bbuf = tl_b.get(static_cast<size_t>(kb) * round_up(nb, ki.nr));
      const BlockB bb = prepare_b(p, bbuf, pc, kb, jc, nb, std::min<int64_t>(ki.kc, k1 - pc - kb));
      for (int64_t ic = i0; ic < i1; ic += ki.mc) {
        const int mb = static_cast<int>(std::min<int64_t>(ki.mc, i1 - ic));
        float* abuf = tl_a.get(a_block_size(p.a, kb, mb, ki.mr));
        const BlockA ba = prepare_a(p, abuf, ic, mb, pc, kb);
        run_tiles(p, ba, bb, ic, mb, jc, nb, kb, p.accumulate || pc != k0, pc + kb == k1);
      }
    }
  }
}

#ifdef MICROCNN_OPENMP
// Threads take MC-row blocks of A; the B block of each (NC, KC) step is packed once, cooperatively.
void gemm_split_m(const Problem& p, int64_t M, int64_t N, int64_t K, int threads) {
  const gd::KernelInfo& ki = p.ki;
  const int64_t mc = std::min<int64_t>(ki.mc, round_up(ceil_div(M, threads), ki.mr));
  const int64_t row_blocks = ceil_div(M, mc);
  const int64_t nc_max = std::min<int64_t>(ki.nc, N);
  float* bbuf = tl_b.get(static_cast<size_t>(std::min<int64_t>(ki.kc, K)) * round_up(nc_max, ki.nr));
#pragma omp parallel num_threads(threads)
  {
    DenormalGuard guard;
    for (int64_t jc = 0; jc < N; jc += ki.nc) {
      const int nb = static_cast<int>(std::min<int64_t>(ki.nc, N - jc));
      for (int64_t pc = 0; pc < K; pc += ki.kc) {
        const int kb = static_cast<int>(std::min<int64_t>(ki.kc, K - pc));
        const int64_t panels = ceil_div(nb, ki.nr);
        BlockB bb = prepacked_b(p, pc, jc);
        if (!bb.packed) {
          bb.packed = bbuf;
#pragma omp for schedule(static)
          for (int64_t t = 0; t < panels; ++t)
            p.b.pack(bbuf + t * kb * ki.nr, pc, kb, jc + t * ki.nr,
                     static_cast<int>(std::min<int64_t>(ki.nr, nb - t * ki.nr)), ki.nr);
        }
#pragma omp for schedule(dynamic, 1)
        for (int64_t blk = 0; blk < row_blocks; ++blk) {
          const int64_t ic = blk * mc;
          const int mb = static_cast<int>(std::min<int64_t>(mc, M - ic));
          float* abuf = tl_a.get(a_block_size(p.a, kb, mb, ki.mr));
          const BlockA ba = prepare_a(p, abuf, ic, mb, pc, kb);
          run_tiles(p, ba, bb, ic, mb, jc, nb, kb, p.accumulate || pc != 0, pc + kb == K);
        }
      }
    }
  }
}

// Threads take column chunks of C; each packs its own B (disjoint) and its own copy of the (small) A.
void gemm_split_n(const Problem& p, int64_t M, int64_t N, int64_t K, int threads) {
  const int64_t chunk = round_up(ceil_div(N, int64_t{4} * threads), p.ki.nr);
  const int64_t chunks = ceil_div(N, chunk);
#pragma omp parallel num_threads(threads)
  {
    DenormalGuard guard;
#pragma omp for schedule(dynamic, 1)
    for (int64_t t = 0; t < chunks; ++t) gemm_range(p, 0, M, t * chunk, std::min(N, (t + 1) * chunk), 0, K);
  }
}

// Small C, long reduction: K is cut into a fixed number of contiguous chunks (4 per thread, so a thread that
// the OS pauses does not hold the others up); each chunk reduces into its own partial C, and the partials
// are summed in chunk order, so a result is reproducible for a given thread count.
void gemm_split_k(const Problem& p, int64_t M, int64_t N, int64_t K, int threads) {
  const int64_t chunks = std::min<int64_t>(int64_t{4} * threads, std::max<int64_t>(1, K / p.ki.kc));
  std::vector<float> partial(static_cast<size_t>(chunks) * M * N);
#pragma omp parallel num_threads(threads)
  {
    DenormalGuard guard;
#pragma omp for schedule(dynamic, 1)
    for (int64_t t = 0; t < chunks; ++t) {
      float* mine = partial.data() + static_cast<size_t>(t) * M * N;
      const Problem part{p.ki, mine, N, p.a, p.b, nullptr, false, false, p.direct_b, p.direct_a};
      gemm_range(part, 0, M, 0, N, K * t / chunks, K * (t + 1) / chunks);
    }
#pragma omp for schedule(static)
    for (int64_t i = 0; i < M; ++i) {
      for (int64_t j = 0; j < N; ++j) {
        float& cij = p.trans_c ? p.c[j * p.ldc + i] : p.c[i * p.ldc + j];
        float v = p.accumulate ? cij : 0.0f;
        for (int64_t t = 0; t < chunks; ++t) v += partial[(static_cast<size_t>(t) * M + i) * N + j];
        if (p.bias) v += p.bias[j];
        if (p.relu && v < 0.0f) v = 0.0f;
        cij = v;
      }
    }
  }
}
#endif

}  // namespace

bool gemm_splits_sum(int64_t M, int64_t N, int64_t K) {
#ifdef MICROCNN_OPENMP
  const int threads = get_num_threads();
  return threads > 1 && 2.0 * M * N * K >= 4e6 && M * N <= kGemmSplitSumMaxOutput && K >= 8 * std::max(M, N) &&
         K >= int64_t{2} * gd::active_kernel().kc * threads;
#else
  (void)M, (void)N, (void)K;
  return false;
#endif
}

void gemm(float* c, int64_t ldc, const PanelA& a, const PanelB& b, int64_t M, int64_t N, int64_t K,
          const GemmEpilogue& epilogue, bool accumulate) {
  const gd::KernelInfo& ki = gd::active_kernel();
  // With few rows of A, each B element feeds at most a few micro-kernel calls (and with few columns of B,
  // each A element): packing it would cost more memory traffic than it saves.
  const Problem p{ki, c, ldc, a, b, epilogue.bias, epilogue.relu, accumulate, ki.in_place && M <= kInPlaceMaxRows,
                  ki.in_place && N <= kInPlaceMaxCols, epilogue.transpose_c};
  const int threads = get_num_threads();
  const double flops = 2.0 * M * N * K;
#ifdef MICROCNN_OPENMP
  if (threads > 1 && flops >= 4e6) {
    if (gemm_splits_sum(M, N, K)) return gemm_split_k(p, M, N, K, threads);
    if (M >= N || N < int64_t{2} * ki.nr * threads) return gemm_split_m(p, M, N, K, threads);
    return gemm_split_n(p, M, N, K, threads);
  }
#endif
  DenormalGuard guard;
  gemm_range(p, 0, M, 0, N, 0, K);
}

void gemm_serial(float* c, int64_t ldc, const PanelA& a, const PanelB& b, int64_t M, int64_t N, int64_t K,
                 const GemmEpilogue& epilogue, bool accumulate) {
  const gd::KernelInfo& ki = gd::active_kernel();
  const Problem p{ki, c, ldc, a, b, epilogue.bias, epilogue.relu, accumulate, ki.in_place && M <= kInPlaceMaxRows,
                  ki.in_place && N <= kInPlaceMaxCols, epilogue.transpose_c};
  gemm_range(p, 0, M, 0, N, 0, K);
}

void sgemm(float* c, const float* a, const float* b, int64_t M, int64_t N, int64_t K) {
  const StridedA pa(a, K, 1, /*rows_panels=*/N <= 128);
  const StridedB pb(b, N, 1);
  gemm(c, N, pa, pb, M, N, K);
}

}  // namespace microcnn
