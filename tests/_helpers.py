"""Helpers shared by the tests: seeded float32 arrays and the float32-vs-float64 comparison."""

import numpy as np


def rand(rng, *shape, scale=1.0, loc=0.0):
    """Normal(loc, scale) float32 array of `shape` from generator `rng`."""
    return (rng.standard_normal(shape) * scale + loc).astype(np.float32)


def rand_from(rng):
    """`rand = rand_from(RNG)`, then `rand(2, 3, scale=0.1)`: a module's arrays from its own generator."""
    return lambda *shape, scale=1.0, loc=0.0: rand(rng, *shape, scale=scale, loc=loc)


def assert_close(got, want, rtol=1e-4, atol_scale=None):
    """float32 result vs float64 reference: relative tolerance plus an absolute floor of `atol_scale` (default
    `rtol`) times the data's largest magnitude (at least 1), for values that cancel to near zero."""
    want = np.asarray(want, np.float64)
    atol = (rtol if atol_scale is None else atol_scale) * max(1.0, float(np.abs(want).max(initial=0.0)))
    np.testing.assert_allclose(np.asarray(got, np.float64), want, rtol=rtol, atol=atol)


def assert_config_round_trips(layer):
    """`type(layer).from_config(get_config())` and the registry (`Layer.from_config` of `serialize`) rebuild
    a layer with the same config."""
    from microcnn import layers

    config = layer.get_config()
    assert type(layer).from_config(config).get_config() == config
    generic = layers.Layer.from_config(layers.serialize(layer))
    assert type(generic) is type(layer) and generic.get_config() == config


def interrupt_at_epoch(monkeypatch, epoch):
    """Ctrl-C (a KeyboardInterrupt) as microcnn-train begins epoch `epoch` (0-based); returns the original
    hook, to put back for a resumed run."""
    from microcnn.cli import _training

    original = _training.Tracker.on_epoch_begin

    def interrupt(self, index, logs=None):
        if index == epoch:
            raise KeyboardInterrupt
        return original(self, index, logs)

    monkeypatch.setattr(_training.Tracker, "on_epoch_begin", interrupt)
    return original


def dense_operands(seed, n, k, m):
    """x (n, k), w (k, m), b (m,): standard-normal float32 operands of a Dense layer."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, k), dtype=np.float32)
    w = rng.standard_normal((k, m), dtype=np.float32)
    return x, w, rng.standard_normal(m, dtype=np.float32)
