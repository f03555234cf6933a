"""Argument checks shared by layers, optimizers and the model: each names the argument, what was expected
and what was received."""

import math
import numbers


def shown(value):
    """repr() for messages, with NumPy scalars as plain numbers (5, not np.int64(5))."""
    if type(value).__module__ == "numpy" and hasattr(value, "item") and getattr(value, "ndim", None) == 0:
        value = value.item()
    return repr(value)


def _fail(exc, name, expected, value):
    raise exc(f"{name}: expected {expected}, got {shown(value)}")


def positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        _fail(TypeError if not isinstance(value, numbers.Integral) else ValueError, name,
              "a positive integer", value)
    return int(value)


# Largest kernel, pooling window or stride along one axis (the kernels' bindings enforce the same bound,
# kMaxWindow in cpp/bindings/core_checks.hpp): far above any image network's, and small enough that no index
# product in the kernels can overflow.
MAX_WINDOW = 1 << 16


def int_pair(name, value, maximum=None):
    """An int or a pair of ints (height, width), all >= 1 (and <= maximum) -> tuple of two ints."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        value = (value, value)
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        _fail(TypeError, name, "a positive integer or a tuple of 2 positive integers", value)
    for v in value:
        if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1:
            _fail(ValueError, name, "a positive integer or a tuple of 2 positive integers", value)
        if maximum is not None and v > maximum:
            _fail(ValueError, name, f"integers <= {maximum}", value)
    return (int(value[0]), int(value[1]))


def number(name, value, low=None, high=None, low_open=False, high_open=False):
    """A finite real number in [low, high] (ends optionally open) -> float."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        _fail(TypeError, name, "a number", value)
    value = float(value)
    ok = math.isfinite(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if not ok:
        lo = "-inf" if low is None else f"{low}"
        hi = "inf" if high is None else f"{high}"
        interval = f"{'(' if low_open or low is None else '['}{lo}, {hi}{')' if high_open or high is None else ']'}"
        _fail(ValueError, name, f"a finite number in {interval}", value)
    return value


def boolean(name, value):
    if not isinstance(value, bool):
        _fail(TypeError, name, "True or False", value)
    return value


def choice(name, value, options):
    """A string from `options` (case-insensitive) -> its lower-case form."""
    if not isinstance(value, str) or value.lower() not in options:
        _fail(ValueError, name, "one of " + ", ".join(repr(o) for o in options), value)
    return value.lower()


def optional_seed(name, value):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        _fail(ValueError, name, "None or a non-negative integer", value)
    return int(value)


def shape(name, value, rank=None):
    """A tuple of positive ints (optionally of a given rank), e.g. an input shape without the batch axis."""
    ok = isinstance(value, (tuple, list)) and len(value) >= 1
    ok = ok and all(isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= 1 for v in value)
    if ok and rank is not None:
        ok = len(value) == rank
    if not ok:
        what = "a tuple of positive integers" if rank is None else f"a tuple of {rank} positive integers"
        _fail(ValueError, name, what, value)
    return tuple(int(v) for v in value)
