"""Finite-difference checks of every backward pass.

Two layers of evidence:
1. The NumPy float64 reference backward passes against central differences of the reference forward passes
   (tight tolerances: float64, smooth objectives), so the reference itself is trustworthy.
2. The float32 C++ backward kernels against central differences of the float32 C++ forward kernels on a
   float64 scalar objective L = sum(y * G). The step actually taken is measured after rounding the perturbed
   input to float32, so linear kernels (conv, dense, pooling, dropout) are checked almost exactly and the smooth
   ones (softmax, cross-entropy) to the truncation error of the step. A wrong index, scale or sign is off by
   O(1), far outside the tolerances.
"""

import numpy as np
import pytest
import reference_numpy as ref

from microcnn import _core

RNG = np.random.default_rng(7)

CONV_CASES = [
    # (N, H, W, C, K, R, S, stride_h, stride_w, padding)
    (1, 4, 5, 2, 3, 3, 3, 1, 1, "same"),
    (2, 5, 4, 3, 2, 2, 2, 1, 1, "same"),  # even kernel: padding bottom/right
    (1, 7, 6, 2, 2, 3, 2, 2, 2, "same"),
    (2, 6, 7, 2, 3, 3, 3, 2, 1, "valid"),
]


def numeric_grad(objective, x, eps, dtype):
    """Central differences of objective(x') with respect to every entry of x (x' of the given dtype). The
    denominator is the step that survives rounding to dtype."""
    x = np.asarray(x, dtype)
    grad = np.zeros(x.shape)
    for i in np.ndindex(x.shape):
        plus, minus = x.copy(), x.copy()
        plus[i] += eps
        minus[i] -= eps
        grad[i] = (objective(plus) - objective(minus)) / (float(plus[i]) - float(minus[i]))
    return grad


def assert_grad(analytic, numeric, rtol, atol_scale):
    numeric = np.asarray(numeric, np.float64)
    atol = atol_scale * max(1.0, float(np.abs(numeric).max()))
    np.testing.assert_allclose(np.asarray(analytic, np.float64), numeric, rtol=rtol, atol=atol)


def weighted_sum(y, g):
    return float(np.sum(np.asarray(y, np.float64) * g))


# --- 1. the NumPy references against finite differences (float64) -------------------------------------------

F64 = {"eps": 1e-6, "dtype": np.float64}
F64_TOL = {"rtol": 1e-6, "atol_scale": 1e-8}


@pytest.mark.parametrize("case", CONV_CASES, ids=str)
def test_reference_conv2d_backward(case):
    n, h, w, c, k, r, s, sh, sw, padding = case
    kw = {"stride_h": sh, "stride_w": sw, "padding": padding}
    x, wt, b = RNG.standard_normal((n, h, w, c)), RNG.standard_normal((r, s, c, k)), RNG.standard_normal(k)
    g = RNG.standard_normal(ref.conv2d_forward(x, wt, b, **kw).shape)
    dx, dw, db = ref.conv2d_backward(g, x, wt, **kw)
    assert_grad(
        dx, numeric_grad(lambda v: weighted_sum(ref.conv2d_forward(v, wt, b, **kw), g), x, **F64), **F64_TOL
    )
    assert_grad(
        dw, numeric_grad(lambda v: weighted_sum(ref.conv2d_forward(x, v, b, **kw), g), wt, **F64), **F64_TOL
    )
    assert_grad(
        db, numeric_grad(lambda v: weighted_sum(ref.conv2d_forward(x, wt, v, **kw), g), b, **F64), **F64_TOL
    )


def test_reference_dense_backward():
    x, w, b = RNG.standard_normal((3, 5)), RNG.standard_normal((5, 4)), RNG.standard_normal(4)
    g = RNG.standard_normal((3, 4))
    dx, dw, db = ref.dense_backward(g, x, w)
    assert_grad(dx, numeric_grad(lambda v: weighted_sum(ref.dense_forward(v, w, b), g), x, **F64), **F64_TOL)
    assert_grad(dw, numeric_grad(lambda v: weighted_sum(ref.dense_forward(x, v, b), g), w, **F64), **F64_TOL)
    assert_grad(db, numeric_grad(lambda v: weighted_sum(ref.dense_forward(x, w, v), g), b, **F64), **F64_TOL)


def test_reference_maxpool_and_activations_backward():
    x = (RNG.permutation(2 * 5 * 5 * 2) * 0.1 - 5.0).reshape(2, 5, 5, 2)  # distinct values: no ties
    y, argmax = ref.maxpool2d_forward(x, 2, 2, 2, 2, "same")
    g = RNG.standard_normal(y.shape)
    numeric = numeric_grad(
        lambda v: weighted_sum(ref.maxpool2d_forward(v, 2, 2, 2, 2, "same")[0], g), x, **F64
    )
    assert_grad(ref.maxpool2d_backward(g, argmax, x.shape), numeric, **F64_TOL)

    x = RNG.standard_normal((4, 6))
    g = RNG.standard_normal((4, 6))
    numeric = numeric_grad(lambda v: weighted_sum(ref.softmax_forward(v), g), x, **F64)
    assert_grad(ref.softmax_backward(g, ref.softmax_forward(x)), numeric, **F64_TOL)


@pytest.mark.parametrize("kind", ["sparse", "probabilities"])
def test_reference_cross_entropy_backward(kind):
    logits = RNG.standard_normal((4, 5)) * 2
    labels = np.array([0, 4, 2, 2])
    if kind == "probabilities":
        labels = RNG.random((4, 5))
        labels /= labels.sum(axis=1, keepdims=True)
    weight = RNG.random(4)
    _, _, dlogits = ref.softmax_cross_entropy(logits, labels, weight)
    numeric = numeric_grad(lambda v: ref.softmax_cross_entropy(v, labels, weight)[0], logits, **F64)
    assert_grad(dlogits, numeric, **F64_TOL)


# --- 2. the float32 C++ kernels against finite differences ---------------------------------------------------

# Linear in the perturbed argument: the difference quotient is exact up to float32 rounding of the outputs.
LINEAR = {"eps": 2.0**-4, "dtype": np.float32}
LINEAR_TOL = {"rtol": 1e-4, "atol_scale": 1e-4}
# Smooth but curved: truncation error ~ eps^2, rounding ~ 1e-7 / eps.
SMOOTH = {"eps": 2.0**-8, "dtype": np.float32}
SMOOTH_TOL = {"rtol": 2e-3, "atol_scale": 2e-3}


def f32(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


@pytest.mark.parametrize("case", CONV_CASES, ids=str)
@pytest.mark.parametrize("module", ["fast", "reference"])
def test_conv2d_backward_kernel(case, module):
    core = _core if module == "fast" else _core.reference
    n, h, w, c, k, r, s, sh, sw, padding = case
    kw = {"stride_h": sh, "stride_w": sw, "padding": padding}
    x, wt, b = f32(n, h, w, c), f32(r, s, c, k), f32(k)
    g = RNG.standard_normal(core.conv2d_forward(x, wt, b, **kw).shape)
    dx, dw, db = core.conv2d_backward(g.astype(np.float32), x, wt, **kw)
    g = g.astype(np.float32).astype(np.float64)
    assert_grad(
        dx,
        numeric_grad(lambda v: weighted_sum(core.conv2d_forward(v, wt, b, **kw), g), x, **LINEAR),
        **LINEAR_TOL,
    )
    assert_grad(
        dw,
        numeric_grad(lambda v: weighted_sum(core.conv2d_forward(x, v, b, **kw), g), wt, **LINEAR),
        **LINEAR_TOL,
    )
    assert_grad(
        db,
        numeric_grad(lambda v: weighted_sum(core.conv2d_forward(x, wt, v, **kw), g), b, **LINEAR),
        **LINEAR_TOL,
    )


@pytest.mark.parametrize("module", ["fast", "reference"])
def test_dense_backward_kernel(module):
    core = _core if module == "fast" else _core.reference
    x, w, b = f32(3, 6), f32(6, 4), f32(4)
    g = f32(3, 4)
    g64 = g.astype(np.float64)
    dx, dw, db = core.dense_backward(g, x, w)
    assert_grad(
        dx, numeric_grad(lambda v: weighted_sum(core.dense_forward(v, w, b), g64), x, **LINEAR), **LINEAR_TOL
    )
    assert_grad(
        dw, numeric_grad(lambda v: weighted_sum(core.dense_forward(x, v, b), g64), w, **LINEAR), **LINEAR_TOL
    )
    assert_grad(
        db, numeric_grad(lambda v: weighted_sum(core.dense_forward(x, w, v), g64), b, **LINEAR), **LINEAR_TOL
    )


@pytest.mark.parametrize(
    "pool,stride,padding", [(2, 2, "valid"), (2, 2, "same"), (3, 1, "same"), (3, 2, "valid")]
)
def test_maxpool2d_backward_kernel(pool, stride, padding):
    # Distinct values 0.25 apart: a step of 1/16 never changes which input wins.
    x = (RNG.permutation(2 * 5 * 6 * 3) * 0.25 - 20.0).astype(np.float32).reshape(2, 5, 6, 3)
    y, argmax = _core.maxpool2d_forward(x, pool, pool, stride, stride, padding)
    g = f32(*y.shape)
    g64 = g.astype(np.float64)
    numeric = numeric_grad(
        lambda v: weighted_sum(_core.maxpool2d_forward(v, pool, pool, stride, stride, padding)[0], g64),
        x,
        **LINEAR,
    )
    assert_grad(_core.maxpool2d_backward(g, argmax, x.shape), numeric, **LINEAR_TOL)


@pytest.mark.parametrize("c", [2, 6])  # the direct kernels (few channels) and the implicit GEMM
def test_conv2d_relu_maxpool_backward_data_kernel(c):
    # The fused conv + ReLU + 2x2 max-pool block, odd conv output (a row and a column are not pooled). A small
    # step: the objective is piecewise linear, and the step must not cross a ReLU kink or a change of maximum.
    rng = np.random.default_rng(16)
    kw = {"stride_h": 1, "stride_w": 1, "padding": "same"}
    x, wt, b = (rng.standard_normal(s).astype(np.float32) for s in ((2, 5, 7, c), (2, 2, c, 3), (3,)))
    y, argmax = _core.conv2d_relu_maxpool_forward(x, wt, b, **kw)
    g = rng.standard_normal(y.shape).astype(np.float32)
    g64 = g.astype(np.float64)
    dx, dw, db = _core.conv2d_relu_maxpool_backward_data(g, argmax, y, x, wt, **kw)
    step = {"eps": 2.0**-12, "dtype": np.float32}
    tol = {"rtol": 2e-3, "atol_scale": 2e-3}

    def objective(xv, wv, bv):
        return weighted_sum(_core.conv2d_relu_maxpool_forward(xv, wv, bv, **kw)[0], g64)

    assert_grad(dx, numeric_grad(lambda v: objective(v, wt, b), x, **step), **tol)
    assert_grad(dw, numeric_grad(lambda v: objective(x, v, b), wt, **step), **tol)
    assert_grad(db, numeric_grad(lambda v: objective(x, wt, v), b, **step), **tol)


def test_relu_backward_kernel():
    x = f32(4, 7)
    x[np.abs(x) < 0.2] = 0.5  # keep the kink out of reach of the step
    g = f32(4, 7)
    numeric = numeric_grad(lambda v: weighted_sum(_core.relu_forward(v), g.astype(np.float64)), x, **LINEAR)
    assert_grad(_core.relu_backward(g, _core.relu_forward(x)), numeric, **LINEAR_TOL)


def test_dropout_backward_kernel():
    x, g = f32(3, 8), f32(3, 8)

    def fwd(v):
        return weighted_sum(_core.dropout_forward(v, 0.4, 11, 3), g.astype(np.float64))

    assert_grad(_core.dropout_backward(g, 0.4, 11, 3), numeric_grad(fwd, x, **LINEAR), **LINEAR_TOL)


def test_softmax_backward_kernel():
    x, g = f32(3, 5), f32(3, 5)
    numeric = numeric_grad(
        lambda v: weighted_sum(_core.softmax_forward(v), g.astype(np.float64)), x, **SMOOTH
    )
    assert_grad(_core.softmax_backward(g, _core.softmax_forward(x)), numeric, **SMOOTH_TOL)


@pytest.mark.parametrize("kind", ["sparse", "onehot", "probabilities"])
@pytest.mark.parametrize("weighted", [False, True])
def test_softmax_cross_entropy_gradient_kernel(kind, weighted):
    logits = f32(5, 4) * 2
    labels = np.array([0, 3, 1, 1, 2], np.int32)
    if kind == "onehot":
        labels = ref.one_hot(labels, 4).astype(np.float32)
    elif kind == "probabilities":
        labels = RNG.random((5, 4)).astype(np.float32)
        labels /= labels.sum(axis=1, keepdims=True)
    weight = (RNG.random(5) + 0.5).astype(np.float32) if weighted else None
    _, _, dlogits = _core.softmax_cross_entropy(logits, labels, weight)
    numeric = numeric_grad(lambda v: _core.softmax_cross_entropy(v, labels, weight)[0], logits, **SMOOTH)
    assert_grad(dlogits, numeric, **SMOOTH_TOL)


def test_seed_net_shapes_directional_derivative():
    """The seed net's second conv (2x2 same, 32->64 channels, shrunk spatially) along one random direction."""
    x, w = f32(2, 6, 6, 32), f32(2, 2, 32, 64) * 0.2
    g = f32(2, 6, 6, 64).astype(np.float64)
    dx, dw, _ = _core.conv2d_backward(g.astype(np.float32), x, w, padding="same")
    for arg, grad in ((0, dx), (1, dw)):
        base = [x, w]
        d = f32(*base[arg].shape)
        plus, minus = list(base), list(base)
        plus[arg] = (base[arg] + 2.0**-4 * d).astype(np.float32)
        minus[arg] = (base[arg] - 2.0**-4 * d).astype(np.float32)
        step = plus[arg].astype(np.float64) - minus[arg].astype(np.float64)
        lhs = weighted_sum(_core.conv2d_forward(*plus, None, padding="same"), g) - weighted_sum(
            _core.conv2d_forward(*minus, None, padding="same"), g
        )
        assert lhs == pytest.approx(float(np.sum(grad.astype(np.float64) * step)), rel=1e-4)
