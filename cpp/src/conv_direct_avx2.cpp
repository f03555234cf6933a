// AVX2/FMA direct-convolution micro-kernels (compiled with -mavx2 -mfma only). A K block is 1 or 2 ymm of
// output channels; forward: 6 pixels x 2 ymm = 12 accumulators, backward: 5 taps x 2 ymm (+ 2 for db).
#include "simd/avx2.hpp"
#include "conv_direct_tiles.hpp"

const microcnn::conv_direct::Kernels& microcnn::conv_direct::avx2_kernels() {
  return simd_kernels_once<Avx2, 6, 5>(Isa::avx2);
}
