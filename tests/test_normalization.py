"""Batch normalization and global average pooling kernels vs NumPy float64 references and finite differences."""

import numpy as np
import pytest
from _helpers import rand

from microcnn import _core

EPS = 1e-3


def ref_forward_train(x, gamma, beta, eps):
    x64 = x.astype(np.float64)
    axes = tuple(range(x.ndim - 1))
    mean = x64.mean(axis=axes)
    var = x64.var(axis=axes)  # biased, as Keras
    y = (x64 - mean) / np.sqrt(var + eps) * gamma + beta
    return y, mean, var


def ref_backward(dy, x, gamma, eps):
    """The textbook batch-norm gradient in float64."""
    x64, dy64 = x.astype(np.float64), dy.astype(np.float64)
    axes = tuple(range(x.ndim - 1))
    m = x64.size // x64.shape[-1]
    mean, var = x64.mean(axis=axes), x64.var(axis=axes)
    inv = 1.0 / np.sqrt(var + eps)
    xhat = (x64 - mean) * inv
    dbeta = dy64.sum(axis=axes)
    dgamma = (dy64 * xhat).sum(axis=axes)
    dx = gamma * inv / m * (m * dy64 - dbeta - xhat * dgamma)
    return dx, dgamma, dbeta



@pytest.fixture
def restore_threads():
    n = _core.get_num_threads()
    yield
    _core.set_num_threads(n)


@pytest.mark.parametrize("shape", [(7, 3), (2, 3, 4, 5), (4, 33, 35, 6), (3, 2, 2, 300)])
def test_batchnorm_forward_train_matches_numpy(shape):
    rng = np.random.default_rng(0)
    c = shape[-1]
    x, gamma, beta = rand(rng, *shape, loc=0.5, scale=2.0), rand(rng, c), rand(rng, c)
    y, mean, var = _core.batchnorm_forward_train(x, gamma, beta, EPS)
    y_ref, mean_ref, var_ref = ref_forward_train(x, gamma, beta, EPS)
    assert y.shape == x.shape and y.dtype == np.float32
    assert mean.shape == (c,) and var.shape == (c,)
    np.testing.assert_allclose(mean, mean_ref, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(var, var_ref, rtol=1e-6)
    np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=1e-5)


def test_batchnorm_statistics_survive_a_large_offset():
    # A naive E[x^2] - E[x]^2 in float32 would lose every digit of a unit variance at mean 1e4.
    rng = np.random.default_rng(1)
    x = rand(rng, 64, 5, 5, 4, loc=1e4, scale=1.0)
    gamma, beta = np.ones(4, np.float32), np.zeros(4, np.float32)
    y, mean, var = _core.batchnorm_forward_train(x, gamma, beta, EPS)
    _, mean_ref, var_ref = ref_forward_train(x, gamma, beta, EPS)
    np.testing.assert_allclose(mean, mean_ref, rtol=1e-7)
    np.testing.assert_allclose(var, var_ref, rtol=1e-5)
    np.testing.assert_allclose(y.std(axis=(0, 1, 2)), np.sqrt(var_ref / (var_ref + EPS)), rtol=1e-3)


def test_batchnorm_forward_infer_matches_numpy():
    rng = np.random.default_rng(2)
    x = rand(rng, 3, 4, 4, 6)
    gamma, beta, mm = rand(rng, 6), rand(rng, 6), rand(rng, 6)
    mv = rng.uniform(0.1, 3.0, 6).astype(np.float32)
    y = _core.batchnorm_forward_infer(x, gamma, beta, mm, mv, EPS)
    y_ref = (x.astype(np.float64) - mm) / np.sqrt(mv.astype(np.float64) + EPS) * gamma + beta
    np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shape", [(5, 3), (2, 3, 4, 5), (4, 33, 35, 6)])
def test_batchnorm_backward_matches_analytic(shape):
    rng = np.random.default_rng(3)
    c = shape[-1]
    x, dy, gamma = rand(rng, *shape, loc=-1.0, scale=3.0), rand(rng, *shape), rand(rng, c)
    _, mean, var = _core.batchnorm_forward_train(x, gamma, np.zeros(c, np.float32), EPS)
    dx, dgamma, dbeta = _core.batchnorm_backward(dy, x, gamma, mean, var, EPS)
    dx_ref, dgamma_ref, dbeta_ref = ref_backward(dy, x, gamma, EPS)
    scale = np.abs(dx_ref).max()
    np.testing.assert_allclose(dx, dx_ref, rtol=1e-4, atol=1e-5 * scale)
    np.testing.assert_allclose(dgamma, dgamma_ref, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(dbeta, dbeta_ref, rtol=1e-5, atol=1e-4)


def test_batchnorm_backward_matches_finite_differences():
    # Loss L = sum(y * r) through the float32 kernel; central differences of every input coordinate.
    rng = np.random.default_rng(4)
    x, gamma, beta = rand(rng, 3, 2, 2, 3), rand(rng, 3), rand(rng, 3)
    r = rand(rng, 3, 2, 2, 3)

    def loss(x_, gamma_, beta_):
        y, _, _ = _core.batchnorm_forward_train(x_, gamma_, beta_, EPS)
        return float((y.astype(np.float64) * r).sum())

    _, mean, var = _core.batchnorm_forward_train(x, gamma, beta, EPS)
    dx, dgamma, dbeta = _core.batchnorm_backward(r, x, gamma, mean, var, EPS)

    def numeric(arr, which):
        g = np.zeros(arr.shape)
        h = 1e-2
        for i in np.ndindex(arr.shape):
            args = [x.copy(), gamma.copy(), beta.copy()]
            args[which][i] += h
            up = loss(*args)
            args[which][i] -= 2 * h
            down = loss(*args)
            g[i] = (up - down) / (2 * h)
        return g

    np.testing.assert_allclose(dx, numeric(x, 0), rtol=2e-2, atol=2e-3)
    np.testing.assert_allclose(dgamma, numeric(gamma, 1), rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(dbeta, numeric(beta, 2), rtol=1e-3, atol=1e-3)


def test_global_avgpool_matches_numpy_and_is_adjoint():
    rng = np.random.default_rng(5)
    x = rand(rng, 3, 5, 7, 4, loc=2.0)
    y = _core.global_avgpool_forward(x)
    np.testing.assert_allclose(y, x.astype(np.float64).mean(axis=(1, 2)), rtol=1e-6, atol=1e-6)
    dy = rand(rng, 3, 4)
    dx = _core.global_avgpool_backward(dy, x.shape)
    assert dx.shape == x.shape and dx.dtype == np.float32
    np.testing.assert_allclose(dx, np.broadcast_to(dy[:, None, None, :] / 35.0, x.shape), rtol=1e-6)
    # <gap(x), dy> == <x, gap^T(dy)>: backward is the transpose of forward.
    lhs = (y.astype(np.float64) * dy).sum()
    rhs = (x.astype(np.float64) * dx).sum()
    assert lhs == pytest.approx(rhs, rel=1e-5)


@pytest.mark.skipif(not _core.has_openmp(), reason="built without OpenMP")
def test_one_and_two_threads_agree_bit_for_bit(restore_threads):
    rng = np.random.default_rng(6)
    x, dy = rand(rng, 8, 31, 29, 5, loc=3.0), rand(rng, 8, 31, 29, 5)
    gamma, beta = rand(rng, 5), rand(rng, 5)

    def run():
        y, mean, var = _core.batchnorm_forward_train(x, gamma, beta, EPS)
        grads = _core.batchnorm_backward(dy, x, gamma, mean, var, EPS)
        infer = _core.batchnorm_forward_infer(x, gamma, beta, mean, var, EPS)
        gap = _core.global_avgpool_forward(x)
        return [y, mean, var, *grads, infer, gap]

    _core.set_num_threads(1)
    one = run()
    _core.set_num_threads(2)
    two = run()
    for a, b in zip(one, two):
        assert np.array_equal(a, b)


def test_bad_input_raises_naming_the_argument():
    x = np.ones((2, 3, 3, 4), np.float32)
    g, b = np.ones(4, np.float32), np.zeros(4, np.float32)
    with pytest.raises(TypeError, match="x"):
        _core.batchnorm_forward_train(x.astype(np.float64), g, b, EPS)
    with pytest.raises(TypeError, match="x"):
        _core.batchnorm_forward_train(x.tolist(), g, b, EPS)
    with pytest.raises(ValueError, match="gamma"):
        _core.batchnorm_forward_train(x, np.ones(3, np.float32), b, EPS)
    with pytest.raises(ValueError, match="beta"):
        _core.batchnorm_forward_train(x, g, np.zeros((4, 1), np.float32), EPS)
    with pytest.raises(ValueError, match="C-contiguous"):
        _core.batchnorm_forward_train(np.ones((4, 3), np.float32).T, np.ones(4, np.float32), b, EPS)
    with pytest.raises(ValueError, match="at least 2"):
        _core.batchnorm_forward_train(np.ones(4, np.float32), g, b, EPS)
    with pytest.raises(ValueError, match="non-empty"):
        _core.batchnorm_forward_train(np.ones((0, 4), np.float32), g, b, EPS)
    with pytest.raises(ValueError, match="epsilon"):
        _core.batchnorm_forward_train(x, g, b, 0.0)
    with pytest.raises(ValueError, match="epsilon"):
        _core.batchnorm_forward_infer(x, g, b, g, g, float("nan"))
    with pytest.raises(ValueError, match="moving_var"):
        _core.batchnorm_forward_infer(x, g, b, g, np.ones(5, np.float32), EPS)
    with pytest.raises(ValueError, match="dy"):
        _core.batchnorm_backward(np.ones((2, 3, 3, 5), np.float32), x, g, g, g, EPS)
    with pytest.raises(ValueError, match="batch_var"):
        _core.batchnorm_backward(x, x, g, g, np.ones(2, np.float32), EPS)
    with pytest.raises(ValueError, match="x"):
        _core.global_avgpool_forward(np.ones((2, 3, 4), np.float32))
    with pytest.raises(ValueError, match="x_shape"):
        _core.global_avgpool_backward(np.ones((2, 4), np.float32), (2, 3, 4))
    with pytest.raises(ValueError, match="x_shape"):
        _core.global_avgpool_backward(np.ones((2, 4), np.float32), (2, 0, 3, 4))
    with pytest.raises(TypeError, match="x_shape"):
        _core.global_avgpool_backward(np.ones((2, 4), np.float32), "abcd")
    with pytest.raises(ValueError, match="dy"):
        _core.global_avgpool_backward(np.ones((2, 4), np.float32), (3, 2, 2, 4))
    with pytest.raises(ValueError, match="x_shape"):
        _core.global_avgpool_backward(np.ones((2, 4), np.float32), (2, 2**40, 2**40, 4))
