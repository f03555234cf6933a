"""Adam and SGD with Keras's update rules; the updates run in C++ in place.

`learning_rate` is a plain attribute: a float, or a callable schedule `lr(step) -> float` evaluated with the
0-based `iterations` count before each step (callbacks may change it between steps). Per-weight state
(Adam's m and v, SGD's velocity) is keyed by the weight's stable name, so `get_state()` / `set_state()` can
export it to a file and a resumed run continues exactly where it stopped.

`weight_decay` is Keras 3's decoupled weight decay: before each update, every trainable weight not excluded
with `exclude_from_weight_decay` is shrunk in place, `w -= w * weight_decay * lr` (AdamW's rule).
"""

import numpy as np

from . import _core, schedules
from ._outer_gradient import OuterGradient
from ._registry import Registry
from ._validation import boolean, number


class Optimizer:
    slot_names = ()
    # Whether _update applies an OuterGradient (a large Dense kernel's gradient kept as x^T @ dy) itself;
    # otherwise it gets the gradient as an array.
    _takes_outer_gradients = False

    def __init__(self, learning_rate, name=None, weight_decay=None):
        self.name = name or type(self).__name__
        self.learning_rate = learning_rate
        self.weight_decay = None if weight_decay is None else number("weight_decay", weight_decay, 0.0)
        self._exclude_names = ()
        self.iterations = 0
        self._slots = {}

    def exclude_from_weight_decay(self, var_list=None, var_names=None):
        """Keras's rule: weights whose name contains any of `var_names` (e.g. "bias", "gamma", "beta") are not
        decayed. `var_list` (weight arrays) is not supported: weights here are named, not objects."""
        if var_list:
            raise ValueError("var_list: not supported; exclude weights by (part of) their name with var_names")
        names = [var_names] if isinstance(var_names, str) else list(var_names or ())
        for n in names:
            if not isinstance(n, str) or not n:
                raise ValueError(f"var_names: expected non-empty strings, got {n!r}")
        self._exclude_names = tuple(self._exclude_names) + tuple(names)

    def _decays(self, name):
        return bool(self.weight_decay) and not any(part in name for part in self._exclude_names)

    # --- learning rate ---------------------------------------------------------------------------------
    @property
    def learning_rate(self):
        return self._learning_rate

    @learning_rate.setter
    def learning_rate(self, value):
        if not callable(value):
            value = number("learning_rate", value, 0.0)
        self._learning_rate = value

    # Keras 2 spelled it `lr`; old scripts and callbacks still do.
    lr = learning_rate

    def current_learning_rate(self):
        """The learning rate the next step uses."""
        lr = self._learning_rate
        if callable(lr):
            return number("learning_rate (from the schedule)", lr(self.iterations), 0.0)
        return lr

    # --- updates ---------------------------------------------------------------------------------------
    def apply_gradients(self, grads_and_vars, names=None):
        """Update each variable in place with its gradient, then count one step. `names` (stable per
        variable, e.g. "layers.0.conv2d.kernel") key the optimizer state; positions are used without them."""
        grads_and_vars = list(grads_and_vars)
        names = list(names) if names is not None else [f"variable_{i}" for i in range(len(grads_and_vars))]
        lr = self.current_learning_rate()
        for (grad, var), name in zip(grads_and_vars, names):
            slots = self._slots.get(name)
            if slots is None:
                slots = self._slots[name] = {s: np.zeros_like(var) for s in self.slot_names}
            if self._decays(name):
                var -= var * np.float32(self.weight_decay * lr)
            if not (isinstance(grad, OuterGradient) and self._takes_outer_gradients):
                grad = np.ascontiguousarray(grad, dtype=np.float32)
            self._update(var, grad, slots, lr)
        self.iterations += 1

    def _update(self, var, grad, slots, lr):
        raise NotImplementedError

    # --- state (for resuming) --------------------------------------------------------------------------
    def get_state(self):
        """{"iterations": int64 array, "<variable name>.<slot>": array, ...}: everything a resume needs."""
        state = {"iterations": np.array(self.iterations, dtype=np.int64)}
        for name, slots in self._slots.items():
            for slot, value in slots.items():
                state[f"{name}.{slot}"] = value.copy()
        return state

    def set_state(self, state, variables=None):
        """Restore `get_state()` output. With `variables` ({name: array}) every entry must belong to one of
        them with its shape; raises ValueError otherwise."""
        state = dict(state)
        if "iterations" not in state:
            raise ValueError("optimizer state: missing 'iterations'")
        iterations = np.asarray(state.pop("iterations"))
        if iterations.shape != () or not np.issubdtype(iterations.dtype, np.integer) or iterations < 0:
            raise ValueError(f"optimizer state: 'iterations' must be a non-negative integer scalar, got {iterations!r}")
        slots = {}
        for key, value in state.items():
            name, _, slot = key.rpartition(".")
            if slot not in self.slot_names or not name:
                raise ValueError(f"optimizer state: unexpected entry {key!r} for {type(self).__name__} "
                                 f"(slots: {', '.join(self.slot_names) or 'none'})")
            slots.setdefault(name, {})[slot] = np.ascontiguousarray(value, dtype=np.float32)
        for name, entry in slots.items():
            missing = set(self.slot_names) - set(entry)
            if missing:
                raise ValueError(f"optimizer state: {name!r} lacks {', '.join(sorted(missing))}")
        if variables is not None:
            # Slots are created lazily, so a weight may have none yet (e.g. a layer unfrozen later).
            for name, entry in slots.items():
                if name not in variables:
                    raise ValueError(f"optimizer state: {name!r} is not a weight of this model")
                for slot, value in entry.items():
                    if value.shape != variables[name].shape:
                        raise ValueError(f"optimizer state: {name}.{slot} has shape {value.shape}, the weight "
                                         f"has {variables[name].shape}")
        self._slots = slots
        self.iterations = int(iterations)

    # --- config ----------------------------------------------------------------------------------------
    def get_config(self):
        lr = self._learning_rate
        if callable(lr):
            lr = ({"class_name": type(lr).__name__, "config": lr.get_config()} if hasattr(lr, "get_config")
                  else self.current_learning_rate())
        config = {"name": self.name, "learning_rate": lr, "weight_decay": self.weight_decay}
        if self._exclude_names:
            config["exclude_from_weight_decay"] = list(self._exclude_names)
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        lr = config.get("learning_rate")
        if isinstance(lr, dict):
            config["learning_rate"] = schedules.SCHEDULES.deserialize(lr, "learning_rate")
        exclude = config.pop("exclude_from_weight_decay", None)
        optimizer = cls(**config)
        if exclude:
            optimizer.exclude_from_weight_decay(var_names=exclude)
        return optimizer


OPTIMIZERS = Registry("optimizer", Optimizer)


@OPTIMIZERS.register("sgd")
class SGD(Optimizer):
    """Keras SGD: v = momentum*v - lr*g; w += v (or, nesterov, w += momentum*v - lr*g)."""

    def __init__(self, learning_rate=0.01, momentum=0.0, nesterov=False, weight_decay=None, name=None, lr=None):
        super().__init__(learning_rate if lr is None else lr, name, weight_decay)
        self.momentum = number("momentum", momentum, 0.0, 1.0)
        self.nesterov = boolean("nesterov", nesterov)
        self.slot_names = ("velocity",) if self.momentum > 0 else ()

    def _update(self, var, grad, slots, lr):
        _core.sgd_update(var, grad, slots.get("velocity"), lr, self.momentum, self.nesterov)

    def get_config(self):
        return {**super().get_config(), "momentum": self.momentum, "nesterov": self.nesterov}


@OPTIMIZERS.register("adam")
class Adam(Optimizer):
    """Keras Adam (epsilon added to sqrt(v_hat) in Keras's "epsilon hat" form)."""

    slot_names = ("m", "v")

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, amsgrad=False,
                 weight_decay=None, name=None, lr=None):
        super().__init__(learning_rate if lr is None else lr, name, weight_decay)
        self.beta_1 = number("beta_1", beta_1, 0.0, 1.0, high_open=True)
        self.beta_2 = number("beta_2", beta_2, 0.0, 1.0, high_open=True)
        self.epsilon = number("epsilon", epsilon, 0.0, low_open=True)
        if amsgrad:
            raise ValueError("amsgrad: only False is supported, got True")

    _takes_outer_gradients = True

    def _update(self, var, grad, slots, lr):
        if isinstance(grad, OuterGradient):  # one pass over the kernel and its moments, no gradient array
            _core.dense_adam_update(var, grad.x, grad.dy, slots["m"], slots["v"], lr, self.beta_1, self.beta_2,
                                    self.epsilon, self.iterations + 1)
            return
        _core.adam_update(var, grad, slots["m"], slots["v"], lr, self.beta_1, self.beta_2, self.epsilon,
                          self.iterations + 1)

    def get_config(self):
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2, "epsilon": self.epsilon}


@OPTIMIZERS.register("adamw")
class AdamW(Adam):
    """Keras AdamW: Adam with decoupled weight decay, 0.004 by default."""

    def __init__(self, learning_rate=0.001, weight_decay=0.004, beta_1=0.9, beta_2=0.999, epsilon=1e-7,
                 amsgrad=False, name=None, lr=None):
        if weight_decay is None:
            raise ValueError("weight_decay: AdamW needs a number >= 0, got None")
        super().__init__(learning_rate, beta_1, beta_2, epsilon, amsgrad, weight_decay, name, lr)


# An Optimizer from "adam" / "adamw" / "sgd", a {"class_name", "config"} dict or an instance; and back.
get, serialize, deserialize = OPTIMIZERS.get, OPTIMIZERS.serialize, OPTIMIZERS.deserialize
