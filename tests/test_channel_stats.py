"""The open-set detector's per-layer channel statistics (_core.channel_stats, used by _ood_layers.channel_stats)
against float64 NumPy."""

import numpy as np
import pytest

from microcnn import _core
from microcnn._ood_layers import channel_stats


def reference(maps):
    flat = maps.astype(np.float64).reshape(len(maps), -1, maps.shape[-1])
    mean = flat.mean(axis=1)
    return np.concatenate([mean, np.sqrt(np.maximum((flat * flat).mean(axis=1) - mean * mean, 0.0))], axis=1)


@pytest.mark.parametrize("shape", [(3, 5, 7, 1), (2, 4, 4, 4), (1, 1, 1, 3), (32, 14, 14, 64), (5, 9, 2)])
def test_channel_stats_match_float64(shape, threads):
    maps = np.random.default_rng(len(shape) + shape[0]).standard_normal(shape).astype(np.float32) + 3.0
    got = channel_stats(maps)
    assert got.dtype == np.float32 and got.shape == (shape[0], 2 * shape[-1])
    np.testing.assert_allclose(got, reference(maps), rtol=1e-6, atol=1e-6)


def test_channel_stats_edge_values():
    const = np.full((2, 3, 3, 2), 7.25, np.float32)  # zero variance: exactly 0, never the root of a negative
    np.testing.assert_array_equal(channel_stats(const), np.tile([7.25, 7.25, 0.0, 0.0], (2, 1)).astype(np.float32))
    nan = np.ones((1, 2, 2, 2), np.float32)
    nan[0, 1, 1, 0] = np.nan
    got = channel_stats(nan)
    assert np.isnan(got[0, 0]) and np.isnan(got[0, 2]) and got[0, 1] == 1.0 and got[0, 3] == 0.0
    np.testing.assert_allclose(channel_stats(np.ones((2, 3, 3, 2), np.float64)), np.tile([1, 1, 0, 0], (2, 1)))
    with pytest.raises(ValueError, match="maps: expected"):
        _core.channel_stats(np.ones(4, np.float32))
