"""The GEMM-based conv and dense kernels against the naive C++ references on shapes large enough to take
every GEMM path (thread splits over M, N and K; several register tiles and cache blocks), for every
micro-kernel this CPU runs and with 1 and 2 threads."""

import numpy as np
import pytest
from _helpers import assert_close, rand_from

from microcnn import _core

RNG = np.random.default_rng(7)
rand = rand_from(RNG)

# (N, H, W, C, K, R, S, stride_h, stride_w, padding)
CONV_CASES = [
    (2, 30, 30, 3, 32, 3, 3, 1, 1, "same"),  # the seed net's first conv, smaller image
    (2, 24, 24, 32, 64, 2, 2, 1, 1, "same"),  # the seed net's second conv: even kernel, pads bottom/right
    (3, 21, 19, 5, 40, 3, 3, 2, 2, "same"),  # strided: backward-data skips taps that do not divide
    (2, 17, 23, 7, 13, 4, 2, 1, 3, "valid"),
    # stride 1 with C a whole number of register tiles: backward-data reads dy in place, tiles of one dx row
    # (a short last tile, border tiles gathered with zeros, kernel rows skipped at the top and bottom)
    (2, 13, 29, 32, 24, 3, 3, 1, 1, "same"),
    (1, 9, 5, 64, 20, 4, 4, 1, 1, "same"),  # narrower than a tile; even kernel padded 1 before, 2 after
    (2, 7, 40, 16, 9, 2, 5, 1, 1, "valid"),  # C = 16: one AVX2 tile (AVX-512 takes the GEMM)
    (1, 6, 26, 32, 70, 1, 3, 1, 1, "valid"),
]
# (N, K, M). A batch of up to 64 reads the weights in place: forward as the GEMM's B operand, backward-data
# as its A operand with dx stored transposed; odd sizes leave packed edge panels, (70, ...) packs everything,
# (8, 40, 20000) splits the backward-data reduction over threads and the forward over column blocks.
DENSE_CASES = [
    (32, 5000, 96), (7, 3001, 33), (1, 2049, 40), (64, 700, 256), (33, 1500, 17), (70, 900, 50), (8, 40, 20000),
]




@pytest.mark.parametrize("case", CONV_CASES, ids=str)
def test_conv2d_matches_reference(case, isa, threads):
    n, h, w, c, k, r, s, sh, sw, padding = case
    kw = {"stride_h": sh, "stride_w": sw, "padding": padding}
    x, wt, b = rand(n, h, w, c), rand(r, s, c, k, scale=(r * s * c) ** -0.5), rand(k)
    for relu in (False, True):
        y = _core.conv2d_forward(x, wt, b, relu=relu, **kw)
        assert_close(y, _core.reference.conv2d_forward(x, wt, b, relu=relu, **kw))
    dy = rand(*y.shape)
    got = _core.conv2d_backward(dy, x, wt, **kw)
    want = _core.reference.conv2d_backward(dy, x, wt, **kw)
    for name, g, ref in zip(("dx", "dw", "db"), got, want):
        assert g.shape == ref.shape, name
        assert_close(g, ref)
    _, dw_only, _ = _core.conv2d_backward(dy, x, wt, need_dx=False, need_db=False, **kw)
    assert_close(dw_only, want[1])


@pytest.mark.parametrize("case", DENSE_CASES, ids=str)
def test_dense_matches_reference(case, isa, threads):
    n, k, m = case
    x, w, b, dy = rand(n, k), rand(k, m, scale=k**-0.5), rand(m), rand(n, m)
    for relu in (False, True):
        assert_close(
            _core.dense_forward(x, w, b, relu=relu), _core.reference.dense_forward(x, w, b, relu=relu)
        )
    for g, ref in zip(_core.dense_backward(dy, x, w), _core.reference.dense_backward(dy, x, w)):
        assert_close(g, ref)


def test_conv2d_relu_keeps_nan_like_the_reference():
    x = rand(1, 6, 6, 2)
    x[0, 2, 3, 1] = np.nan
    w = rand(3, 3, 2, 4)
    y = _core.conv2d_forward(x, w, None, padding="same", relu=True)
    ref = _core.reference.conv2d_forward(x, w, None, padding="same", relu=True)
    np.testing.assert_array_equal(np.isnan(y), np.isnan(ref))
    assert np.isnan(y).sum() == 9 * 4


@pytest.mark.parametrize("shape", [(2, 8, 10, 32), (1, 9, 7, 5), (3, 6, 6, 17)], ids=str)
def test_maxpool_2x2_fast_path_ties_and_argmax(shape):
    import reference_numpy as ref

    x = RNG.integers(-2, 3, size=shape).astype(np.float32)  # many ties: the first maximum must win
    y, argmax = _core.maxpool2d_forward(x, 2, 2, 2, 2, "valid")
    ry, rargmax = ref.maxpool2d_forward(x, 2, 2, 2, 2, "valid")
    np.testing.assert_array_equal(y, ry.astype(np.float32))
    np.testing.assert_array_equal(argmax, rargmax)
