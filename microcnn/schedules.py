"""Learning-rate schedules: callables mapping the optimizer step (0-based count of updates already applied) to a
learning rate, with Keras names and semantics (`keras.optimizers.schedules`).

A schedule is pure: the same step always gives the same rate, so resuming a run resumes its schedule.
"""

import math
import numbers

from ._registry import Registry

__all__ = ["CosineDecay", "LearningRateSchedule", "OneCycle", "deserialize", "serialize"]


def _number(name, value, low=None, low_open=False, high=None):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: expected a number, got {value!r}")
    value = float(value)
    ok = math.isfinite(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value <= high
    if not ok:
        bounds = f"{'>' if low_open else '>='} {low}" if low is not None else "finite"
        if high is not None:
            bounds += f" and <= {high}"
        raise ValueError(f"{name}: expected a finite number {bounds}, got {value!r}")
    return value


def _count(name, value, low):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ValueError(f"{name}: expected an integer >= {low}, got {value!r}")
    return int(value)


def _step(step):
    if isinstance(step, bool) or not isinstance(step, numbers.Real) or not step >= 0:
        raise ValueError(f"step: expected a number >= 0, got {step!r}")
    return float(step)


class LearningRateSchedule:
    """Base class: subclasses implement `__call__(step) -> float` and `get_config()`."""

    def __call__(self, step):
        raise NotImplementedError

    def get_config(self):
        raise NotImplementedError

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


SCHEDULES = Registry("schedule", LearningRateSchedule)


@SCHEDULES.register()
class CosineDecay(LearningRateSchedule):
    """Keras CosineDecay: optional linear warmup from `initial_learning_rate` to `warmup_target` over
    `warmup_steps`, then a cosine from the peak down to `alpha * peak` over `decay_steps`, constant after.
    The peak is `warmup_target` when given, else `initial_learning_rate`."""

    def __init__(
        self,
        initial_learning_rate,
        decay_steps,
        alpha=0.0,
        name="CosineDecay",
        warmup_target=None,
        warmup_steps=0,
    ):
        self.initial_learning_rate = _number("initial_learning_rate", initial_learning_rate, low=0.0)
        self.decay_steps = _count("decay_steps", decay_steps, 1)
        self.alpha = _number("alpha", alpha, low=0.0, high=1.0)
        if not isinstance(name, str):
            raise TypeError(f"name: expected a string, got {name!r}")
        self.name = name
        self.warmup_target = (
            None if warmup_target is None else _number("warmup_target", warmup_target, low=0.0)
        )
        self.warmup_steps = _count("warmup_steps", warmup_steps, 0)

    def _decay(self, step, peak):
        fraction = min(step, self.decay_steps) / self.decay_steps
        cosine = 0.5 * (1.0 + math.cos(math.pi * fraction))
        return peak * ((1.0 - self.alpha) * cosine + self.alpha)

    def __call__(self, step):
        step = _step(step)
        if self.warmup_target is None:
            return self._decay(step, self.initial_learning_rate)
        if step < self.warmup_steps:
            fraction = step / self.warmup_steps
            return self.initial_learning_rate + (self.warmup_target - self.initial_learning_rate) * fraction
        return self._decay(step - self.warmup_steps, self.warmup_target)

    def get_config(self):
        return {
            "initial_learning_rate": self.initial_learning_rate,
            "decay_steps": self.decay_steps,
            "alpha": self.alpha,
            "name": self.name,
            "warmup_target": self.warmup_target,
            "warmup_steps": self.warmup_steps,
        }


@SCHEDULES.register()
class OneCycle(LearningRateSchedule):
    """The one-cycle policy (Smith & Topin 2018, as PyTorch's OneCycleLR with cosine annealing): from
    `max_learning_rate / div_factor` up to `max_learning_rate` over the first `pct_start` of `total_steps`,
    then down to `max_learning_rate / (div_factor * final_div_factor)` at `total_steps`, constant after."""

    def __init__(self, max_learning_rate, total_steps, pct_start=0.3, div_factor=25.0, final_div_factor=1e4):
        self.max_learning_rate = _number("max_learning_rate", max_learning_rate, low=0.0)
        self.total_steps = _count("total_steps", total_steps, 2)
        self.pct_start = _number("pct_start", pct_start, low=0.0, high=1.0)
        self.div_factor = _number("div_factor", div_factor, low=0.0, low_open=True)
        self.final_div_factor = _number("final_div_factor", final_div_factor, low=0.0, low_open=True)

    @staticmethod
    def _cosine(start, end, fraction):
        return end + (start - end) * 0.5 * (1.0 + math.cos(math.pi * fraction))

    def __call__(self, step):
        step = min(_step(step), self.total_steps - 1)
        initial = self.max_learning_rate / self.div_factor
        final = initial / self.final_div_factor
        # The peak is reached at step `up` (PyTorch: pct_start * total_steps - 1) and the floor at the last step.
        up = max(self.pct_start * self.total_steps - 1.0, 0.0)
        last = self.total_steps - 1.0
        if step <= up and up > 0:
            return self._cosine(initial, self.max_learning_rate, step / up)
        return self._cosine(self.max_learning_rate, final, (step - up) / (last - up) if last > up else 1.0)

    def get_config(self):
        return {
            "max_learning_rate": self.max_learning_rate,
            "total_steps": self.total_steps,
            "pct_start": self.pct_start,
            "div_factor": self.div_factor,
            "final_div_factor": self.final_div_factor,
        }


def serialize(schedule):
    """A schedule -> {"class_name": ..., "config": {...}} (JSON-ready)."""
    if not isinstance(schedule, LearningRateSchedule):
        raise TypeError(f"schedule: expected a LearningRateSchedule, got {schedule!r}")
    return SCHEDULES.serialize(schedule)


def deserialize(config):
    """The inverse of `serialize`."""
    return SCHEDULES.deserialize(config, "config")
