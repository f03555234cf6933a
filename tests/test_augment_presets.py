"""The C++ augmentation presets (`_core.augment_batch`, microcnn/augment_presets.py): every op against a NumPy /
SciPy reference computed from the drawn parameters, the random streams against a NumPy re-implementation,
and reproducibility (seed, per-sample streams, thread counts)."""

import numpy as np
import pytest

from microcnn import _core
from microcnn.augment import compose_matrices
from microcnn.augment_presets import PRESETS, Augmentation

ndimage = pytest.importorskip("scipy.ndimage", reason="the references use scipy.ndimage")

M64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def mix(z):
    """SplitMix64's finaliser on uint64 arrays (wrapping arithmetic), as cpp/src/augment_presets.cpp."""
    z = np.asarray(z, np.uint64) + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def sample_key(seed, epoch, index):
    return mix(mix(mix(np.array([seed], np.uint64)) ^ np.uint64(epoch)) ^ np.uint64(index))[0]


def draws(key, slots):
    return mix(np.full(len(slots), key, np.uint64) ^ (np.asarray(slots, np.uint64) * np.uint64(0xD1B54A32D192ED03)))


def image(n=3, h=11, w=11, c=2, seed=0):
    return np.random.default_rng(seed).random((n, h, w, c)).astype(np.float32)


def warp_reference(img, matrix, mode, cval=0.0):
    """scipy's order-1 interpolation at (row, col) = A @ (r, c, 1) for every output pixel."""
    h, w, _ = img.shape
    r, c = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    coords = np.stack([matrix[0, 0] * r + matrix[0, 1] * c + matrix[0, 2],
                       matrix[1, 0] * r + matrix[1, 1] * c + matrix[1, 2]]).astype(np.float64)
    scipy_mode = {"nearest": "nearest", "reflect": "reflect", "constant": "grid-constant"}[mode]
    return np.stack([ndimage.map_coordinates(img[..., k].astype(np.float64), coords, order=1, mode=scipy_mode,
                                             cval=cval) for k in range(img.shape[2])], axis=-1)


def test_parameters_follow_the_documented_streams():
    config = {"dihedral": True, "rotation": 10.0, "shear": 3.0, "zoom": [0.9, 1.3], "blur": 0.8, "gamma": 0.2,
              "contrast": 0.2, "brightness": 0.1, "noise": 0.03}
    idx = np.arange(40, dtype=np.int64) * 7919
    params, _ = _core.augment_params(42, 3, idx, 16, 16, config)
    for column, identity in ((7, 0.0), (8, 1.0), (11, 0.0)):  # each applied to about half of the images
        assert 8 <= np.sum(params[:, column] != identity) <= 32
    for n, i in enumerate(idx):
        u = (draws(sample_key(42, 3, i), range(15)) >> np.uint64(11)).astype(np.float64) * 2.0**-53
        expected = [np.floor(8 * u[0]), 0, 0, (2 * u[3] - 1) * 10, (2 * u[4] - 1) * 3, 0.9 + 0.4 * u[5],
                    0.9 + 0.4 * u[6], 0.8 * u[7] if u[12] < 0.5 else 0.0,
                    np.exp((2 * u[8] - 1) * 0.2) if u[13] < 0.5 else 1.0, 1 + (2 * u[9] - 1) * 0.2,
                    (2 * u[10] - 1) * 0.1, 0.03 * u[11] if u[14] < 0.5 else 0.0]
        np.testing.assert_allclose(params[n], expected, rtol=1e-12, atol=1e-15)


def test_matrices_match_keras_composition_without_dihedral():
    config = {"horizontal_flip": True, "vertical_flip": True, "rotation": 30.0, "shear": 10.0, "zoom": [0.8, 1.2]}
    params, mats = _core.augment_params(1, 0, np.arange(16, dtype=np.int64), 9, 13, config)
    assert set(params[:, 1]) == {0.0, 1.0} and set(params[:, 2]) == {0.0, 1.0}
    zero = np.zeros(16)
    expected = compose_matrices(9, 13, np.deg2rad(params[:, 3]), zero, zero, np.deg2rad(params[:, 4]), params[:, 5],
                                params[:, 6], params[:, 1] == 1, params[:, 2] == 1)
    np.testing.assert_allclose(mats, expected, atol=1e-5)


@pytest.mark.parametrize("mode", ["nearest", "reflect", "constant"])
def test_geometry_matches_scipy(mode):
    config = {"dihedral": True, "rotation": 25.0, "shear": 5.0, "zoom": [0.8, 1.25], "fill_mode": mode, "cval": 0.5}
    x = image(n=6, h=10, w=10)
    idx = np.arange(10, 16, dtype=np.int64)
    y = _core.augment_batch(x, 7, 1, idx, config)
    _, mats = _core.augment_params(7, 1, idx, 10, 10, config)
    for n in range(6):
        np.testing.assert_allclose(y[n], warp_reference(x[n], mats[n].astype(np.float64), mode, 0.5), atol=2e-5)


def test_dihedral_group_is_exact_and_complete():
    x = image(n=64, h=7, w=7, c=1)
    idx = np.arange(64, dtype=np.int64)
    y = _core.augment_batch(x, 3, 0, idx, {"dihedral": True})
    params, _ = _core.augment_params(3, 0, idx, 7, 7, {"dihedral": True})
    assert set(params[:, 0].astype(int)) == set(range(8))
    for n in range(64):
        d = int(params[n, 0])
        v = x[n][::-1] if d & 2 else x[n]
        v = v[:, ::-1] if d & 1 else v
        v = v.transpose(1, 0, 2) if d & 4 else v
        np.testing.assert_array_equal(y[n], v)  # integer sample positions: exact
    rect = _core.augment_params(3, 0, idx, 6, 9, {"dihedral": True})[0]
    assert set(rect[:, 0].astype(int)) == {0, 1, 2, 3}  # no transpose when H != W


def test_blur_matches_scipy_gaussian_filter():
    x = image(n=8, h=12, w=9, c=3)
    idx = np.arange(8, dtype=np.int64)
    y = _core.augment_batch(x, 5, 0, idx, {"blur": 2.0})
    params, _ = _core.augment_params(5, 0, idx, 12, 9, {"blur": 2.0})
    assert params[:, 7].max() > 1.0
    for n in range(8):
        ref = ndimage.gaussian_filter(x[n].astype(np.float64), sigma=(params[n, 7], params[n, 7], 0), mode="reflect",
                                      truncate=3.0)
        np.testing.assert_allclose(y[n], ref, atol=2e-6)


def test_intensity_ops_match_numpy():
    config = {"gamma": 0.5, "contrast": 0.4, "brightness": 0.2}
    x = image(n=8, h=5, w=6, c=2) * 1.5 - 0.2  # some values <= 0: gamma leaves them alone
    idx = np.arange(100, 108, dtype=np.int64)
    y = _core.augment_batch(x, 9, 4, idx, config)
    params, _ = _core.augment_params(9, 4, idx, 5, 6, config)
    assert 0 < np.count_nonzero(params[:, 8] != 1.0) < 8
    for n in range(8):
        g, k, b = params[n, 8:11]
        v = x[n].astype(np.float64)
        v = np.where(v > 0, np.abs(v) ** g, v)
        mean = v.mean(axis=(0, 1))
        ref = mean + k * (v - mean) + b
        np.testing.assert_allclose(y[n], ref, rtol=2e-6, atol=2e-6)


def test_noise_matches_the_documented_box_muller_stream():
    x = np.zeros((6, 5, 4, 3), np.float32)  # 60 values per image: 30 pairs
    idx = np.array([2, 9, 11, 12, 13, 14], np.int64)
    y = _core.augment_batch(x, 11, 2, idx, {"noise": 0.5})
    params, _ = _core.augment_params(11, 2, idx, 5, 4, {"noise": 0.5})
    assert 0 < np.count_nonzero(params[:, 11]) < 6
    for n, i in enumerate(idx):
        bits = draws(sample_key(11, 2, i), (1 << 32) + np.arange(30))
        u1 = (bits >> np.uint64(40)).astype(np.float64) * 2.0**-24
        u2 = ((bits >> np.uint64(8)) & np.uint64(0xFFFFFF)).astype(np.float64) * 2.0**-24
        r = np.sqrt(-2 * np.log(1 - u1))
        z = np.stack([r * np.cos(2 * np.pi * u2), r * np.sin(2 * np.pi * u2)], axis=1).reshape(-1)
        np.testing.assert_allclose(y[n].reshape(-1), params[n, 11] * z, rtol=1e-5, atol=1e-6)
    noisy = np.flatnonzero(_core.augment_params(0, 0, np.arange(8, dtype=np.int64), 1, 1, {"noise": 1.0})[0][:, 11])
    one = noisy[:1].astype(np.int64)
    big = _core.augment_batch(np.zeros((1, 200, 200, 1), np.float32), 0, 0, one, {"noise": 1.0})
    s = _core.augment_params(0, 0, one, 200, 200, {"noise": 1.0})[0][0, 11]
    assert abs(big.std() / s - 1) < 0.02 and abs(big.mean()) < 0.02 * s  # a standard normal, scaled


def test_reproducible_per_sample_and_thread_independent():
    x = image(n=6, h=16, w=16, c=3)
    aug = Augmentation("microscopy", seed=123)
    idx = np.array([4, 8, 15, 16, 23, 42], np.int64)
    before = _core.get_num_threads()
    try:
        _core.set_num_threads(1)
        one = aug(x, indices=idx, epoch=2)
        _core.set_num_threads(2)
        two = aug(x, indices=idx, epoch=2)
    finally:
        _core.set_num_threads(before)
    np.testing.assert_array_equal(one, two)
    # Sample 23's result does not depend on the rest of its batch (N processes reproduce 1 process).
    alone = aug(x[4:5], indices=idx[4:5], epoch=2)
    np.testing.assert_array_equal(alone[0], one[4])
    assert not np.array_equal(aug(x, indices=idx, epoch=3), one)  # a new epoch draws anew
    assert not np.array_equal(Augmentation("microscopy", seed=124)(x, indices=idx, epoch=2), one)
    # Without indices, samples are numbered across calls: reproducible for a seed and call sequence.
    a, b = Augmentation("microscopy", seed=5), Augmentation("microscopy", seed=5)
    np.testing.assert_array_equal(a(x[:3]), b(x[:3]))
    np.testing.assert_array_equal(a(x[3:]), b(x[3:]))


def test_seed_preset_is_keras_settings_and_none_is_identity():
    assert PRESETS["seed"] == {"shear": 0.2, "zoom": (0.8, 1.2), "horizontal_flip": True, "fill_mode": "nearest"}
    x = image(n=4)
    np.testing.assert_array_equal(Augmentation("none")(x), x)
    y = Augmentation("seed", seed=1)(x)
    assert y.shape == x.shape and not np.array_equal(y, x)


@pytest.mark.parametrize("kwargs,match", [
    ({"preset": "fancy"}, "preset: expected one of"),
    ({"rotaton": 3}, "rotaton: not an augmentation setting"),
    ({"rotation": -1.0}, "rotation"),
    ({"contrast": 1.5}, "contrast"),
    ({"zoom": (1.2, 0.8)}, "zoom"),
    ({"fill_mode": "wrap"}, "fill_mode"),
    ({"seed": -1}, "seed"),
])
def test_bad_settings_are_refused_by_name(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        Augmentation(**{"preset": "microscopy", **kwargs})


def test_binding_checks_arguments():
    x = image(n=2)
    with pytest.raises(ValueError, match="indices: expected 2 sample indices"):
        _core.augment_batch(x, 0, 0, np.arange(3, dtype=np.int64), {})
    with pytest.raises(TypeError, match="indices: expected dtype int64"):
        _core.augment_batch(x, 0, 0, np.arange(2, dtype=np.int32), {})
    with pytest.raises(ValueError, match='config: unknown key "blurr"'):
        _core.augment_batch(x, 0, 0, np.arange(2, dtype=np.int64), {"blurr": 1.0})
