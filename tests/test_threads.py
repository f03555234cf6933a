"""Thread-count behaviour of the core kernels.

The naive references and the memory-bound kernels (pooling, activations, loss, dropout, optimizers) split their
work so each output element is computed in the same order whatever the number of threads: 1, 2 and 3 threads
must give bit-identical results. The GEMM-based conv and dense split long reductions over threads and add the
partial sums in thread order, so they promise reproducibility for a given thread count only: repeated runs
must be bit-identical, and different thread counts must agree to float32 rounding. Shapes are above the
kernels' serial cut-offs (and, for the GEMM, large enough to split the reduction) so the parallel paths run.
"""

import numpy as np
import pytest
from _helpers import rand

from microcnn import _core

THREAD_COUNTS = (1, 2, 3)


@pytest.fixture(autouse=True)
def restore_threads():
    saved = _core.get_num_threads()
    yield
    _core.set_num_threads(saved)



def call(fn):
    out = fn()
    return out if isinstance(out, tuple) else (out,)


def run_with_threads(fn):
    """fn() under each thread count -> list of results (each a tuple of arrays / floats)."""
    results = []
    for n in THREAD_COUNTS:
        _core.set_num_threads(n)
        if _core.has_openmp():
            assert _core.get_num_threads() == n
        results.append(call(fn))
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


def assert_reproducible_per_thread_count(fn):
    """Bit-identical on a repeat with the same thread count; within float32 rounding across counts."""
    results = run_with_threads(fn)
    for n, first in zip(THREAD_COUNTS, results):
        _core.set_num_threads(n)
        assert_bit_identical([first, call(fn)])
    for other in results[1:]:
        for a, b in zip(results[0], other):
            scale = max(1.0, float(np.abs(a).max()))
            np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5 * scale)


# --- naive references: identical for any thread count ---------------------------------------------------------


@pytest.mark.parametrize(
    "x_shape,w_shape,stride,padding",
    [
        ((3, 10, 9, 8), (3, 3, 8, 16), 1, "same"),
        ((2, 12, 11, 8), (2, 2, 8, 16), 1, "same"),
        ((3, 13, 12, 6), (3, 3, 6, 10), 2, "valid"),
    ],
)
def test_reference_conv2d(x_shape, w_shape, stride, padding):
    rng = np.random.default_rng(1)
    x, w, b = rand(rng, *x_shape), rand(rng, *w_shape), rand(rng, w_shape[3])
    kw = {"stride_h": stride, "stride_w": stride, "padding": padding}
    dy = rand(rng, *_core.reference.conv2d_forward(x, w, b, **kw).shape)
    assert_bit_identical(run_with_threads(lambda: _core.reference.conv2d_forward(x, w, b, relu=True, **kw)))
    assert_bit_identical(run_with_threads(lambda: _core.reference.conv2d_backward(dy, x, w, **kw)))


def test_reference_dense():
    rng = np.random.default_rng(2)
    x, w, b, dy = rand(rng, 6, 200), rand(rng, 200, 70), rand(rng, 70), rand(rng, 6, 70)
    assert_bit_identical(run_with_threads(lambda: _core.reference.dense_forward(x, w, b, relu=True)))
    assert_bit_identical(run_with_threads(lambda: _core.reference.dense_backward(dy, x, w)))


# --- GEMM-based conv and dense: reproducible for a given thread count ----------------------------------------


def test_fast_conv2d():
    rng = np.random.default_rng(6)
    x, w, b = rand(rng, 4, 40, 40, 32), rand(rng, 2, 2, 32, 64), rand(rng, 64)
    dy = rand(rng, 4, 40, 40, 64)
    assert_reproducible_per_thread_count(lambda: _core.conv2d_forward(x, w, b, padding="same", relu=True))
    assert_reproducible_per_thread_count(lambda: _core.conv2d_backward(dy, x, w, padding="same"))


def test_fast_dense():
    rng = np.random.default_rng(7)
    x, w, b, dy = rand(rng, 32, 20000), rand(rng, 20000, 64), rand(rng, 64), rand(rng, 32, 64)
    assert_reproducible_per_thread_count(lambda: _core.dense_forward(x, w, b, relu=True))
    assert_reproducible_per_thread_count(lambda: _core.dense_backward(dy, x, w))


# --- memory-bound kernels: identical for any thread count ----------------------------------------------------


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
