"""One Adam step on a dense kernel from the factors of its gradient (x^T @ dy), against dense_backward +
adam_update bit for bit, and the Sequential path that uses it for large Dense kernels."""

import numpy as np
import pytest
from _helpers import rand_from

import microcnn
from microcnn import _core, layers, optimizers
from microcnn._outer_gradient import FACTORED_MIN_WEIGHTS

RNG = np.random.default_rng(11)
rand = rand_from(RNG)

# (N, K, M): the update runs block by block (192 rows; K and M not multiples of the blocks or register tiles,
# and a batch deeper than one 256-deep GEMM slice), the seed net's 28x28 kernel among them; with a long batch
# for a small kernel (the GEMM splits the batch sum over threads) dw is computed whole.
CASES = [(5, 4500, 240), (3, 4099, 257), (300, 4200, 250), (4, 30, 20), (7, 4096, 256), (32, 3136, 256),
         (2100, 40, 30)]



@pytest.mark.parametrize("case", CASES, ids=str)
def test_dense_adam_update_matches_backward_then_adam_bit_for_bit(case, isa, threads):
    n, k, m = case
    x, dy = rand(n, k), rand(n, m, scale=0.1)
    w, mom, vel = rand(k, m, scale=0.05), rand(k, m, scale=0.01), np.abs(rand(k, m, scale=1e-4))
    w2, mom2, vel2 = w.copy(), mom.copy(), vel.copy()
    for step in (1, 7):
        _core.dense_adam_update(w, x, dy, mom, vel, 4e-4, 0.9, 0.999, 1e-7, step)
        _, dw, _ = _core.dense_backward(dy, x, w2, need_dx=False, need_db=False)
        _core.adam_update(w2, dw, mom2, vel2, 4e-4, 0.9, 0.999, 1e-7, step)
        np.testing.assert_array_equal(w, w2)
        np.testing.assert_array_equal(mom, mom2)
        np.testing.assert_array_equal(vel, vel2)


def test_dense_adam_update_against_numpy():
    n, k, m = 6, 4500, 240
    x, dy, w = rand(n, k), rand(n, m), rand(k, m)
    mom, vel = np.zeros_like(w), np.zeros_like(w)
    w0 = w.copy()
    _core.dense_adam_update(w, x, dy, mom, vel, 1e-3)
    g = x.astype(np.float64).T @ dy.astype(np.float64)
    np.testing.assert_allclose(mom, 0.1 * g, rtol=1e-4, atol=1e-5 * np.abs(g).max())
    np.testing.assert_allclose(vel, 0.001 * g * g, rtol=1e-3, atol=1e-8 * (g * g).max())
    # step 1: the update is lr * m_hat / (sqrt(v_hat) + eps) = lr * sign(g) wherever g is not tiny
    big = np.abs(g) > 1e-2 * np.abs(g).max()
    np.testing.assert_allclose((w0 - w)[big], 1e-3 * np.sign(g[big]), rtol=1e-3)


def test_dense_backward_can_skip_dw():
    x, w, dy = rand(4, 9), rand(9, 5), rand(4, 5)
    for module in (_core, _core.reference):
        dx, dw, db = module.dense_backward(dy, x, w, need_dw=False)
        assert dw is None
        full = module.dense_backward(dy, x, w)
        np.testing.assert_array_equal(dx, full[0])
        np.testing.assert_array_equal(db, full[2])


@pytest.mark.parametrize(
    ("kwargs", "error", "name"),
    [
        ({"x": np.ones((3, 7), np.float32)}, ValueError, "x"),
        ({"dy": np.ones((3, 4), np.float32)}, ValueError, "dy"),
        ({"m": np.ones((5, 6), np.float32)}, ValueError, "m"),
        ({"v": np.ones((6, 5), np.float64)}, TypeError, "v"),
        ({"param": np.ones(30, np.float32)}, ValueError, "param"),
        ({"step": 0}, ValueError, "step"),
        ({"beta_2": 1.0}, ValueError, "beta_2"),
    ],
)
def test_dense_adam_update_rejects_bad_arguments(kwargs, error, name):
    args = {"param": np.ones((6, 5), np.float32), "x": np.ones((3, 6), np.float32),
            "dy": np.ones((3, 5), np.float32), "m": np.zeros((6, 5), np.float32),
            "v": np.zeros((6, 5), np.float32), "learning_rate": 1e-3}
    args.update(kwargs)
    with pytest.raises(error, match=name):
        _core.dense_adam_update(**args)
    readonly = np.ones((6, 5), np.float32)
    readonly.flags.writeable = False
    with pytest.raises(ValueError, match="param"):
        _core.dense_adam_update(readonly, args["x"], args["dy"], args["m"], args["v"], 1e-3)


def _wide_model(optimizer, seed):
    """A Dense kernel of 4200 x 256 (above the factoring threshold) and a small one."""
    microcnn.set_seed(seed)
    layers.clear_session()
    model = microcnn.Sequential([layers.Input((4200,)), layers.Dense(256, activation="relu"),
                                 layers.Dense(3, activation="softmax")])
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy")
    return model


@pytest.mark.parametrize("make_optimizer", [
    lambda: optimizers.Adam(learning_rate=1e-3),
    lambda: optimizers.SGD(learning_rate=0.05, momentum=0.9),
], ids=["adam", "sgd"])
def test_factored_kernel_gradient_trains_bit_identically(make_optimizer, monkeypatch):
    assert 4200 * 256 > FACTORED_MIN_WEIGHTS
    x = rand(12, 4200)
    y = RNG.integers(0, 3, size=12)
    fused_calls = []
    fused = _core.dense_adam_update

    def spy(*args):
        fused_calls.append(args[0].shape)
        return fused(*args)

    monkeypatch.setattr(optimizers._core, "dense_adam_update", spy)
    factored = _wide_model(make_optimizer(), seed=5)
    for i in range(3):
        factored.train_on_batch(x[4 * i:4 * i + 4], y[4 * i:4 * i + 4])
    is_adam = isinstance(factored.optimizer, optimizers.Adam)
    assert fused_calls == ([(4200, 256)] * 3 if is_adam else [])
    plain = _wide_model(make_optimizer(), seed=5)
    plain.fuse_dense_update = False  # every gradient as an array before the update
    for i in range(3):
        plain.train_on_batch(x[4 * i:4 * i + 4], y[4 * i:4 * i + 4])
    for u, v in zip(factored.get_weights(), plain.get_weights()):
        np.testing.assert_array_equal(u, v)
    state, expected = factored.optimizer.get_state(), plain.optimizer.get_state()
    assert state.keys() == expected.keys() and all(np.array_equal(state[k], expected[k]) for k in state)


def test_gradients_of_a_factored_kernel_are_arrays():
    x, y = rand(5, 4200), RNG.integers(0, 3, size=5)
    _, grads = _wide_model("adam", seed=3)._gradients(x, y)
    unfused = _wide_model("adam", seed=3)
    unfused.fuse_dense_update = False
    _, expected = unfused._gradients(x, y)
    assert grads.keys() == expected.keys()
    for name, grad in grads.items():
        assert isinstance(grad, np.ndarray) and grad.dtype == np.float32
        np.testing.assert_array_equal(grad, expected[name])
    assert any(g.shape == (4200, 256) and np.abs(g).max() > 0 for g in grads.values())


def test_dense_adam_update_does_not_depend_on_the_thread_count():
    # every element of dw is one GEMM dot product and the update is element-wise, whatever the split
    x, dy = rand(9, 4500), rand(9, 240)
    start = rand(4500, 240), rand(4500, 240, scale=0.01), np.abs(rand(4500, 240, scale=1e-3))
    before = _core.get_num_threads()
    results = []
    try:
        for n in (1, 2):
            _core.set_num_threads(n)
            w, mom, vel = (a.copy() for a in start)
            _core.dense_adam_update(w, x, dy, mom, vel, 1e-3, step=4)
            results.append((w, mom, vel))
    finally:
        _core.set_num_threads(before)
    for one, two in zip(*results):
        np.testing.assert_array_equal(one, two)
