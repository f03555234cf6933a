// Inference: conv + bias + ReLU + 2x2 max pool in one pass for every conv layer. Few input channels take the
// direct kernels (conv_direct.hpp, pooled two rows at a time, argmax into scratch). The others run the implicit
// GEMM one block of output rows at a time, each thread computing its block into a buffer that stays in L2 and
// pooling it there: the full-resolution conv output (the seed net's second layer: 46 MB a batch at 150x150)
// never goes to memory and is never read back.
#include <algorithm>
#include <vector>

#include "conv_direct.hpp"
#include "conv_gemm.hpp"
#include "microcnn/gemm.hpp"
#include "microcnn/infer.hpp"
#include "microcnn/threads.hpp"

namespace microcnn {

namespace {

// One pooled row from conv rows z0, z1 (Q pixels of K channels each): the first maximum in row-major window
// order wins (strict >), as maxpool2d_forward.
void pool_pair(float* __restrict y, const float* __restrict z0, const float* __restrict z1, int64_t Q2,
               int64_t K) {
  for (int64_t q2 = 0; q2 < Q2; ++q2, y += K) {
    const float *a = z0 + 2 * q2 * K, *b = a + K, *c = z1 + 2 * q2 * K, *d = c + K;
    for (int64_t k = 0; k < K; ++k) {
      float best = a[k];
      best = b[k] > best ? b[k] : best;
      best = c[k] > best ? c[k] : best;
      best = d[k] > best ? d[k] : best;
      y[k] = best;
    }
  }
}

// Conv output pixels per GEMM call: more than the 256 rows up to which the GEMM reads B in place, and few
// enough for the block to stay in L2 (128 KB at K=64). With 256-pixel blocks (B in place) the seed net's second
// layer ran 1.12x the time of conv + separate pooling; with 512, 0.88-0.95x at batch 32 (busy machine).
constexpr int64_t kBlockPixels = 512;

}  // namespace

// x (N,H,W,C), w (R,S,C,K), b (K) or nullptr -> y (N,P/2,Q/2,K)
void conv2d_relu_maxpool_infer(float* y, const float* x, const float* w, const float* b, const ConvShape& s) {
  if (conv_direct::applies(s)) return conv_direct::forward_relu_maxpool(y, nullptr, x, w, b, s);
  const int64_t P2 = s.P / 2, Q2 = s.Q / 2, K = s.K, taps = s.R * s.S * s.C;
  const conv_gemm::Im2colA a(conv_gemm::forward_im2col(x, s));
  const StridedB bw(w, K, 1);
  const double flops = 2.0 * s.N * s.P * s.Q * taps * K;
  int64_t per_block = std::clamp<int64_t>((kBlockPixels + 2 * s.Q - 1) / (2 * s.Q), 1, P2);  // pooled rows
  // A small batch (one image): blocks of fewer rows, at least two per thread, so that both threads share the
  // image and one that starts late does not hold the other up. Each element is computed the same either way.
  const int64_t threads = get_num_threads();
  if (threads > 1 && flops >= 4e6 && s.N * P2 < 2 * threads * per_block)
    per_block = std::max<int64_t>(1, s.N * P2 / (2 * threads));
  const int64_t blocks_per_sample = (P2 + per_block - 1) / per_block, blocks = s.N * blocks_per_sample;
#pragma omp parallel if (flops >= 4e6 && blocks > 1)
  {
    DenormalGuard guard;
    static thread_local std::vector<float> z;  // kept between calls: no allocation per call once warm
    z.resize(static_cast<size_t>(2 * per_block * s.Q * K));
#pragma omp for schedule(dynamic, 1)
    for (int64_t blk = 0; blk < blocks; ++blk) {
      const int64_t n = blk / blocks_per_sample, p0 = blk % blocks_per_sample * per_block;
      const int64_t p1 = std::min(P2, p0 + per_block);
      const conv_gemm::RowOffsetA rows(a, (n * s.P + 2 * p0) * s.Q);
      gemm_serial(z.data(), K, rows, bw, 2 * (p1 - p0) * s.Q, K, taps, GemmEpilogue{b, true});
      for (int64_t p2 = p0; p2 < p1; ++p2) {
        const float* z0 = z.data() + 2 * (p2 - p0) * s.Q * K;
        pool_pair(y + (n * P2 + p2) * Q2 * K, z0, z0 + s.Q * K, Q2, K);
      }
    }
  }
}

}  // namespace microcnn
