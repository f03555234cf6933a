"""The global random state behind initialisers, shuffling and dropout masks.

`set_seed(n)` makes a run repeatable: every random draw in microcnn comes from one NumPy Generator, in an
order fixed by the program, so the same seed and the same kernel thread count give bit-identical weights.
"""

import random as _py_random

import numpy as np

_rng = np.random.default_rng()


def set_seed(seed):
    """Seed microcnn's initialisers, shuffling and dropout (and, as Keras does, Python's and NumPy's
    global generators)."""
    global _rng
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed: expected a non-negative integer, got {seed!r}")
    seed = int(seed)
    _rng = np.random.default_rng(seed)
    _py_random.seed(seed)
    np.random.seed(seed % 2**32)


def global_rng():
    """The generator every unseeded random draw in microcnn uses."""
    return _rng


def draw_seed():
    """A fresh 63-bit seed from the global generator (for dropout masks and per-fit shuffling)."""
    return int(_rng.integers(0, 2**63 - 1))
