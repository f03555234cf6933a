"""Random geometric augmentation, composed per image in NumPy and applied per batch by the C++ kernel
`microcnn._core.affine_warp`.

The transforms and their parameters follow Keras's `ImageDataGenerator` so that a project ported from it
keeps its behaviour (https://keras.io/api/data_loading/image/ -- the legacy generator):

- `shear_range` is an angle in DEGREES, as in Keras: 0.2 shears by at most +-0.2 degrees, which moves a
  150-pixel image's corner by about a quarter of a pixel. (Keras's documentation calls it an angle
  "in counter-clockwise direction in degrees"; many users read 0.2 as 0.2 rad.) Pass e.g. 11.5 for
  +-0.2 rad.
- `zoom_range` z draws an independent zoom for x and for y from [1 - z, 1 + z]; a pair (lo, hi) is taken
  as is. Values above 1 zoom out (the image shrinks), as in Keras.
- `horizontal_flip` / `vertical_flip` flip with probability 1/2.
- `rotation_range` (degrees), `width_shift_range` / `height_shift_range` (fraction of the size).

All transforms are composed into one 2x3 matrix per image about the image centre ((H-1)/2, (W-1)/2), in
the order Keras composes them (rotation, shift, shear, zoom, then the flips of the result), and the batch
is warped in one call with bilinear interpolation and fill_mode "nearest". (Keras, through its axis swap,
centres the columns on (H-1)/2 and the rows on (W-1)/2; the two agree exactly for square images.)
"""

import numpy as np

from . import _core

_FILL_MODES = ("nearest", "constant", "reflect")


def _check_range(name, value, upper=None):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value) or value < 0:
        raise ValueError(f"{name}: expected a number >= 0, got {value!r}")
    if upper is not None and value >= upper:
        raise ValueError(f"{name}: expected a number < {upper}, got {value!r}")
    return float(value)


class ImageAugmenter:
    """Draws a random affine transform per image and warps whole NHWC float32 batches in C++.

    Reproducible: the same `seed` gives the same sequence of transforms (a NumPy `Generator`). The identity
    augmenter (all ranges 0, no flips) returns its input unchanged.
    """

    def __init__(self, shear_range=0.2, zoom_range=0.2, horizontal_flip=True, vertical_flip=False,
                 rotation_range=0.0, width_shift_range=0.0, height_shift_range=0.0, fill_mode="nearest",
                 cval=0.0, seed=None):
        self.shear_range = _check_range("shear_range", shear_range, upper=90)
        self.rotation_range = _check_range("rotation_range", rotation_range)
        self.width_shift_range = _check_range("width_shift_range", width_shift_range)
        self.height_shift_range = _check_range("height_shift_range", height_shift_range)
        if isinstance(zoom_range, (list, tuple)):
            if len(zoom_range) != 2:
                raise ValueError(f"zoom_range: expected a number or a pair (lo, hi), got {zoom_range!r}")
            lo, hi = (_check_range("zoom_range", float(z)) for z in zoom_range)
            if not 0 < lo <= hi:
                raise ValueError(f"zoom_range: expected 0 < lo <= hi, got {zoom_range!r}")
        else:
            z = _check_range("zoom_range", zoom_range, upper=1)
            lo, hi = 1.0 - z, 1.0 + z
        self.zoom_range = (lo, hi)
        for name, flag in (("horizontal_flip", horizontal_flip), ("vertical_flip", vertical_flip)):
            if not isinstance(flag, (bool, np.bool_)):
                raise TypeError(f"{name}: expected True or False, got {flag!r}")
        self.horizontal_flip = bool(horizontal_flip)
        self.vertical_flip = bool(vertical_flip)
        if fill_mode not in _FILL_MODES:
            raise ValueError(f"fill_mode: expected one of {', '.join(_FILL_MODES)}, got {fill_mode!r}")
        self.fill_mode = fill_mode
        self.cval = float(cval)
        self.seed = seed
        self.rng = np.random.default_rng(seed)

    def get_config(self):
        return {
            "shear_range": self.shear_range, "zoom_range": list(self.zoom_range),
            "horizontal_flip": self.horizontal_flip, "vertical_flip": self.vertical_flip,
            "rotation_range": self.rotation_range, "width_shift_range": self.width_shift_range,
            "height_shift_range": self.height_shift_range, "fill_mode": self.fill_mode, "cval": self.cval,
            "seed": self.seed,
        }

    @property
    def is_identity(self):
        return (self.shear_range == 0 and self.rotation_range == 0 and self.zoom_range == (1.0, 1.0)
                and self.width_shift_range == 0 and self.height_shift_range == 0
                and not self.horizontal_flip and not self.vertical_flip)

    def random_matrices(self, n, height, width):
        """(n, 2, 3) float32 matrices in the kernel's (row, col) convention, one random transform each."""
        rng = self.rng
        theta = np.deg2rad(rng.uniform(-self.rotation_range, self.rotation_range, n))
        ty = rng.uniform(-self.height_shift_range, self.height_shift_range, n) * height
        tx = rng.uniform(-self.width_shift_range, self.width_shift_range, n) * width
        shear = np.deg2rad(rng.uniform(-self.shear_range, self.shear_range, n))
        zoom = rng.uniform(self.zoom_range[0], self.zoom_range[1], (n, 2))  # columns: zx, zy (Keras order)
        flip_h = (rng.random(n) < 0.5) & self.horizontal_flip
        flip_v = (rng.random(n) < 0.5) & self.vertical_flip
        return compose_matrices(height, width, theta, tx, ty, shear, zoom[:, 0], zoom[:, 1], flip_h, flip_v)

    def __call__(self, x):
        """x (N,H,W,C) float32 -> a randomly transformed copy (N,H,W,C)."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        if x.ndim != 4:
            raise ValueError(f"x: expected an (N, H, W, C) batch, got shape {x.shape}")
        matrices = self.random_matrices(x.shape[0], x.shape[1], x.shape[2])
        if self.is_identity:
            return x.copy()
        return _core.affine_warp(x, matrices, self.fill_mode, self.cval)

    # Checkpointing: the generator's exact state, so a resumed run draws the same transforms.
    def get_state(self):
        return self.rng.bit_generator.state

    def set_state(self, state):
        self.rng.bit_generator.state = state


def compose_matrices(height, width, theta, tx, ty, shear, zx, zy, flip_h, flip_v):
    """Per-image 2x3 sampling matrices (output (r, c) -> input (row, col)) from per-image parameters.

    Keras builds M = rotation @ shift @ shear @ zoom in (x, y) = (col, row) coordinates, where shear
    [[1, -sin s], [0, cos s]] and zoom diag(zx, zy) act on (row, col) after its axis swap as
    row_in = cos(s) zy r, col_in = -sin(s) zy r + zx c (about the centre), then flips its output.
    """
    n = len(theta)
    cr, cc = (height - 1) / 2.0, (width - 1) / 2.0
    m = np.zeros((n, 3, 3))
    m[:, 2, 2] = 1.0
    # Keras's matrices in its (axis0, axis1) = (row, col) array coordinates after the swap P M P.
    cos_t, sin_t = np.cos(theta), np.sin(theta)
    rot = _stack([[cos_t, sin_t, 0], [-sin_t, cos_t, 0]], n)
    shift = _stack([[1, 0, ty], [0, 1, tx]], n)
    shear_m = _stack([[np.cos(shear), 0, 0], [-np.sin(shear), 1, 0]], n)
    zoom_m = _stack([[zy, 0, 0], [0, zx, 0]], n)
    m = rot @ shift @ shear_m @ zoom_m
    # Flips act on the output: output (r, c) reads the warped image at the mirrored position.
    flip = _stack([[np.where(flip_v, -1.0, 1.0), 0, 0], [0, np.where(flip_h, -1.0, 1.0), 0]], n)
    m = m @ flip
    centre = _stack([[1, 0, cr], [0, 1, cc]], n)
    uncentre = _stack([[1, 0, -cr], [0, 1, -cc]], n)
    m = centre @ m @ uncentre
    return np.ascontiguousarray(m[:, :2, :], dtype=np.float32)


def _stack(rows, n):
    """A batch (n, 3, 3) of homogeneous matrices from two rows of scalars or length-n arrays."""
    out = np.zeros((n, 3, 3))
    for i, row in enumerate(rows):
        for j, v in enumerate(row):
            out[:, i, j] = v
    out[:, 2, 2] = 1.0
    return out
