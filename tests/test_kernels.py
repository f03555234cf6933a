"""Every core kernel against the NumPy float64 references (and the fast kernels against the naive C++)."""

from functools import partial

import numpy as np
import pytest
import reference_numpy as ref
from _helpers import assert_close, rand_from

from microcnn import _core

RNG = np.random.default_rng(20261128)
rand = rand_from(RNG)
assert_close = partial(assert_close, rtol=1e-5, atol_scale=1e-5)

# (N, H, W, C, K, R, S, stride_h, stride_w, padding)
CONV_CASES = [
    (1, 5, 5, 1, 1, 3, 3, 1, 1, "valid"),
    (2, 7, 6, 3, 4, 3, 3, 1, 1, "same"),
    (3, 8, 8, 32, 8, 2, 2, 1, 1, "same"),  # the seed net's second conv: even kernel, same padding
    (2, 9, 7, 2, 5, 2, 3, 2, 2, "same"),
    (1, 10, 11, 4, 3, 4, 4, 2, 3, "same"),
    (2, 9, 10, 3, 6, 3, 2, 2, 1, "valid"),
    (1, 4, 4, 5, 2, 1, 1, 1, 1, "valid"),
    (1, 3, 3, 2, 3, 5, 5, 1, 1, "same"),  # kernel larger than the input: mostly padding
    (2, 6, 5, 7, 9, 6, 5, 1, 1, "valid"),  # kernel as large as the input
    (1, 1, 1, 3, 2, 1, 1, 3, 3, "same"),
]




def conv_case_arrays(case):
    n, h, w, c, k, r, s, sh, sw, padding = case
    x, wt, b = rand(n, h, w, c), rand(r, s, c, k, scale=0.5), rand(k)
    p, q = ref.conv_output_size(h, r, sh, padding), ref.conv_output_size(w, s, sw, padding)
    return x, wt, b, rand(n, p, q, k), {"stride_h": sh, "stride_w": sw, "padding": padding}


@pytest.mark.parametrize("case", CONV_CASES, ids=str)
@pytest.mark.parametrize("relu", [False, True])
def test_conv2d_forward(case, relu):
    x, w, b, _, kw = conv_case_arrays(case)
    y = _core.conv2d_forward(x, w, b, relu=relu, **kw)
    assert y.dtype == np.float32 and y.flags.c_contiguous
    assert_close(y, ref.conv2d_forward(x, w, b, relu=relu, **kw))
    assert_close(y, _core.reference.conv2d_forward(x, w, b, relu=relu, **kw))  # GEMM sums in another order
    assert_close(_core.conv2d_forward(x, w, None, **kw), ref.conv2d_forward(x, w, None, **kw))


@pytest.mark.parametrize("case", CONV_CASES, ids=str)
def test_conv2d_backward(case):
    x, w, _, dy, kw = conv_case_arrays(case)
    dx, dw, db = _core.conv2d_backward(dy, x, w, **kw)
    rdx, rdw, rdb = ref.conv2d_backward(dy, x, w, **kw)
    assert dx.shape == x.shape and dw.shape == w.shape and db.shape == (w.shape[3],)
    assert_close(dx, rdx)
    assert_close(dw, rdw)
    assert_close(db, rdb)
    for fast, naive in zip((dx, dw, db), _core.reference.conv2d_backward(dy, x, w, **kw)):
        assert_close(fast, naive)
    none_dx, dw2, none_db = _core.conv2d_backward(dy, x, w, need_dx=False, need_db=False, **kw)
    assert none_dx is None and none_db is None
    np.testing.assert_array_equal(dw2, dw)


def test_conv2d_same_even_kernel_pads_bottom_right():
    # A 2x2 kernel that only reads its top-left tap equals the identity when the padding goes after the input
    # (Keras/TF); a top/left pad would shift the image by one pixel.
    x = rand(1, 5, 4, 3)
    w = np.zeros((2, 2, 3, 3), np.float32)
    w[0, 0] = np.eye(3, dtype=np.float32)
    np.testing.assert_array_equal(_core.conv2d_forward(x, w, None, padding="same"), x)
    w = np.zeros((2, 2, 3, 3), np.float32)
    w[1, 1] = np.eye(3, dtype=np.float32)
    y = _core.conv2d_forward(x, w, None, padding="same")
    np.testing.assert_array_equal(y[:, :-1, :-1], x[:, 1:, 1:])
    np.testing.assert_array_equal(y[:, -1], 0)
    np.testing.assert_array_equal(y[:, :, -1], 0)


@pytest.mark.parametrize(
    "size,kernel,stride,padding",
    [
        (150, 3, 1, "same"),
        (150, 2, 2, "valid"),
        (75, 2, 2, "same"),
        (7, 3, 2, "valid"),
        (1, 1, 1, "valid"),
        (5, 7, 3, "same"),
        (10, 10, 4, "valid"),
    ],
)
def test_conv2d_output_size(size, kernel, stride, padding):
    assert _core.conv2d_output_size(size, kernel, stride, padding) == ref.conv_output_size(
        size, kernel, stride, padding
    )


# (N, H, W, C, pool_h, pool_w, stride_h, stride_w, padding)
POOL_CASES = [
    (2, 6, 6, 3, 2, 2, 2, 2, "valid"),
    (1, 7, 5, 4, 2, 2, 2, 2, "valid"),  # odd sizes drop the last row/col
    (1, 7, 5, 4, 2, 2, 2, 2, "same"),  # odd sizes pad bottom/right
    (2, 5, 6, 2, 3, 3, 1, 1, "same"),  # overlapping windows
    (1, 9, 8, 3, 3, 2, 2, 3, "valid"),
    (3, 4, 4, 1, 1, 1, 1, 1, "valid"),
    (1, 5, 5, 2, 4, 4, 3, 3, "same"),
]


@pytest.mark.parametrize("case", POOL_CASES, ids=str)
def test_maxpool2d(case):
    n, h, w, c, ph, pw, sh, sw, padding = case
    x = rand(n, h, w, c)
    y, argmax = _core.maxpool2d_forward(x, ph, pw, sh, sw, padding)
    ry, rargmax = ref.maxpool2d_forward(x, ph, pw, sh, sw, padding)
    assert argmax.dtype == np.int32
    np.testing.assert_array_equal(y, ry.astype(np.float32))
    np.testing.assert_array_equal(argmax, rargmax)
    dy = rand(*y.shape)
    dx = _core.maxpool2d_backward(dy, argmax, x.shape)
    assert_close(dx, ref.maxpool2d_backward(dy, rargmax, x.shape))


def test_maxpool2d_ties_first_wins_and_padding_never_wins():
    x = np.full((1, 3, 3, 2), -5.0, np.float32)  # all ties, all negative (padding would be 0 if it counted)
    y, argmax = _core.maxpool2d_forward(x, 2, 2, 2, 2, "same")
    np.testing.assert_array_equal(y, -5.0)
    _, rargmax = ref.maxpool2d_forward(x, 2, 2, 2, 2, "same")
    np.testing.assert_array_equal(argmax, rargmax)
    assert argmax[0, 0, 0, 1] == 1  # first element (h=0, w=0) of channel 1


@pytest.mark.parametrize("shape", [(7,), (3, 5), (2, 3, 4, 5), (1, 40000)])
def test_relu(shape):
    x = rand(*shape)
    y = _core.relu_forward(x)
    np.testing.assert_array_equal(y, ref.relu_forward(x).astype(np.float32))
    dy = rand(*shape)
    np.testing.assert_array_equal(_core.relu_backward(dy, y), ref.relu_backward(dy, y).astype(np.float32))


@pytest.mark.parametrize("shape", [(1, 1), (4, 3), (5, 10), (3, 1000)])
def test_softmax(shape):
    x = rand(*shape, scale=5.0)
    y = _core.softmax_forward(x)
    assert_close(y, ref.softmax_forward(x))
    dy = rand(*shape)
    assert_close(_core.softmax_backward(dy, y), ref.softmax_backward(dy, y))


def test_softmax_is_stable_for_huge_logits():
    x = np.array([[1e4, 0.0, -1e4], [88.0, 89.0, 90.0], [-1e30, -1e30, -1e30]], np.float32)
    y = _core.softmax_forward(x)
    assert np.isfinite(y).all()
    assert_close(y, ref.softmax_forward(x))


@pytest.mark.parametrize("n,m", [(1, 2), (4, 3), (7, 10), (32, 3)])
@pytest.mark.parametrize("kind", ["sparse", "onehot", "probabilities"])
@pytest.mark.parametrize("weighted", [False, True])
def test_softmax_cross_entropy(n, m, kind, weighted):
    logits = rand(n, m, scale=3.0)
    labels = RNG.integers(0, m, n).astype(np.int32)
    if kind == "onehot":
        labels = ref.one_hot(labels, m).astype(np.float32)
    elif kind == "probabilities":
        labels = RNG.random((n, m)).astype(np.float32)
        labels /= labels.sum(axis=1, keepdims=True)
    weight = RNG.random(n).astype(np.float32) if weighted else None
    loss, probs, dlogits = _core.softmax_cross_entropy(logits, labels, weight)
    rloss, rprobs, rdlogits = ref.softmax_cross_entropy(logits, labels, weight)
    assert isinstance(loss, float)
    assert loss == pytest.approx(rloss, rel=1e-6, abs=1e-6)
    assert_close(probs, rprobs)
    assert_close(dlogits, rdlogits)


def test_softmax_cross_entropy_extreme_logits():
    logits = np.array([[1e4, 0.0, -1e4], [0.0, 0.0, 0.0]], np.float32)
    labels = np.array([2, 1], np.int32)
    loss, _, dlogits = _core.softmax_cross_entropy(logits, labels)
    assert loss == pytest.approx((2e4 + np.log(3.0)) / 2, rel=1e-6)
    assert np.isfinite(dlogits).all()


@pytest.mark.parametrize("n,k,m", [(1, 1, 1), (3, 7, 5), (32, 300, 40), (5, 64, 33), (2, 1000, 3)])
@pytest.mark.parametrize("relu", [False, True])
def test_dense(n, k, m, relu):
    x, w, b, dy = rand(n, k), rand(k, m, scale=k**-0.5), rand(m), rand(n, m)
    y = _core.dense_forward(x, w, b, relu=relu)
    assert_close(y, ref.dense_forward(x, w, b, relu=relu))
    assert_close(y, _core.reference.dense_forward(x, w, b, relu=relu))
    assert_close(_core.dense_forward(x, w, None), ref.dense_forward(x, w, None))
    grads = _core.dense_backward(dy, x, w)
    for got, want in zip(grads, ref.dense_backward(dy, x, w)):
        assert_close(got, want)
    for fast, naive in zip(grads, _core.reference.dense_backward(dy, x, w)):
        assert_close(fast, naive)
    dx, dw, db = _core.dense_backward(dy, x, w, need_dx=False, need_db=False)
    assert dx is None and db is None
    np.testing.assert_array_equal(dw, grads[1])


@pytest.mark.parametrize("rate", [0.0, 0.25, 0.5, 0.9])
@pytest.mark.parametrize("shape", [(5,), (4, 33), (2, 3, 4, 5)])
def test_dropout_matches_counter_hash(rate, shape):
    x = rand(*shape)
    y = _core.dropout_forward(x, rate, seed=1234, step=7)
    want = ref.dropout_forward(x, rate, 1234, 7)
    assert_close(y, want, rtol=1e-6)
    np.testing.assert_array_equal(y == 0, want == 0)
    dy = rand(*shape)
    np.testing.assert_array_equal(_core.dropout_backward(dy, rate, seed=1234, step=7) == 0, want == 0)
    assert_close(_core.dropout_backward(dy, rate, seed=1234, step=7), ref.dropout_forward(dy, rate, 1234, 7))


def test_dropout_statistics_and_streams():
    x = np.ones(200_000, np.float32)
    y = _core.dropout_forward(x, 0.5, seed=1, step=0)
    assert abs((y == 0).mean() - 0.5) < 0.01  # the standard deviation is 0.0011
    assert y.mean() == pytest.approx(1.0, abs=0.02)  # inverted dropout keeps the expectation
    y2 = _core.dropout_forward(x, 0.5, seed=1, step=1)
    y3 = _core.dropout_forward(x, 0.5, seed=2, step=0)
    assert not np.array_equal(y, y2) and not np.array_equal(y, y3)
    np.testing.assert_array_equal(y, _core.dropout_forward(x, 0.5, seed=1, step=0))
    # seeds are taken mod 2**64, so negative and numpy integers work
    np.testing.assert_array_equal(
        _core.dropout_forward(x[:100], 0.3, seed=-1, step=np.int64(3)),
        _core.dropout_forward(x[:100], 0.3, seed=2**64 - 1, step=3),
    )


@pytest.mark.parametrize("momentum,nesterov", [(0.0, False), (0.9, False), (0.9, True), (0.5, True)])
def test_sgd_update(momentum, nesterov):
    param, grad = rand(4, 5), rand(4, 5)
    velocity = rand(4, 5, scale=0.1) if momentum else None
    want_p, want_v = ref.sgd_step(param, grad, velocity, 0.01, momentum, nesterov)
    p = param.copy()
    v = None if velocity is None else velocity.copy()
    assert _core.sgd_update(p, grad, v, 0.01, momentum, nesterov) is None
    assert_close(p, want_p, rtol=1e-6)
    if momentum:
        assert_close(v, want_v, rtol=1e-6)


@pytest.mark.parametrize("step", [1, 2, 10, 1000])
def test_adam_update(step):
    param, grad = rand(3, 7), rand(3, 7)
    m, v = rand(3, 7, scale=0.1), np.abs(rand(3, 7, scale=0.1))
    want = ref.adam_step(param, grad, m, v, 4e-4, 0.9, 0.999, 1e-7, step)
    p, m2, v2 = param.copy(), m.copy(), v.copy()
    _core.adam_update(p, grad, m2, v2, learning_rate=4e-4, step=step)
    for got, expected in zip((p, m2, v2), want):
        assert_close(got, expected, rtol=1e-5)


def test_adam_several_steps_track_reference():
    param = rand(50)
    p, m, v = param.copy(), np.zeros(50, np.float32), np.zeros(50, np.float32)
    rp, rm, rv = param.astype(np.float64), np.zeros(50), np.zeros(50)
    for t in range(1, 21):
        grad = rand(50)
        _core.adam_update(p, grad, m, v, 1e-3, 0.9, 0.999, 1e-7, t)
        rp, rm, rv = ref.adam_step(rp, grad, rm, rv, 1e-3, 0.9, 0.999, 1e-7, t)
    assert_close(p, rp, rtol=1e-5)


def random_conv_cases(count, seed):
    """Seeded random geometries: any kernel up to 5x5, strides 1-3, both paddings, odd and tiny sizes."""
    rng = np.random.default_rng(seed)
    cases = []
    while len(cases) < count:
        n, h, w = rng.integers(1, 4), rng.integers(1, 13), rng.integers(1, 13)
        c, k = rng.integers(1, 7), rng.integers(1, 7)
        r, s = rng.integers(1, 6), rng.integers(1, 6)
        sh, sw = rng.integers(1, 4), rng.integers(1, 4)
        padding = str(rng.choice(["valid", "same"]))
        if padding == "valid" and (r > h or s > w):
            continue
        cases.append(tuple(int(v) for v in (n, h, w, c, k, r, s, sh, sw)) + (padding,))
    return cases


@pytest.mark.parametrize("case", random_conv_cases(16, seed=3), ids=str)
def test_conv2d_random_geometry(case):
    x, w, b, dy, kw = conv_case_arrays(case)
    assert_close(_core.conv2d_forward(x, w, b, **kw), ref.conv2d_forward(x, w, b, **kw))
    for got, want in zip(_core.conv2d_backward(dy, x, w, **kw), ref.conv2d_backward(dy, x, w, **kw)):
        assert_close(got, want)
    for got, want in zip(
        _core.reference.conv2d_backward(dy, x, w, **kw), ref.conv2d_backward(dy, x, w, **kw)
    ):
        assert_close(got, want)


@pytest.mark.parametrize("case", random_conv_cases(12, seed=4), ids=str)
def test_maxpool2d_random_geometry(case):
    n, h, w, c, _, ph, pw, sh, sw, padding = case
    x = rand(n, h, w, c)
    y, argmax = _core.maxpool2d_forward(x, ph, pw, sh, sw, padding)
    ry, rargmax = ref.maxpool2d_forward(x, ph, pw, sh, sw, padding)
    np.testing.assert_array_equal(y, ry.astype(np.float32))
    np.testing.assert_array_equal(argmax, rargmax)
    dy = rand(*y.shape)
    assert_close(_core.maxpool2d_backward(dy, argmax, x.shape), ref.maxpool2d_backward(dy, rargmax, x.shape))
