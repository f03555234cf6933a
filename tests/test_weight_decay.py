"""Decoupled weight decay (Keras 3's `weight_decay` / AdamW) against a NumPy transcription of Keras's rule:
w <- w - w * wd * lr, then the optimizer's own update with the gradient."""

import numpy as np
import pytest

from microcnn import optimizers


def adam_reference(w, g, m, v, lr, step, b1=0.9, b2=0.999, eps=1e-7):
    m = m + (g - m) * (1 - b1)
    v = v + (g * g - v) * (1 - b2)
    alpha = lr * np.sqrt(1 - b2**step) / (1 - b1**step)
    return w - m * alpha / (np.sqrt(v) + eps), m, v


def arrays(seed, n=50):
    rng = np.random.default_rng(seed)
    return rng.normal(size=n).astype(np.float32), rng.normal(size=n).astype(np.float32)


@pytest.mark.parametrize("cls", [optimizers.AdamW, optimizers.Adam])
def test_adamw_matches_reference_over_steps(cls):
    w, _ = arrays(0)
    opt = cls(learning_rate=0.01, weight_decay=0.05)
    ref = w.astype(np.float64)
    m = np.zeros_like(ref)
    v = np.zeros_like(ref)
    for step in range(1, 6):
        _, g = arrays(step)
        opt.apply_gradients([(g, w)], ["layers.0.dense.kernel"])
        ref = ref - ref * 0.05 * 0.01
        ref, m, v = adam_reference(ref, g.astype(np.float64), m, v, 0.01, step)
    np.testing.assert_allclose(w, ref, rtol=1e-5, atol=1e-6)


def test_sgd_weight_decay_and_exclusion():
    w, g = arrays(1)
    b, gb = arrays(2)
    w0, b0 = w.copy(), b.copy()
    opt = optimizers.SGD(learning_rate=0.1, weight_decay=0.5)
    opt.exclude_from_weight_decay(var_names=["bias"])
    opt.apply_gradients([(g, w), (gb, b)], ["layers.0.dense.kernel", "layers.0.dense.bias"])
    np.testing.assert_allclose(w, w0 - w0 * 0.05 - 0.1 * g, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(b, b0 - 0.1 * gb, rtol=1e-6, atol=1e-7)  # excluded: plain SGD


def test_zero_or_none_weight_decay_is_plain_adam():
    w1, g = arrays(3)
    w2 = w1.copy()
    optimizers.Adam(0.01).apply_gradients([(g, w1)], ["k"])
    optimizers.AdamW(0.01, weight_decay=0.0).apply_gradients([(g, w2)], ["k"])
    np.testing.assert_array_equal(w1, w2)


def test_config_round_trip_keeps_decay_and_exclusions():
    opt = optimizers.AdamW(learning_rate=2e-3, weight_decay=0.01)
    opt.exclude_from_weight_decay(var_names=["gamma", "beta"])
    again = optimizers.deserialize(optimizers.serialize(opt))
    assert isinstance(again, optimizers.AdamW)
    assert again.weight_decay == 0.01 and again.get_config() == opt.get_config()
    assert again._decays("layers.0.conv2d.kernel") and not again._decays("layers.1.batch_normalization.gamma")
    assert isinstance(optimizers.get("adamw"), optimizers.AdamW)
    assert optimizers.get("adamw").weight_decay == 0.004  # Keras's default


@pytest.mark.parametrize("kwargs, match", [
    ({"weight_decay": -0.1}, "weight_decay"),
    ({"weight_decay": "lots"}, "weight_decay"),
])
def test_bad_weight_decay_is_named(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        optimizers.Adam(**kwargs)
    with pytest.raises(ValueError, match="weight_decay"):
        optimizers.AdamW(weight_decay=None)
    with pytest.raises(ValueError, match="var_names"):
        optimizers.SGD().exclude_from_weight_decay(var_names=[""])
