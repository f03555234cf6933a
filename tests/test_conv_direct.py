"""The direct convolution kernels (layers with few input channels, C <= 4 and stride_w * C <= 8: an image
network's first layer) against the naive C++ reference and the NumPy reference, for every SIMD path this CPU
runs and with 1 and 2 threads. The shapes walk the kernels' edges: pixel tiles cut by the end of a row, rows
narrower than one tile, output channels that are not a whole number of vectors or need several blocks, kernel
rows with more taps than one backward tile, strides, both paddings and even kernels."""

import functools

import numpy as np
import pytest
import reference_numpy as ref
from _helpers import assert_close, rand_from

from microcnn import _core

RNG = np.random.default_rng(1128)
rand = rand_from(RNG)

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


# --- conv + ReLU + 2x2 max pool in one kernel ----------------------------------------------------------------
# (N, H, W, C, K, R, S, stride_h, stride_w, padding); conv outputs with odd sizes leave a row/column unpooled.
POOL_CASES = [
    (2, 17, 31, 3, 32, 3, 3, 1, 1, "same"),  # the seed net's first block, smaller image
    (1, 9, 8, 1, 7, 2, 2, 1, 1, "same"),  # gray, even kernel
    (2, 12, 15, 4, 40, 3, 3, 2, 1, "valid"),  # stride
    (1, 10, 9, 6, 20, 3, 3, 1, 1, "same"),  # C = 6: the implicit-GEMM convolution, then the pool
    (3, 42, 30, 8, 24, 2, 2, 1, 1, "same"),  # GEMM blocks of 4 row pairs, the last of a sample shorter
    (1, 3, 3, 64, 5, 3, 3, 1, 1, "same"),  # a long reduction for a tiny output: the GEMM may split it
]


def composed_forward(x, wt, b, kw):
    z = _core.conv2d_forward(x, wt, b, relu=True, **kw)
    return z, *_core.maxpool2d_forward(z, 2, 2, 2, 2)


@pytest.mark.parametrize("case", POOL_CASES, ids=str)
def test_conv2d_relu_maxpool_forward_is_conv_then_pool(case, isa, threads):
    x, wt, b, _, kw = case_arrays(case)
    for bias in (b, None):
        y, argmax = _core.conv2d_relu_maxpool_forward(x, wt, bias, **kw)
        _, want_y, want_argmax = composed_forward(x, wt, bias, kw)
        # The same kernels sum in the same order: bit for bit, and the same argmax.
        np.testing.assert_array_equal(y, want_y)
        np.testing.assert_array_equal(argmax, want_argmax)
        assert_close(
            y, ref.maxpool2d_forward(ref.conv2d_forward(x, wt, bias, relu=True, **kw), 2, 2, 2, 2)[0]
        )


def test_conv2d_relu_maxpool_forward_large_output(isa):
    # Pooled output 31*65*65*33 floats = 17 MB: written with streaming stores (y and argmax), at odd offsets.
    x, wt, b = rand(31, 130, 130, 3), rand(3, 3, 3, 33, scale=27**-0.5), rand(33)
    y, argmax = _core.conv2d_relu_maxpool_forward(x, wt, b, padding="same")
    _, want_y, want_argmax = composed_forward(x, wt, b, {"padding": "same"})
    np.testing.assert_array_equal(y, want_y)
    np.testing.assert_array_equal(argmax, want_argmax)


def test_conv2d_relu_maxpool_forward_ties_and_nan():
    x = np.zeros((1, 6, 7, 1), np.float32)  # all-zero windows: every position ties, the first must win
    x[0, 4, 0, 0] = np.nan  # first in its window: stays the maximum (NaN > v is false), as in maxpool2d
    w = np.ones((1, 1, 1, 3), np.float32)
    y, argmax = _core.conv2d_relu_maxpool_forward(x, w, None)
    _, want_y, want_argmax = composed_forward(x, w, None, {})
    np.testing.assert_array_equal(y, want_y)  # NaN in the same places
    np.testing.assert_array_equal(argmax, want_argmax)
    assert np.isnan(y).any()


@pytest.mark.parametrize("case", POOL_CASES, ids=str)
def test_conv2d_relu_maxpool_backward_matches_unfused(case, isa, threads):
    x, wt, b, _, kw = case_arrays(case)
    z, y, argmax = composed_forward(x, wt, b, kw)
    dy = rand(*y.shape)
    dw, db = _core.conv2d_relu_maxpool_backward(dy, argmax, y, x, wt, **kw)
    dz = _core.maxpool2d_backward(_core.relu_backward(dy, y), argmax, z.shape)
    _, want_dw, want_db = _core.reference.conv2d_backward(dz, x, wt, **kw)
    assert_close(dw, want_dw)
    assert_close(db, want_db)
    _, dw64, db64 = ref.conv2d_backward(dz, x, wt, **kw)
    assert_close(dw, dw64)
    assert_close(db, db64)
    dw_only, none_db = _core.conv2d_relu_maxpool_backward(dy, argmax, y, x, wt, need_db=False, **kw)
    assert none_db is None
    np.testing.assert_array_equal(dw_only, dw)


# The input-gradient form, for a block after the first: the implicit-GEMM layers (C > 4), the seed net's second
# block among them with odd sizes (a row and a column the pooling drops), and a direct-kernel one.
DATA_CASES = POOL_CASES + [(2, 13, 11, 32, 64, 2, 2, 1, 1, "same"), (1, 8, 10, 8, 16, 3, 3, 1, 1, "valid")]


@pytest.mark.parametrize("case", DATA_CASES, ids=str)
def test_conv2d_relu_maxpool_backward_data_matches_unfused(case, isa, threads):
    x, wt, b, _, kw = case_arrays(case)
    z, y, argmax = composed_forward(x, wt, b, kw)
    dy = rand(*y.shape)
    dy[0, 0, 0, :2] = -0.0  # a signed zero routed like any other value
    dx, dw, db = _core.conv2d_relu_maxpool_backward_data(dy, argmax, y, x, wt, **kw)
    dz = _core.maxpool2d_backward(_core.relu_backward(dy, y), argmax, z.shape)
    # The same gradient, the same GEMMs: bit for bit the unfused composition.
    for got, want in zip((dx, dw, db), _core.conv2d_backward(dz, x, wt, **kw)):
        np.testing.assert_array_equal(got, want)
    for got, want in zip((dx, dw, db), _core.reference.conv2d_backward(dz, x, wt, **kw)):
        assert_close(got, want)
    for got, want in zip((dx, dw, db), ref.conv2d_backward(ref.maxpool2d_backward(ref.relu_backward(dy, y), argmax,
                                                                                  z.shape), x, wt, **kw)):
        assert_close(got, want)
    _, _, none_db = _core.conv2d_relu_maxpool_backward_data(dy, argmax, y, x, wt, need_db=False, **kw)
    assert none_db is None
    bad = argmax.copy()
    bad[0, 0, 0, 0] = -1
    with pytest.raises(ValueError, match="argmax"):
        _core.conv2d_relu_maxpool_backward_data(dy, bad, y, x, wt, **kw)


def test_conv2d_relu_maxpool_checks_its_arguments():
    x, w = rand(1, 6, 6, 3), rand(3, 3, 3, 4)
    y, argmax = _core.conv2d_relu_maxpool_forward(x, w, None, padding="same")
    dy = rand(*y.shape)
    with pytest.raises(ValueError, match="argmax"):
        bad = argmax.copy()
        bad[0, 1, 1, 2] = argmax[0, 0, 0, 2]  # another window's position
        _core.conv2d_relu_maxpool_backward(dy, bad, y, x, w, padding="same")
    with pytest.raises(ValueError, match="argmax"):
        bad = argmax.copy()
        bad[0, 0, 0, 0] = -1
        _core.conv2d_relu_maxpool_backward(dy, bad, y, x, w, padding="same")
    with pytest.raises(ValueError, match="dy"):
        _core.conv2d_relu_maxpool_backward(dy[:, :2], argmax, y, x, w, padding="same")
    with pytest.raises(TypeError, match="argmax"):
        _core.conv2d_relu_maxpool_backward(dy, argmax.astype(np.float32), y, x, w, padding="same")
    with pytest.raises(ValueError, match="2x2"):
        _core.conv2d_relu_maxpool_forward(rand(1, 1, 5, 3), w, None, padding="same")


def test_sequential_runs_conv_relu_pool_as_one_kernel_with_the_same_results():
    import microcnn
    from microcnn import layers
    from microcnn.plan import fusable

    def network(fused):
        first = (
            [layers.Conv2D(8, 3, padding="same", activation="relu")]
            if fused
            else [layers.Conv2D(8, 3, padding="same"), layers.ReLU()]
        )  # a separate ReLU layer: not fused
        return microcnn.Sequential(
            [
                layers.Input((13, 12, 3)),
                *first,
                layers.MaxPooling2D(2),
                layers.Flatten(),
                layers.Dense(4, activation="softmax"),
            ]
        )

    fused, separate = network(True), network(False)
    separate.set_weights(fused.get_weights())
    for model in (fused, separate):
        model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    assert fusable(fused.layers[0], fused.layers[1])
    assert not fusable(separate.layers[0], separate.layers[1])
    x, labels = rand(5, 13, 12, 3), np.array([0, 3, 1, 2, 1])
    np.testing.assert_allclose(fused.predict(x, verbose=0), separate.predict(x, verbose=0), rtol=1e-6)
    loss, grads = fused._gradients(x, labels)
    want_loss, want = separate._gradients(x, labels)
    assert loss == pytest.approx(want_loss, rel=1e-6)
    assert len(grads) == len(want) == 4  # conv kernel and bias, dense kernel and bias, in layer order
    for grad, want_grad in zip(grads.values(), want.values()):
        assert_close(grad, want_grad)
