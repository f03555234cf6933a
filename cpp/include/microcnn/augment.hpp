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

}  // namespace microcnn
