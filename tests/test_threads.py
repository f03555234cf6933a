"""Thread-count independence: every core kernel splits its work so each output element is computed in the same
order whatever the number of threads, so 1, 2 and 3 threads must give bit-identical results. Shapes are chosen
above the kernels' serial cut-offs so the parallel paths really run."""

import numpy as np
import pytest

from microcnn import _core

THREAD_COUNTS = (1, 2, 3)


@pytest.fixture(autouse=True)
def restore_threads():
    saved = _core.get_num_threads()
    yield
    _core.set_num_threads(saved)


def rand(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


def run_with_threads(fn):
    """fn() under each thread count -> list of results (each a tuple of arrays / floats)."""
    results = []
    for n in THREAD_COUNTS:
        _core.set_num_threads(n)
        if _core.has_openmp():
            assert _core.get_num_threads() == n
        out = fn()
        results.append(out if isinstance(out, tuple) else (out,))
    return results


def assert_bit_identical(results):
    first = results[0]
    for other in results[1:]:
        assert len(other) == len(first)
        for a, b in zip(first, other):
            if isinstance(a, np.ndarray):
                assert a.dtype == b.dtype and a.shape == b.shape
                assert a.tobytes() == b.tobytes()
            else:
                assert a == b


@pytest.mark.parametrize("module", ["fast", "reference"])
@pytest.mark.parametrize(
    "x_shape,w_shape,stride,padding",
    [
        ((3, 10, 9, 8), (3, 3, 8, 16), 1, "same"),
        ((2, 12, 11, 8), (2, 2, 8, 16), 1, "same"),
        ((3, 13, 12, 6), (3, 3, 6, 10), 2, "valid"),
    ],
)
def test_conv2d(module, x_shape, w_shape, stride, padding):
    core = _core if module == "fast" else _core.reference
    rng = np.random.default_rng(1)
    x, w, b = rand(rng, *x_shape), rand(rng, *w_shape), rand(rng, w_shape[3])
    kw = {"stride_h": stride, "stride_w": stride, "padding": padding}
    y = core.conv2d_forward(x, w, b, relu=True, **kw)
    dy = rand(rng, *y.shape)
    assert_bit_identical(run_with_threads(lambda: core.conv2d_forward(x, w, b, relu=True, **kw)))
    assert_bit_identical(run_with_threads(lambda: core.conv2d_backward(dy, x, w, **kw)))


@pytest.mark.parametrize("module", ["fast", "reference"])
def test_dense(module):
    core = _core if module == "fast" else _core.reference
    rng = np.random.default_rng(2)
    x, w, b, dy = rand(rng, 6, 200), rand(rng, 200, 70), rand(rng, 70), rand(rng, 6, 70)
    assert_bit_identical(run_with_threads(lambda: core.dense_forward(x, w, b, relu=True)))
    assert_bit_identical(run_with_threads(lambda: core.dense_backward(dy, x, w)))


def test_maxpool2d():
    rng = np.random.default_rng(3)
    x = rand(rng, 4, 30, 30, 16)
    y, argmax = _core.maxpool2d_forward(x, 2, 2, 2, 2, "same")
    dy = rand(rng, *y.shape)
    assert_bit_identical(run_with_threads(lambda: _core.maxpool2d_forward(x, 2, 2, 2, 2, "same")))
    assert_bit_identical(run_with_threads(lambda: _core.maxpool2d_forward(x, 3, 3, 1, 1, "valid")))
    assert_bit_identical(run_with_threads(lambda: _core.maxpool2d_backward(dy, argmax, x.shape)))


def test_activations_loss_dropout():
    rng = np.random.default_rng(4)
    x, dy = rand(rng, 300, 200), rand(rng, 300, 200)
    assert_bit_identical(run_with_threads(lambda: _core.relu_forward(x)))
    assert_bit_identical(run_with_threads(lambda: _core.relu_backward(dy, x)))
    y = _core.softmax_forward(x)
    assert_bit_identical(run_with_threads(lambda: _core.softmax_forward(x)))
    assert_bit_identical(run_with_threads(lambda: _core.softmax_backward(dy, y)))
    logits = rand(rng, 300, 100)
    labels = rng.integers(0, 100, 300).astype(np.int32)
    weight = rng.random(300).astype(np.float32)
    assert_bit_identical(run_with_threads(lambda: _core.softmax_cross_entropy(logits, labels, weight)))
    probs = rng.random((300, 100)).astype(np.float32)
    assert_bit_identical(run_with_threads(lambda: _core.softmax_cross_entropy(logits, probs)))
    assert_bit_identical(run_with_threads(lambda: _core.dropout_forward(x, 0.5, 42, 9)))
    assert_bit_identical(run_with_threads(lambda: _core.dropout_backward(dy, 0.5, 42, 9)))


def test_optimizers():
    rng = np.random.default_rng(5)
    param, grad, state = rand(rng, 100_000), rand(rng, 100_000), rand(rng, 100_000)

    def adam():
        p, m, v = param.copy(), state.copy(), np.abs(state)
        for t in (1, 2):
            _core.adam_update(p, grad, m, v, 1e-3, step=t)
        return p, m, v

    def sgd():
        p, v = param.copy(), state.copy()
        _core.sgd_update(p, grad, v, 0.01, momentum=0.9, nesterov=True)
        return p, v

    assert_bit_identical(run_with_threads(adam))
    assert_bit_identical(run_with_threads(sgd))
