"""affine_warp against a NumPy bilinear reference and Pillow; ImageAugmenter's transforms and seeding."""

import math

import numpy as np
import pytest
from PIL import Image

from microcnn import _core
from microcnn.augment import ImageAugmenter, compose_matrices


def resolve(i, n, mode):
    """Neighbour index along one axis (or -1 for 'constant' outside), written independently of the kernel."""
    if mode == "nearest":
        return np.clip(i, 0, n - 1)
    if mode == "constant":
        return np.where((i >= 0) & (i < n), i, -1)
    # Half-sample symmetric reflection (d c b a | a b c d | d c b a) repeats with period 2n.
    k = np.mod(i, 2 * n)
    return np.where(k < n, k, 2 * n - 1 - k)


def warp_reference(x, matrices, mode="nearest", cval=0.0):
    n, h, w, _ = x.shape
    y = np.zeros_like(x, dtype=np.float64)
    r, cc = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    for k in range(n):
        a = matrices[k].astype(np.float64)
        sr = a[0, 0] * r + a[0, 1] * cc + a[0, 2]
        sc = a[1, 0] * r + a[1, 1] * cc + a[1, 2]
        i0, j0 = np.floor(sr).astype(np.int64), np.floor(sc).astype(np.int64)
        fr, fc = sr - i0, sc - j0
        acc = 0.0
        for di, dj, wgt in ((0, 0, (1 - fr) * (1 - fc)), (0, 1, (1 - fr) * fc), (1, 0, fr * (1 - fc)),
                            (1, 1, fr * fc)):
            ii, jj = resolve(i0 + di, h, mode), resolve(j0 + dj, w, mode)
            outside = (ii < 0) | (jj < 0)
            vals = x[k][np.maximum(ii, 0), np.maximum(jj, 0)].astype(np.float64)
            vals[outside] = cval
            acc = acc + wgt[..., None] * vals
        y[k] = acc
    return y.astype(np.float32)


def random_batch(rng, n=3, h=9, w=11, c=2):
    return rng.standard_normal((n, h, w, c)).astype(np.float32)


def random_matrices(rng, n, h, w, scale=0.3):
    m = np.zeros((n, 2, 3), np.float32)
    m[:, 0, 0] = 1 + rng.uniform(-scale, scale, n)
    m[:, 1, 1] = 1 + rng.uniform(-scale, scale, n)
    m[:, 0, 1] = rng.uniform(-scale, scale, n)
    m[:, 1, 0] = rng.uniform(-scale, scale, n)
    m[:, 0, 2] = rng.uniform(-3, 3, n)
    m[:, 1, 2] = rng.uniform(-3, 3, n)
    return m


@pytest.mark.parametrize("mode", ["nearest", "constant", "reflect"])
def test_matches_numpy_reference(mode):
    rng = np.random.default_rng(0)
    x = random_batch(rng)
    m = random_matrices(rng, 3, 9, 11)
    got = _core.affine_warp(x, m, mode, 0.7)
    np.testing.assert_allclose(got, warp_reference(x, m, mode, 0.7), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("mode", ["nearest", "constant", "reflect"])
def test_far_outside_samples(mode):
    rng = np.random.default_rng(1)
    x = random_batch(rng, n=2, h=4, w=5, c=1)
    m = np.array([[[3, 0.5, -40.25], [0.2, -2, 33.5]], [[0, 0, 1e7], [0, 0, -1e7]]], np.float32)
    got = _core.affine_warp(x, m, mode, -1.5)
    np.testing.assert_allclose(got, warp_reference(x, m, mode, -1.5), rtol=1e-5, atol=1e-4)


def test_identity_is_exact():
    rng = np.random.default_rng(2)
    x = random_batch(rng, n=4, h=7, w=6, c=3)
    m = np.tile(np.array([[1, 0, 0], [0, 1, 0]], np.float32), (4, 1, 1))
    for mode in ("nearest", "constant", "reflect"):
        np.testing.assert_array_equal(_core.affine_warp(x, m, mode), x)


def test_horizontal_and_vertical_flip_exact():
    rng = np.random.default_rng(3)
    x = random_batch(rng, n=2, h=5, w=8, c=3)
    zeros = np.zeros(2)
    ones = np.ones(2)
    hflip = compose_matrices(5, 8, zeros, zeros, zeros, zeros, ones, ones, np.array([True, False]),
                             np.array([False, False]))
    got = _core.affine_warp(x, hflip)
    np.testing.assert_array_equal(got[0], x[0, :, ::-1])
    np.testing.assert_array_equal(got[1], x[1])
    vflip = compose_matrices(5, 8, zeros, zeros, zeros, zeros, ones, ones, np.array([False, False]),
                             np.array([True, True]))
    np.testing.assert_array_equal(_core.affine_warp(x, vflip), x[:, ::-1])


def test_matches_pillow_on_interior_pixels():
    rng = np.random.default_rng(4)
    h, w = 32, 40
    img = rng.uniform(0, 1, (h, w)).astype(np.float32)
    a = np.array([[0.9, 0.12, 1.3], [-0.08, 1.1, -0.7]], np.float32)
    got = _core.affine_warp(img[None, :, :, None], a[None])[0, :, :, 0]
    # Pillow maps output (x, y) in continuous coordinates (pixel centres at +0.5) to input
    # (a x + b y + c, d x + e y + f); convert the index-space (row, col) matrix to that.
    a00, a01, a02 = (float(v) for v in a[0])
    a10, a11, a12 = (float(v) for v in a[1])
    data = (a11, a10, a12 + 0.5 - 0.5 * (a10 + a11), a01, a00, a02 + 0.5 - 0.5 * (a00 + a01))
    ref = np.asarray(Image.fromarray(img, mode="F").transform((w, h), Image.Transform.AFFINE, data,
                                                               Image.Resampling.BILINEAR))
    r, c = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    sr = a00 * r + a01 * c + a02
    sc = a10 * r + a11 * c + a12
    interior = (sr >= 1) & (sr <= h - 2) & (sc >= 1) & (sc <= w - 2)
    assert interior.sum() > 0.6 * h * w
    np.testing.assert_allclose(got[interior], ref[interior], atol=1e-4)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"x": np.zeros((2, 3, 3), np.float32)}, ValueError, "x: expected a 4-D"),
        ({"x": np.zeros((1, 3, 3, 1), np.float64)}, TypeError, "x: expected dtype float32"),
        ({"x": np.zeros((0, 3, 3, 1), np.float32), "matrices": np.zeros((0, 2, 3), np.float32)},
         ValueError, "non-empty"),
        ({"matrices": np.zeros((2, 2, 3), np.float32)}, ValueError, r"matrices: expected shape\[0\] == 1"),
        ({"matrices": np.zeros((1, 3, 3), np.float32)}, ValueError, r"matrices: expected shape\[1\] == 2"),
        ({"matrices": np.full((1, 2, 3), np.nan, np.float32)}, ValueError, "matrices: expected finite"),
        ({"fill_mode": "wrap"}, ValueError, "fill_mode"),
        ({"x": np.zeros((1, 4, 6, 1), np.float32)[:, :, ::2]}, ValueError, "C-contiguous"),
        ({"x": [[[[0.0]]]]}, TypeError, "x: expected a numpy array"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    args = {"x": np.zeros((1, 3, 3, 1), np.float32), "matrices": np.zeros((1, 2, 3), np.float32)}
    args.update(kwargs)
    with pytest.raises(error, match=match):
        _core.affine_warp(**args)


def test_augmenter_is_deterministic_given_seed():
    x = np.random.default_rng(5).uniform(0, 1, (6, 12, 12, 1)).astype(np.float32)
    a = ImageAugmenter(seed=42)
    b = ImageAugmenter(seed=42)
    first = a(x)
    np.testing.assert_array_equal(first, b(x))
    np.testing.assert_array_equal(a(x), b(x))
    assert not np.array_equal(first, ImageAugmenter(seed=43)(x))
    state = a.get_state()
    nxt = a(x)
    a.set_state(state)
    np.testing.assert_array_equal(a(x), nxt)


def test_augmenter_matrices_follow_keras_semantics():
    # Keras: shear in degrees, independent zx (columns) and zy (rows), about the centre, flip afterwards.
    aug = ImageAugmenter(shear_range=20, zoom_range=0.3, horizontal_flip=True, seed=7)
    h, w = 10, 10
    m = aug.random_matrices(500, h, w).astype(np.float64)
    rng = np.random.default_rng(7)
    rng.uniform(0, 0, 500), rng.uniform(0, 0, 500), rng.uniform(0, 0, 500)  # rotation, shifts
    shear = np.deg2rad(rng.uniform(-20, 20, 500))
    zoom = rng.uniform(0.7, 1.3, (500, 2))
    flip = rng.random(500) < 0.5
    sign = np.where(flip, -1.0, 1.0)
    np.testing.assert_allclose(m[:, 0, 0], np.cos(shear) * zoom[:, 1], rtol=1e-6)
    np.testing.assert_allclose(m[:, 0, 1], 0, atol=1e-7)
    np.testing.assert_allclose(m[:, 1, 0], -np.sin(shear) * zoom[:, 1], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(m[:, 1, 1], sign * zoom[:, 0], rtol=1e-6)
    # The centre maps to itself.
    centre = np.array([(h - 1) / 2, (w - 1) / 2, 1.0])
    np.testing.assert_allclose(m @ centre, np.tile(centre[:2], (500, 1)), atol=1e-5)
    assert abs(np.rad2deg(np.abs(shear)).max() - 20) < 0.5 and flip.any() and not flip.all()


def test_default_shear_is_a_fraction_of_a_degree():
    m = ImageAugmenter(zoom_range=0.0, horizontal_flip=False, seed=0).random_matrices(1000, 8, 8)
    angles = np.degrees(np.arctan2(-m[:, 1, 0], m[:, 0, 0]))
    assert np.abs(angles).max() <= 0.2 + 1e-6 and np.abs(angles).max() > 0.15


def test_identity_augmenter_returns_input():
    x = np.random.default_rng(6).uniform(size=(2, 5, 5, 3)).astype(np.float32)
    aug = ImageAugmenter(shear_range=0, zoom_range=0, horizontal_flip=False, seed=1)
    np.testing.assert_array_equal(aug(x), x)


@pytest.mark.parametrize(
    "kwargs, match",
    [({"shear_range": -1}, "shear_range"), ({"zoom_range": 1.5}, "zoom_range"),
     ({"zoom_range": (1.2, 0.8)}, "zoom_range"), ({"fill_mode": "wrap"}, "fill_mode"),
     ({"rotation_range": math.inf}, "rotation_range")],
)
def test_augmenter_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ImageAugmenter(**kwargs)
    with pytest.raises(TypeError, match="horizontal_flip"):
        ImageAugmenter(horizontal_flip="yes")


def keras_sampling_matrix(h, w, shear_deg, zx, zy):
    """Keras 2's apply_affine_transform, step by step: shear @ zoom in its (x, y) coordinates, offset to the
    centre with (h, w), then the axis swap M' = P M P before scipy.ndimage.affine_transform."""
    shear = np.deg2rad(shear_deg)
    shear_matrix = np.array([[1, -np.sin(shear), 0], [0, np.cos(shear), 0], [0, 0, 1]])
    zoom_matrix = np.array([[zx, 0, 0], [0, zy, 0], [0, 0, 1]])
    m = shear_matrix @ zoom_matrix
    o_x, o_y = h / 2 - 0.5, w / 2 - 0.5
    m = np.array([[1, 0, o_x], [0, 1, o_y], [0, 0, 1]]) @ m @ np.array([[1, 0, -o_x], [0, 1, -o_y], [0, 0, 1]])
    m[:, [0, 1]] = m[:, [1, 0]]
    m[[0, 1]] = m[[1, 0]]
    return m[:2]  # scipy: input (row, col) = m[:, :2] @ output (row, col) + m[:, 2]


def test_matrices_equal_keras_for_square_images():
    rng = np.random.default_rng(8)
    n, size = 20, 150
    shear = rng.uniform(-30, 30, n)
    zx, zy = rng.uniform(0.8, 1.2, n), rng.uniform(0.8, 1.2, n)
    zeros, no = np.zeros(n), np.zeros(n, bool)
    ours = compose_matrices(size, size, zeros, zeros, zeros, np.deg2rad(shear), zx, zy, no, no)
    for k in range(n):
        np.testing.assert_allclose(ours[k], keras_sampling_matrix(size, size, shear[k], zx[k], zy[k]), atol=2e-4)


@pytest.mark.parametrize("ours, scipy_mode", [("nearest", "nearest"), ("reflect", "reflect"),
                                              ("constant", "grid-constant")])
def test_fill_modes_match_scipy(ours, scipy_mode):
    # Keras's ImageDataGenerator warps with scipy.ndimage.affine_transform(order=1).
    ndimage = pytest.importorskip("scipy.ndimage")
    rng = np.random.default_rng(9)
    img = rng.uniform(0, 1, (12, 15)).astype(np.float32)
    m = random_matrices(rng, 1, 12, 15, scale=0.4)[0]
    ref = ndimage.affine_transform(img.astype(np.float64), m[:, :2].astype(np.float64), m[:, 2].astype(np.float64),
                                   order=1, mode=scipy_mode, cval=0.25)
    got = _core.affine_warp(img[None, :, :, None], m[None], ours, 0.25)[0, :, :, 0]
    np.testing.assert_allclose(got, ref, atol=1e-5)
