"""The bf16 training kernels against float64 NumPy on bf16-rounded operands, for every kernel ISA this CPU runs
(the AVX512_BF16 kernel only where the CPU has it) and 1 and 2 threads.

Tolerance: every product of two bf16 values is exact in float32, so a kernel and the reference differ only by
the float32 rounding of the sums: at most about n * 2^-24 * sum(|a_i b_i|) for n terms. The tests allow
n * 2^-23 * sum(|a_i b_i|) (twice that) elementwise, and check that the float32 result of unrounded operands
is at least 10x further from the reference than the kernel's (so the operands were rounded).
"""

import numpy as np
import pytest
import reference_numpy as ref
from _helpers import rand_from

from microcnn import _core

RNG = np.random.default_rng(11)
rand = rand_from(RNG)


def bf16(a):
    """float32 -> bf16 (nearest, ties to even; NaN stays NaN) as float64: the rounding vcvtne2ps2bf16 does."""
    bits = np.asarray(a, np.float32).view(np.uint32).astype(np.uint64)
    rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000).astype(np.uint32)
    nan = np.isnan(np.asarray(a, np.float32))
    rounded[nan] = ((bits[nan] | 0x400000) & 0xFFFF0000).astype(np.uint32)
    return rounded.view(np.float32).astype(np.float64)


def assert_sums_close(got, want, bound_terms, n_terms, unrounded):
    """|got - want| <= n * 2^-23 * (sum of |products|) + tiny; the float32 result of unrounded operands is
    at least 10x further from want."""
    bound = n_terms * 2.0**-23 * bound_terms + 1e-30
    err = np.abs(np.asarray(got, np.float64) - want)
    assert np.all(err <= bound), f"max error {err.max():.3g}, bound there {bound.flat[np.argmax(err / bound)]:.3g}"
    assert np.max(np.abs(np.asarray(unrounded, np.float64) - want)) > 10 * err.max()


def test_round_bf16_is_nearest_even():
    special = np.array([1.0, 1.00390625, 1.005859375, 1.0078125 + 2**-8, -2.5e-39, 3.4e38, 3.39e38, np.inf, -np.inf,
                        np.nan, 0.0, -0.0, 1e-45], np.float32)
    values = np.concatenate([special, rand(5000, scale=100.0), rand(5000, scale=1e-30)])
    got = _core.round_bf16(values)
    assert got.dtype == np.float32 and got.shape == values.shape
    np.testing.assert_array_equal(got, bf16(values).astype(np.float32))  # NaN where NaN
    assert np.all(got.view(np.uint32) & 0xFFFF == 0)
    assert got[1] == 1.0 and got[2] == 1.0078125  # a tie goes to even, above it up
    assert got[5] == np.inf and got[7] == np.inf and np.isnan(got[9])  # past the largest bf16: infinity


def test_pack_transposed_equals_pack_of_transpose():
    for k, m in ((5, 3), (70, 33), (33, 70), (1, 1)):
        w = rand(k, m)
        assert np.array_equal(_core.pack_bf16_transposed(w), _core.pack_bf16(np.ascontiguousarray(w.T)))


# (N, H, W, C, K, R, S, stride_h, stride_w, padding)
CONV_CASES = [
    (2, 14, 14, 1, 32, 3, 3, 1, 1, "same"),  # the seed net's first conv on Fashion-MNIST
    (2, 7, 7, 32, 64, 2, 2, 1, 1, "same"),  # its second: even kernel, pads bottom/right
    (3, 11, 9, 5, 40, 3, 3, 2, 2, "same"),  # strided, odd R*S*C
    (1, 9, 13, 7, 13, 4, 2, 1, 3, "valid"),
    (2, 20, 20, 3, 70, 3, 3, 1, 1, "valid"),  # more than one 64-pixel block per sample, K past two panels
]


@pytest.mark.parametrize("case", CONV_CASES, ids=str)
def test_conv2d_bf16_matches_rounded_reference(case, isa, threads):
    n, h, w, c, k, r, s, sh, sw, padding = case
    kw = {"stride_h": sh, "stride_w": sw, "padding": padding}
    x, wt, b = rand(n, h, w, c), rand(r, s, c, k, scale=(r * s * c) ** -0.5), rand(k)
    xb, wb = bf16(x), bf16(wt)
    taps = r * s * c
    y_abs = ref.conv2d_forward(np.abs(xb), np.abs(wb), np.abs(b), **kw)
    for relu in (False, True):
        got = _core.conv2d_forward_bf16(x, wt, b, relu=relu, **kw)
        want = ref.conv2d_forward(xb, wb, b, relu=relu, **kw)
        assert_sums_close(got, want, y_abs, taps + 1, _core.conv2d_forward(x, wt, b, relu=relu, **kw))
    dy = rand(*got.shape)
    dyb = bf16(dy)
    dx, dw, db = _core.conv2d_backward_bf16(dy, x, wt, **kw)
    dx_want, dw_want, _ = ref.conv2d_backward(dyb, xb, wb, **kw)
    dx_abs, dw_abs, _ = ref.conv2d_backward(np.abs(dyb), np.abs(xb), np.abs(wb), **kw)
    dx32, dw32, _ = _core.conv2d_backward(dy, x, wt, **kw)
    assert_sums_close(dx, dx_want, dx_abs, r * s * k, dx32)
    assert_sums_close(dw, dw_want, dw_abs, n * got.shape[1] * got.shape[2], dw32)
    np.testing.assert_allclose(db, dy.astype(np.float64).sum(axis=(0, 1, 2)), rtol=1e-5, atol=1e-4)
    dx_none, dw_only, db_none = _core.conv2d_backward_bf16(dy, x, wt, need_dx=False, need_db=False, **kw)
    assert dx_none is None and db_none is None
    np.testing.assert_array_equal(dw_only, dw)


def test_conv2d_bf16_bad_arguments():
    x, w = rand(1, 5, 5, 2), rand(3, 3, 2, 4)
    with pytest.raises(ValueError, match="in-channels"):
        _core.conv2d_forward_bf16(x, rand(3, 3, 3, 4), None)
    with pytest.raises(ValueError, match="dy: expected shape"):
        _core.conv2d_backward_bf16(rand(1, 4, 4, 4), x, w)
    with pytest.raises(TypeError, match="dtype float32"):
        _core.round_bf16(np.zeros(3))


@pytest.mark.parametrize("n,k,m", [(32, 700, 96), (7, 301, 33), (1, 65, 40)])
def test_dense_bf16_products_match_rounded_reference(n, k, m, isa, threads):
    """The dense training products (_bf16_train.DenseStep): forward and backward-data on packed bf16 weights,
    backward-weights on the rounded factors through the float32 kernel."""
    x, w, dy = rand(n, k), rand(k, m, scale=k**-0.5), rand(n, m)
    xb, wb, dyb = bf16(x), bf16(w), bf16(dy)
    y = _core.dense_forward_bf16(_core.round_bf16(x), _core.pack_bf16(w), None, m)
    assert_sums_close(y, xb @ wb, np.abs(xb) @ np.abs(wb), k, x @ w)
    dx = _core.dense_forward_bf16(_core.round_bf16(dy), _core.pack_bf16_transposed(w), None, k)
    assert_sums_close(dx, dyb @ wb.T, np.abs(dyb) @ np.abs(wb).T, m, dy @ w.T)
    _, dw, _ = _core.dense_backward(_core.round_bf16(dy), _core.round_bf16(x), w, need_dx=False, need_db=False)
    assert_sums_close(dw, xb.T @ dyb, np.abs(xb).T @ np.abs(dyb), n + 1, x.T @ dy)
