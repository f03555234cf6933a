// Portable direct-convolution micro-kernels: the SIMD tiles over 4-float portable vectors (forward: 4 pixels x
// 1 or 2 vectors of channels, backward: up to 4 taps), which the compiler lowers for the baseline target.
#include "simd/portable.hpp"
#include "conv_direct_tiles.hpp"

const microcnn::conv_direct::Kernels& microcnn::conv_direct::generic_kernels() {
  return simd_kernels_once<Portable<4>, 4, 4>(Isa::generic);
}
