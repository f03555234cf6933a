"""The direct convolution kernels (layers with few input channels, C <= 4 and stride_w * C <= 8: an image
network's first layer) against the naive C++ reference and the NumPy reference, for every SIMD path this CPU
runs and with 1 and 2 threads. The shapes walk the kernels' edges: pixel tiles cut by the end of a row, rows
narrower than one tile, output channels that are not a whole number of vectors or need several blocks, kernel
rows with more taps than one backward tile, strides, both paddings and even kernels."""

import functools

import numpy as np
import pytest
import reference_numpy as ref

from microcnn import _core

RNG = np.random.default_rng(1128)

# (N, H, W, C, K, R, S, stride_h, stride_w, padding)
DIRECT_CASES = [
    (2, 17, 31, 3, 32, 3, 3, 1, 1, "same"),  # the seed net's first conv, 31 columns: whole tiles and a rest
    (1, 9, 3, 1, 7, 3, 3, 1, 1, "same"),  # gray; a row narrower than a tile; K less than one vector
    (2, 12, 15, 4, 40, 4, 4, 1, 1, "same"),  # even kernel pads bottom/right; 16 taps a kernel row; K = 32 + 8
    (1, 11, 13, 2, 17, 2, 2, 1, 1, "same"),
    (2, 10, 19, 3, 70, 5, 5, 2, 2, "same"),  # pixel step 6; 15 taps a kernel row; K = 32 + 32 + 6
    (1, 13, 29, 1, 33, 7, 7, 1, 3, "valid"),  # pixel step 3; K = 32 + 1
    (3, 8, 9, 4, 16, 3, 3, 2, 2, "valid"),  # pixel step 8; K exactly one AVX-512 vector
    (1, 6, 40, 2, 64, 1, 5, 3, 4, "same"),  # pixel step 8; stride larger than the kernel
]


def rand(*shape, scale=1.0):
    return (RNG.standard_normal(shape) * scale).astype(np.float32)


def assert_close(got, want, rtol=1e-4):
    want = np.asarray(want, np.float64)
    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * max(1.0, float(np.abs(want).max())))


def case_arrays(case):
    n, h, w, c, k, r, s, sh, sw, padding = case
    x, wt, b = rand(n, h, w, c), rand(r, s, c, k, scale=(r * s * c) ** -0.5), rand(k)
    p, q = ref.conv_output_size(h, r, sh, padding), ref.conv_output_size(w, s, sw, padding)
    return x, wt, b, rand(n, p, q, k), {"stride_h": sh, "stride_w": sw, "padding": padding}


@pytest.mark.parametrize("case", DIRECT_CASES, ids=str)
def test_direct_conv2d_forward(case, isa, threads):
    x, wt, b, _, kw = case_arrays(case)
    for bias in (b, None):
        for relu in (False, True):
            y = _core.conv2d_forward(x, wt, bias, relu=relu, **kw)
            assert_close(y, _core.reference.conv2d_forward(x, wt, bias, relu=relu, **kw))
            assert_close(y, ref.conv2d_forward(x, wt, bias, relu=relu, **kw))


@pytest.mark.parametrize("case", DIRECT_CASES, ids=str)
def test_direct_conv2d_backward_weights(case, isa, threads):
    x, wt, _, dy, kw = case_arrays(case)
    got = _core.conv2d_backward(dy, x, wt, **kw)
    naive = _core.reference.conv2d_backward(dy, x, wt, **kw)
    numpy_ref = ref.conv2d_backward(dy, x, wt, **kw)
    for name, g, want, want64 in zip(("dx", "dw", "db"), got, naive, numpy_ref):
        assert g.shape == want.shape, name
        assert_close(g, want)
        assert_close(g, want64)
    none_dx, dw_only, none_db = _core.conv2d_backward(dy, x, wt, need_dx=False, need_db=False, **kw)
    assert none_dx is None and none_db is None
    # The partial sums are reduced in a fixed order: the same call gives the same bits.
    np.testing.assert_array_equal(dw_only, got[1])


@functools.lru_cache(maxsize=1)
def large_case():
    # Output 2*129*129*129 floats = 17 MB: above the size from which rows are written with streaming stores;
    # K = 129 puts the rows at every alignment.
    x, wt, b = rand(2, 129, 129, 3), rand(3, 3, 3, 129, scale=27**-0.5), rand(129)
    return x, wt, b, _core.reference.conv2d_forward(x, wt, b, padding="same", relu=True)


def test_direct_conv2d_forward_large_output(isa):
    x, wt, b, want = large_case()
    assert_close(_core.conv2d_forward(x, wt, b, padding="same", relu=True), want)
