// AVX-512 direct-convolution micro-kernels (compiled with -mavx512f -mavx512dq only). A K block is 1 or 2 zmm
// of output channels; forward: 14 pixels x 2 zmm = 28 accumulators, backward: 13 taps x 2 zmm (+ 2 for db).
#include "simd/avx512.hpp"
#include "conv_direct_tiles.hpp"

namespace microcnn::conv_direct {

const Kernels& avx512_kernels() {
  static const Kernels k =
      simd_kernels<Avx512, 14, 13>(Isa::avx512, std::make_integer_sequence<int, kMaxPixelStep>{});
  return k;
}

}  // namespace microcnn::conv_direct
