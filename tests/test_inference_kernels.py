"""Inference kernels: the fused conv+ReLU+pool without argmax against the training kernel and float64 NumPy, and
the bf16 kernels against float64 NumPy on bf16-rounded operands, on every SIMD path and 1 and 2 threads."""

import numpy as np
import pytest
import reference_numpy as ref
from _helpers import dense_operands

from microcnn import _core


def conv_relu_pool(x, w, b, stride, padding):
    """float64 NumPy: 2x2 max pool of max(0, conv + b)."""
    z = ref.conv2d_forward(x.astype(np.float64), w.astype(np.float64), b, stride, stride, padding, relu=True)
    return ref.maxpool2d_forward(z, 2, 2, 2, 2)[0]


def bf16_round(a):
    """float32 -> the nearest bf16 (ties to even), as float32."""
    bits = np.asarray(a, np.float32).view(np.uint32).astype(np.uint64)
    bits = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16 << 16
    return bits.astype(np.uint32).view(np.float32)


def bf16_bound(x, w):
    """|error| of a dot product of bf16-rounded operands with float32 accumulation: each rounding is within
    2^-9 relative (x and w: 2^-8 together), the float32 sum within K*2^-24 << that; x rounds only on
    AVX512_BF16, where the bound below is the one that applies."""
    return 2.0**-8 * (np.abs(x).astype(np.float64) @ np.abs(w).astype(np.float64)) + 1e-6


CONV_CASES = [  # N, H, W, C, K, R, S, stride, padding
    (2, 150 // 8, 150 // 8, 3, 32, 3, 3, 1, "same"),  # first layer (direct kernels)
    (2, 19, 19, 32, 64, 2, 2, 1, "same"),  # seed net's second layer, odd size: a row and column dropped
    (1, 16, 16, 32, 64, 2, 2, 1, "same"),  # batch 1
    (3, 13, 12, 8, 20, 3, 3, 1, "valid"),  # K not a multiple of a vector
    (2, 17, 17, 16, 24, 3, 3, 2, "same"),  # strided
]


@pytest.mark.parametrize("case", CONV_CASES)
def test_conv_relu_maxpool_infer_matches_training_kernel(case, isa, threads):
    n, h, w_, c, k, r, s, st, pad = case
    rng = np.random.default_rng(sum(case[:7]))
    x = rng.standard_normal((n, h, w_, c), dtype=np.float32)
    w = rng.standard_normal((r, s, c, k), dtype=np.float32) * np.float32(0.3)
    b = rng.standard_normal(k, dtype=np.float32)
    y = _core.conv2d_relu_maxpool_infer(x, w, b, st, st, pad)
    y_train, _ = _core.conv2d_relu_maxpool_forward(x, w, b, st, st, pad)
    np.testing.assert_array_equal(y, y_train)
    np.testing.assert_allclose(y, conv_relu_pool(x, w, b, st, pad), rtol=1e-5, atol=1e-5)


def test_conv_relu_maxpool_infer_without_bias_and_repeated_calls(threads):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 10, 10, 16), dtype=np.float32)
    w = rng.standard_normal((2, 2, 16, 32), dtype=np.float32)
    first = _core.conv2d_relu_maxpool_infer(x, w, None, 1, 1, "same")
    again = _core.conv2d_relu_maxpool_infer(x, w, None, 1, 1, "same")  # reuses the per-thread buffers
    np.testing.assert_array_equal(first, again)
    np.testing.assert_allclose(first, conv_relu_pool(x, w, None, 1, "same"), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("n,k,m", [(1, 87, 40), (5, 300, 256), (9, 1025, 33), (32, 64, 10), (4, 2, 1)])
@pytest.mark.parametrize("relu_", [False, True])
def test_dense_forward_bf16(n, k, m, relu_, isa, threads):
    x, w, b = dense_operands(n * k + m, n, k, m)
    packed = _core.pack_bf16(w)
    assert packed.dtype == np.uint16
    y = _core.dense_forward_bf16(x, packed, b, m, relu=relu_)
    wr = bf16_round(w).astype(np.float64)
    xr = x.astype(np.float64) if _core.bf16_kernel() != "avx512_bf16" else bf16_round(x).astype(np.float64)
    want = xr @ wr + b
    if relu_:
        want = np.maximum(want, 0)
    # the operands the kernel multiplies: only float32 summation error is left
    tight = 1e-5 * (np.abs(xr) @ np.abs(wr)) + 1e-6
    assert np.all(np.abs(y - want) <= tight)
    # against unrounded float32 weights: the bf16 rounding bound
    exact = x.astype(np.float64) @ w.astype(np.float64) + b
    if relu_:
        exact = np.maximum(exact, 0)
    assert np.all(np.abs(y - exact) <= bf16_bound(x, w))


@pytest.mark.parametrize("case", CONV_CASES[1:])
def test_conv_relu_maxpool_infer_bf16(case, isa, threads):
    n, h, w_, c, k, r, s, st, pad = case
    rng = np.random.default_rng(sum(case[:7]) + 1)
    x = rng.standard_normal((n, h, w_, c), dtype=np.float32)
    w = rng.standard_normal((r, s, c, k), dtype=np.float32) * np.float32(0.3)
    b = rng.standard_normal(k, dtype=np.float32)
    packed = _core.pack_bf16(w.reshape(-1, k))
    y = _core.conv2d_relu_maxpool_infer_bf16(x, packed, b, r, s, k, st, st, pad)
    xr = x if _core.bf16_kernel() != "avx512_bf16" else bf16_round(x)
    np.testing.assert_allclose(y, conv_relu_pool(xr, bf16_round(w), b, st, pad), rtol=1e-5, atol=1e-4)


def test_pack_bf16_rounds_to_nearest_even():
    w = np.array([[1.0, 1.0 + 2.0**-8, 1.0 + 3 * 2.0**-8, np.inf, -0.0, 3.0e38]], np.float32)
    packed = _core.pack_bf16(w)
    got = (packed[:64:2].astype(np.uint32) << 16).view(np.float32)[: w.shape[1]]
    np.testing.assert_array_equal(got, bf16_round(w[0]))
    assert got[1] == 1.0 and got[2] == 1.0 + 2.0**-6  # ties to even both ways


def test_bf16_bad_inputs():
    x = np.ones((2, 8), np.float32)
    with pytest.raises(ValueError, match=r"w: expected the packed bf16 weights of a \(8, 4\) matrix"):
        _core.dense_forward_bf16(x, np.zeros(10, np.uint16), None, 4)
    with pytest.raises(TypeError, match="w: expected dtype uint16"):
        _core.dense_forward_bf16(x, np.zeros(10, np.float32), None, 4)
    with pytest.raises(ValueError, match="b: expected shape"):
        _core.dense_forward_bf16(x, _core.pack_bf16(np.ones((8, 4), np.float32)), np.ones(3, np.float32), 4)
    with pytest.raises(ValueError, match="x: expected a conv output of at least 2x2"):
        _core.conv2d_relu_maxpool_infer(np.ones((1, 1, 1, 8), np.float32), np.ones((1, 1, 8, 4), np.float32), None)
    assert _core.bf16_kernel() in ("avx512_bf16", "avx2/fma", "generic")


@pytest.mark.parametrize("n,k,m", [(1, 20000, 256), (2, 333, 13), (3, 1000, 8), (4, 257, 70), (1, 5, 1)])
def test_dense_forward_few_rows(n, k, m, isa, threads):
    """A batch of 1-4 rows takes the row-streaming kernel (dense_rows.hpp) on x86: same contract."""
    x, w, b = dense_operands(k + m, n, k, m)
    want = x.astype(np.float64) @ w.astype(np.float64) + b
    scale = np.abs(x).astype(np.float64) @ np.abs(w).astype(np.float64)
    assert np.all(np.abs(_core.dense_forward(x, w, b) - want) <= 1e-5 * scale + 1e-6)
    assert np.all(np.abs(_core.dense_forward(x, w, None, relu=True) - np.maximum(want - b, 0)) <= 1e-5 * scale + 1e-6)
    np.testing.assert_array_equal(_core.dense_forward(x, w, b), _core.dense_forward(x, w, b))
