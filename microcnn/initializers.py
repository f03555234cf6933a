"""Weight initialisers with Keras's names and formulas (fans from the HWIO / (in, out) layouts).

An initialiser built with `seed=n` returns the same values on every call; without a seed it draws from the
global generator that `microcnn.set_seed` resets.
"""

import numpy as np

from . import _seeding
from ._registry import Registry
from ._validation import optional_seed

# Keras divides the truncated-normal stddev by this so the truncated distribution has the asked-for variance.
_TRUNCATED_STDDEV_CORRECTION = 0.87962566103423978


def _fans(shape):
    if len(shape) < 1:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    if len(shape) == 2:
        return shape[0], shape[1]
    receptive_field = int(np.prod(shape[:-2]))
    return shape[-2] * receptive_field, shape[-1] * receptive_field


def _truncated_normal(rng, shape, stddev):
    """Normal(0, stddev) redrawn outside two standard deviations, as TensorFlow's truncated_normal."""
    out = rng.standard_normal(shape)
    bad = np.abs(out) > 2.0
    while bad.any():
        out[bad] = rng.standard_normal(int(bad.sum()))
        bad = np.abs(out) > 2.0
    return out * stddev


class Initializer:
    def __init__(self, seed=None):
        self.seed = optional_seed("seed", seed)

    def _rng(self):
        return np.random.default_rng(self.seed) if self.seed is not None else _seeding.global_rng()

    def __call__(self, shape):
        return np.ascontiguousarray(self._sample(tuple(int(s) for s in shape)), dtype=np.float32)

    def _sample(self, shape):
        raise NotImplementedError

    def get_config(self):
        return {"seed": self.seed}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


INITIALIZERS = Registry("initializer", Initializer)


@INITIALIZERS.register("zeros")
class Zeros(Initializer):
    def __init__(self):
        super().__init__(None)

    def _sample(self, shape):
        return np.zeros(shape)

    def get_config(self):
        return {}


@INITIALIZERS.register("ones")
class Ones(Zeros):
    def _sample(self, shape):
        return np.ones(shape)


class _VarianceScaling(Initializer):
    """Keras's VarianceScaling with a fixed (scale, mode, distribution)."""

    scale, mode, distribution = 1.0, "fan_avg", "uniform"

    def _sample(self, shape):
        fan_in, fan_out = _fans(shape)
        fan = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2.0}[self.mode]
        variance = self.scale / max(1.0, fan)
        rng = self._rng()
        if self.distribution == "uniform":
            limit = np.sqrt(3.0 * variance)
            return rng.uniform(-limit, limit, shape)
        return _truncated_normal(rng, shape, np.sqrt(variance) / _TRUNCATED_STDDEV_CORRECTION)


def _variance_scaling(class_name, name, scale, mode, distribution):
    """A registered _VarianceScaling subclass with Keras's name and fixed (scale, mode, distribution)."""
    cls = type(class_name, (_VarianceScaling,), {"scale": scale, "mode": mode, "distribution": distribution,
                                                 "__doc__": f"Keras's {class_name}: {name}."})
    return INITIALIZERS.register(name)(cls)


GlorotUniform = _variance_scaling("GlorotUniform", "glorot_uniform", 1.0, "fan_avg", "uniform")
GlorotNormal = _variance_scaling("GlorotNormal", "glorot_normal", 1.0, "fan_avg", "truncated_normal")
HeUniform = _variance_scaling("HeUniform", "he_uniform", 2.0, "fan_in", "uniform")
HeNormal = _variance_scaling("HeNormal", "he_normal", 2.0, "fan_in", "truncated_normal")


def get(identifier, argument="initializer"):
    """An Initializer from a name ("he_normal"), a Keras config dict ({"class_name", "config"}) or an
    instance."""
    return INITIALIZERS.get(identifier, argument)


def serialize(initializer):
    """The name for an unseeded built-in initialiser (Keras-readable), else a {"class_name", "config"} dict."""
    name = INITIALIZERS.short_name(initializer)
    if name is not None and initializer.get_config().get("seed") is None:
        return name
    return INITIALIZERS.serialize(initializer)
