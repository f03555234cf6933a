// Internal: direct convolution for layers with few input channels (the first layer of an image network: C = 1
// gray, 3 RGB, 4 RGBA). With C that small an im2col row is made of runs of C floats, so the implicit GEMM spends
// its time gathering them into panels rather than in FMAs. Here the micro-kernels read the input in place:
// for each output row the R input rows it needs are copied once, zero-padded, into a small "band" (cheap: K
// times smaller than the output row), and the kernels broadcast input values straight from it.
//
// Band of output row (n, p): row r (input row p*stride_h - pad_top + r) at band + r*band_stride; band column u
// (input column u - pad_left) at + u*C, zero outside the input. Output pixel q of the row reads kernel row r as
// the S*C contiguous floats at band + r*band_stride + q*XS, XS = stride_w*C (the pixel step in the band).
// Weights are used as the (R*S*C, K) matrix w[(r*S*C + j)*K + k], j = s*C + c, copied with K padded to a
// whole number of vectors.
#pragma once
#include <cstdint>

#include "microcnn/conv.hpp"
#include "microcnn/gemm.hpp"

namespace microcnn::conv_direct {

// Does the direct path take this layer (otherwise the implicit GEMM does)?
bool applies(const ConvShape& s);

// x (N,H,W,C), w (R,S,C,K), b (K) or nullptr -> y (N,P,Q,K); relu: y = max(0, conv + b). Requires applies(s).
void forward(float* y, const float* x, const float* w, const float* b, const ConvShape& s, bool relu);

// dy (N,P,Q,K), x (N,H,W,C) -> dw (R,S,C,K), db (K) or nullptr; overwritten, summed over the batch.
// Requires applies(s).
void backward_weights(float* dw, float* db, const float* dy, const float* x, const ConvShape& s);

// The conv + ReLU + 2x2 stride-2 "valid" max-pool block (an image network's first layer and its pooling), without
// the full-resolution conv output z (N,P,Q,K) in memory: it is computed two rows at a time and pooled at once.
// x (N,H,W,C), w (R,S,C,K), b (K) or nullptr -> y (N,P/2,Q/2,K), argmax (N,P/2,Q/2,K): maxpool2d_forward of
// z = max(0, conv + b); argmax may be nullptr (not written). Requires applies(s), P >= 2, Q >= 2,
// P*Q*K <= INT32_MAX.
void forward_relu_maxpool(float* y, int32_t* argmax, const float* x, const float* w, const float* b,
                          const ConvShape& s);

// Its weight gradient from the pooled gradient dy (N,P/2,Q/2,K), with argmax and y of the forward: dw, db as
// backward_weights for dz = maxpool2d_backward(relu_backward(dy, y), argmax), dz built two rows at a time.
// Returns the number of argmax entries that are not in their own window (those are skipped). Requires
// applies(s).
int64_t backward_weights_maxpool(float* dw, float* db, const float* dy, const int32_t* argmax, const float* y,
                                 const float* x, const ConvShape& s);

// dz rows 2*p2 and 2*p2 + 1 (at dz and dz + Q*K; pixels [0, 2*Q2) written, the rest untouched) from pooled row
// p2: dz = relu_backward(dy, y) at each argmax, 0 elsewhere (a window whose argmax lies outside it stays 0).
// dy, argmax, y point at the pooled row (Q2, K); base is the flat index of (row 2*p2, column 0, channel 0).
// Returns the number of argmax entries not in their window.
int64_t unpool_rows(float* dz, const float* dy, const int32_t* argmax, const float* y, int64_t Q2, int64_t Q,
                    int64_t K, int64_t base);

// --- micro-kernels, one set per ISA ----------------------------------------------------------------------
// Forward tile: npix (<= mr) consecutive output pixels x nk (<= kv*vec) channels starting at channel k0.
//   y      pixel i, channel k0 + k at y[i*ldy + k] (only the npix x nk valid values are written)
//   band   band + r*band_stride + i*xs + j: tap (r, j) of pixel i (xs = stride_w*C; kernels specialised on
//          it, forward[xs - 1], ignore the argument)
//   w      the padded weight matrix from column k0: tap t at w[t*ldw + k], ldw a multiple of the vector width
//   bias   padded bias from k0, or nullptr
// Reads up to mr pixels of the band whatever npix is (the band is padded for that).
using ForwardTile = void (*)(float* y, int64_t ldy, const float* band, int64_t band_stride, int xs, int R, int SC,
                             const float* w, int64_t ldw, const float* bias, bool relu, int npix, int nk);

// Backward-weights tile: T consecutive taps x nk (<= kv*vec) channels, summed over npix pixels:
//   dw[t*ldw + k] += sum_q x[q*xs + t] * dy[q*ldy + k]      t < T, k < nk (dw row padded to the vector width)
//   db[k]         += sum_q dy[q*ldy + k]                     when db is not nullptr (db's kernel was asked for)
// prefetch, when not nullptr, is dy of the next output row: pixel q's channels there are prefetched while
// pixel q is summed (dy is streamed from memory once; the first pass over a row would otherwise wait on it).
using BackwardTile = void (*)(float* dw, int64_t ldw, float* db, const float* x, int64_t xs, const float* dy,
                              int64_t ldy, int64_t npix, int nk, const float* prefetch);

// dst[0:n] = src[0:n], n 4-byte words (floats or int32), with non-temporal stores where the target allows, then
// a store fence: for outputs far larger than the caches, it saves reading every destination line before
// writing it.
using StreamCopy = void (*)(void* dst, const void* src, int64_t n);

constexpr int kMaxPixelStep = 8;  // largest XS = stride_w*C with a forward kernel

struct Kernels {
  Isa isa;
  int vec;       // floats per vector register; a K block is kv = 1 or 2 vectors
  int mr;        // output pixels per forward tile
  int max_taps;  // taps per backward tile
  ForwardTile forward[kMaxPixelStep][2];  // [XS - 1][kv - 1]
  BackwardTile (*backward)(int taps, int kv, bool db);  // taps <= max_taps
  StreamCopy stream_copy;
  // The fused block's pooling side (conv_direct_pool.hpp): pool two conv rows into one pooled row, and its
  // backward unpool_rows (below).
  void (*pool_rows)(float* y, int32_t* argmax, const float* z0, const float* z1, int64_t Q2, int64_t K,
                    int32_t base, int32_t row);
  int64_t (*unpool_rows)(float* dz, const float* dy, const int32_t* argmax, const float* y, int64_t Q2, int64_t Q,
                         int64_t K, int64_t base);
};

const Kernels& generic_kernels();
#ifdef MICROCNN_X86
const Kernels& avx2_kernels();    // conv_direct_avx2.cpp
const Kernels& avx512_kernels();  // conv_direct_avx512.cpp
#endif

}  // namespace microcnn::conv_direct
