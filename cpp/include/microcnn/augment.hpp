// Data augmentation: a batched affine warp with bilinear interpolation (shear, zoom, flip, rotation, shift
// all reduce to one 2x3 matrix per image, composed in Python by microcnn/augment.py).
//
// Legend: N batch, H W height/width, C channels.
// Coordinates are pixel indices (pixel centres at integers), row first: output pixel (r, c) samples the input
// at (row, col) = A @ (r, c, 1), the convention of scipy.ndimage.affine_transform that Keras's
// ImageDataGenerator uses. Bilinear: the four integer neighbours of (row, col) are weighted by distance; a
// neighbour outside the image is resolved by the fill mode:
//   Nearest   its index is clamped to the image (edge pixels repeat)             = scipy "nearest"
//   Constant  it takes the value cval                                            = scipy "grid-constant"
//   Reflect   its index is mirrored about the edge, half-sample symmetric        = scipy "reflect"
//             (d c b a | a b c d | d c b a)
// The output is written, never accumulated; the input is never modified. The oracle is the NumPy loop in
// tests/test_augment.py (plus Pillow's affine transform on interior pixels).
#pragma once
#include <cstdint>

namespace microcnn {

enum class FillMode { Nearest, Constant, Reflect };

// x (N,H,W,C), matrices (N,2,3) -> y (N,H,W,C). matrices must be finite.
void affine_warp(float* y, const float* x, const float* matrices, int64_t N, int64_t H, int64_t W, int64_t C,
                 FillMode fill_mode, float cval);

// ---- Augmentation presets: every random draw in C++, one counter-based stream per sample ----
// A sample's stream depends only on (seed, epoch, index), index being the sample's position in the dataset, so
// a batch gives the same result whatever the batch composition, thread count or number of processes. The
// generator is SplitMix64 (Steele et al. 2014) used as a hash: key = mix(mix(mix(seed) ^ epoch) ^ index),
// draw j = mix(key ^ (j * 0xD1B54A32D192ED03)), a uniform in [0, 1) from its top 53 bits. Gaussian noise of the
// pixel pair (2i, 2i+1) (flat H*W*C order) comes from draw kNoiseStream + i by Box-Muller in float: u1 = bits
// 40-63, u2 = bits 8-31 (each / 2^24), r = sqrt(-2 ln(1 - u1)), z = (r cos 2 pi u2, r sin 2 pi u2).
//
// Per sample, in this order (the parameters are the columns of augment_params):
//  0 dihedral   d = floor(8u) (floor(4u) when H != W): bit 0 mirrors the columns, bit 1 the rows, then bit 2
//               transposes (output (r, c) reads the mirrored image at (c, r))
//  1,2 flips    horizontal / vertical with probability 1/2 (Keras's flips; off when dihedral)
//  3 rotation   theta ~ U(-rotation, rotation) degrees;  4 shear ~ U(-shear, shear) degrees (Keras's convention)
//  5,6 zoom     zx, zy ~ U(zoom_lo, zoom_hi) independently
//    geometry:  one 2x3 matrix, Keras's composition (microcnn/augment.py compose_matrices) with the dihedral
//               element in place of the flips, warped bilinearly with fill_mode (the affine_warp above)
// Blur, gamma and noise apply to half of the images each: draw 12 (blur), 13 (gamma), 14 (noise) < 1/2, else
// the parameter is the identity (sigma 0, g 1, s 0).
//  7 blur       sigma ~ U(0, blur): separable Gaussian, radius int(3 sigma + 0.5), reflect edges
//               (= scipy.ndimage.gaussian_filter(truncate=3, mode="reflect")); skipped when the radius is 0
//  8 gamma      g = exp(U(-gamma, gamma)): v -> v^g for v > 0, other values unchanged
//  9 contrast   k ~ U(1 - contrast, 1 + contrast): v -> mean_c + k (v - mean_c), mean_c per channel (computed
//               as k v + (1 - k) mean_c)
// 10 brightness b ~ U(-brightness, brightness): v -> v + b
// 11 noise      s ~ U(0, noise): v -> v + s z, z standard normal per value
struct AugmentConfig {
  bool horizontal_flip = false, vertical_flip = false, dihedral = false;
  double rotation = 0, shear = 0, zoom_lo = 1, zoom_hi = 1;
  FillMode fill_mode = FillMode::Nearest;
  float cval = 0;
  double blur = 0, gamma = 0, contrast = 0, brightness = 0, noise = 0;
};
constexpr int kAugmentParams = 12;
constexpr uint64_t kNoiseStream = uint64_t(1) << 32;

uint64_t augment_sample_key(uint64_t seed, int64_t epoch, int64_t index);

// indices (N) -> params (N,12) float64, matrices (N,2,3): the draws above for images of size H x W.
void augment_params(double* params, float* matrices, uint64_t seed, int64_t epoch, const int64_t* indices,
                    int64_t N, int64_t H, int64_t W, const AugmentConfig& config);

// x (N,H,W,C), indices (N) -> y (N,H,W,C): the whole pipeline above, sample n drawing from its own stream.
void augment_batch(float* y, const float* x, uint64_t seed, int64_t epoch, const int64_t* indices, int64_t N,
                   int64_t H, int64_t W, int64_t C, const AugmentConfig& config);

}  // namespace microcnn
