// AVX2/FMA direct-convolution micro-kernels (compiled with -mavx2 -mfma only). A K block is 1 or 2 ymm of
// output channels; forward: 6 pixels x 2 ymm = 12 accumulators, backward: 5 taps x 2 ymm (+ 2 for db).
#include "simd/avx2.hpp"
#include "conv_direct_tiles.hpp"

namespace microcnn::conv_direct {

const Kernels& avx2_kernels() {
  static const Kernels k =
      simd_kernels<Avx2, 6, 5>(Isa::avx2, std::make_integer_sequence<int, kMaxPixelStep>{});
  return k;
}

}  // namespace microcnn::conv_direct
