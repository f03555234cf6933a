// AVX-512 direct-convolution micro-kernels (compiled with -mavx512f -mavx512dq only). A K block is 1 or 2 zmm
// of output channels; forward: 14 pixels x 2 zmm = 28 accumulators, backward: 13 taps x 2 zmm (+ 2 for db).
#include "simd/avx512.hpp"
#include "conv_direct_tiles.hpp"

const microcnn::conv_direct::Kernels& microcnn::conv_direct::avx512_kernels() {
  return simd_kernels_once<Avx512, 14, 13>(Isa::avx512);
}
