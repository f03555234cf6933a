// Packed single-precision GEMM in the BLIS structure, shared by the convolution and dense kernels.
//
// Legend: C (M,N) = A (M,K) @ B (K,N). Row-major C with row stride ldc.
//
// A and B are not plain pointers but panel sources: objects that copy a block of the operand into the packed
// layout the micro-kernel reads. A strided matrix is one such source; a convolution supplies another that
// gathers its im2col rows straight into the panel, so no im2col buffer is ever materialised.
//
// Loops (per thread): for each NC-wide column block of B, for each KC-deep slice, pack the B block (L3/L2),
// for each MC-tall row block of A pack the A block (L2), then run the MR x NR register-tiled FMA micro-kernel
// over it. Threads split M, N or (for small C with a long reduction) K; a K split reduces the per-chunk
// partial results in a fixed order, so a result is reproducible for a given thread count. The ISA of the
// micro-kernel (generic C++, AVX2/FMA, AVX-512) is chosen at run time.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace microcnn {

// --- ISA dispatch ------------------------------------------------------------------------------------
enum class Isa { generic = 0, avx2 = 1, avx512 = 2 };

// The micro-kernel in use: "avx512", "avx2/fma" or "generic". The best the CPU supports, lowered by the
// environment variable MICROCNN_ISA=generic|avx2|avx512 at load time or by set_kernel_isa.
const char* kernel_isa_name();
Isa kernel_isa();
// Names of the micro-kernels this build and this CPU can run, best last.
std::vector<std::string> available_kernel_isas();
// Selects a micro-kernel by name ("generic", "avx2" / "avx2/fma", "avx512"); false when unknown or unavailable.
// Not meant to be called while kernels run in other threads.
bool set_kernel_isa(const std::string& name);

// --- panel sources -----------------------------------------------------------------------------------
// Row stride of row-major A panels; no kernel's KC block is deeper.
constexpr int kPackedRowStride = 256;

// gemm() may split the sum over K across threads only for outputs C of at most this many elements. Above it
// every element of C is summed in one order whatever the thread count, which dense_adam_update's block-by-block
// gradient relies on to match dense_backward bit for bit (and the Python Dense layer uses it as the size above
// which its kernel gradient stays factored for that pass: _core.GEMM_SPLIT_SUM_MAX_OUTPUT).
constexpr int64_t kGemmSplitSumMaxOutput = int64_t{1} << 20;

// Copies A[i0:i0+mb, p0:p0+kb] into ceil(mb/mr) micro-panels; rows at or past mb are zero. Layout:
//   k-major (rows_layout() false): panel t at dst + t*kb*mr, dst[t*kb*mr + k*mr + i] = A[i0 + t*mr + i, p0 + k]
//   row-major (rows_layout() true): row i of panel t at dst + (t*mr + i)*kPackedRowStride, holding kb values.
// Row-major suits sources whose rows are contiguous runs (row-major matrices, im2col rows): packing is a
// copy rather than a transpose, and the micro-kernel reads the rows directly.
class PanelA {
 public:
  virtual ~PanelA() = default;
  virtual bool rows_layout() const { return false; }
  virtual void pack(float* dst, int64_t i0, int mb, int64_t p0, int kb, int mr) const = 0;
  // A source in the row-major layout that is a row-major matrix in memory may hand it out as is (see
  // PanelB::direct; here for a small N): A[i, k] = direct()[i*row_stride + k], or nullptr.
  virtual const float* direct(int64_t* row_stride) const {
    (void)row_stride;
    return nullptr;
  }
};

// Copies B[p0:p0+kb, j0:j0+nb] into ceil(nb/nr) micro-panels, panel t at dst + t*kb*nr holding
// dst[t*kb*nr + k*nr + j] = B[p0 + k, j0 + t*nr + j]; columns at or past nb are zero.
// A source that is a row-major matrix in memory may also hand it out as is (direct): for a small M each B
// element is used by few micro-kernel calls, and the micro-kernel then reads it in place, skipping the copy
// (which would read, write and re-read the whole of B: the dense layer's 90 MB weight matrix).
class PanelB {
 public:
  virtual ~PanelB() = default;
  virtual void pack(float* dst, int64_t p0, int kb, int64_t j0, int nb, int nr) const = 0;
  // B[k, j] = direct()[k*row_stride + j], or nullptr when B is not such a matrix.
  virtual const float* direct(int64_t* row_stride) const {
    (void)row_stride;
    return nullptr;
  }
  // A source stored once in the packed layout for micro-panels nr wide (PackedB) hands its panels out as they
  // are: B[k, t*nr + j] = prepacked()[t*panel_stride + k*nr + j]; nullptr when it is not, or not for this nr.
  virtual const float* prepacked(int nr, int64_t* panel_stride) const {
    (void)nr;
    (void)panel_stride;
    return nullptr;
  }
};

// A[i, k] = data[i*row_stride + k*col_stride]: a row-major matrix (row_stride = lda, col_stride = 1) or the
// transpose of one (row_stride = 1, col_stride = ld). A row-major matrix is packed into row-major panels
// when rows_panels (a copy: best when N is small and packing A is a large share of the work), else
// transposed into k-major panels (the micro-kernel streams those slightly faster: best for wide N).
class StridedA final : public PanelA {
 public:
  StridedA(const float* data, int64_t row_stride, int64_t col_stride, bool rows_panels = true)
      : d_(data), rs_(row_stride), cs_(col_stride), rows_(rows_panels && col_stride == 1) {}
  bool rows_layout() const override { return rows_; }
  void pack(float* dst, int64_t i0, int mb, int64_t p0, int kb, int mr) const override;
  const float* direct(int64_t* row_stride) const override {
    *row_stride = rs_;
    return rows_ ? d_ : nullptr;
  }

 private:
  const float* d_;
  int64_t rs_, cs_;
  bool rows_;
};

// B[k, j] = data[k*row_stride + j*col_stride].
class StridedB final : public PanelB {
 public:
  StridedB(const float* data, int64_t row_stride, int64_t col_stride)
      : d_(data), rs_(row_stride), cs_(col_stride) {}
  void pack(float* dst, int64_t p0, int kb, int64_t j0, int nb, int nr) const override;
  const float* direct(int64_t* row_stride) const override {
    *row_stride = rs_;
    return cs_ == 1 ? d_ : nullptr;
  }

 private:
  const float* d_;
  int64_t rs_, cs_;
};

// B (K,N) stored as ceil(N/nr) panels of K x nr (the last zero-padded), panel t at data + t*K*nr: weights packed
// once (pack_panels_b) and read by every later call without a copy, each micro-panel one sequential run.
class PackedB final : public PanelB {
 public:
  PackedB(const float* data, int64_t K, int nr) : d_(data), k_(K), nr_(nr) {}
  void pack(float* dst, int64_t p0, int kb, int64_t j0, int nb, int nr) const override;
  const float* prepacked(int nr, int64_t* panel_stride) const override {
    *panel_stride = k_ * nr_;
    return nr == nr_ ? d_ : nullptr;
  }

 private:
  const float* d_;
  int64_t k_;
  int nr_;
};

// Floats of w (K,N) packed for micro-panels nr wide, and the packing itself (dst: that many floats).
int64_t packed_panels_size(int64_t K, int64_t N, int nr);
void pack_panels_b(float* dst, const float* w, int64_t K, int64_t N, int nr);

// --- GEMM --------------------------------------------------------------------------------------------
struct GemmEpilogue {
  const float* bias = nullptr;  // (N,) added to every row, or null
  bool relu = false;            // max(0, .) after the bias
  // Store C transposed: element (i, j) at c[j*ldc + i], so c holds C^T (N, M). Saves a separate transpose
  // pass when the GEMM is best run in the other orientation (a small N read in place, see PanelA::direct).
  bool transpose_c = false;
};

// C (M,N) = [C +] A (M,K) @ B (K,N) [+ bias] [ReLU] (or C^T, see GemmEpilogue). With accumulate the previous
// C is added before the epilogue. Opens its own OpenMP parallel region: call it from serial code. M, N, K >= 1.
void gemm(float* c, int64_t ldc, const PanelA& a, const PanelB& b, int64_t M, int64_t N, int64_t K,
          const GemmEpilogue& epilogue = {}, bool accumulate = false);

// As gemm, but entirely in the calling thread, under the caller's denormal mode: for kernels that call it from
// their own parallel region. Every element is computed as gemm computes it when gemm does not split K (which
// it only does for M*N <= 2^20).
void gemm_serial(float* c, int64_t ldc, const PanelA& a, const PanelB& b, int64_t M, int64_t N, int64_t K,
                 const GemmEpilogue& epilogue = {}, bool accumulate = false);

// Whether gemm() splits the sum over K across threads for this shape (with the current thread count and
// micro-kernel): only for a small C (M*N <= kGemmSplitSumMaxOutput) with a long reduction. When false, every
// element of C is summed in one order whatever the thread count, as gemm_serial sums it.
bool gemm_splits_sum(int64_t M, int64_t N, int64_t K);

// a (M,K) @ b (K,N) -> c (M,N), all row-major and contiguous; c is overwritten.
void sgemm(float* c, const float* a, const float* b, int64_t M, int64_t N, int64_t K);

}  // namespace microcnn
