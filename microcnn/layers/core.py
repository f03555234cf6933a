"""Input, Dense, Flatten, Dropout, Activation, ReLU and Softmax."""

import numpy as np

from .. import _core, _seeding
from .. import initializers as _initializers
from .._outer_gradient import OuterGradient
from .._validation import boolean, number, optional_seed, positive_int
from .._validation import shape as _shape
from . import _activations
from .base import Layer, recording, register


@register
class InputLayer(Layer):
    """Marks a model's input shape (without the batch axis); a Sequential keeps it out of `layers`."""

    def __init__(self, input_shape=None, batch_size=None, name=None, dtype=None, batch_input_shape=None,
                 **kwargs):
        if input_shape is None and batch_input_shape is not None:
            input_shape = tuple(batch_input_shape)[1:]
        if input_shape is None:
            raise ValueError("shape: expected a tuple of positive integers (without the batch axis), got None")
        super().__init__(name=name, dtype=dtype, input_shape=input_shape, **kwargs)
        if batch_size is not None:
            positive_int("batch_size", batch_size)
        self.batch_size = batch_size
        self.shape = self._batch_input_shape[1:]

    def forward(self, x, training=False, record=None):
        return x

    def backward(self, dy, need_dx=True):
        return dy

    def get_config(self):
        return {"batch_input_shape": [None, *self.shape], "name": self.name, "dtype": "float32"}


def Input(shape, batch_size=None, name=None, dtype=None):
    """`Input((150, 150, 3))` as the first layer of a Sequential sets its input shape."""
    return InputLayer(input_shape=_shape("shape", shape), batch_size=batch_size, name=name, dtype=dtype)


@register
class Dense(_activations.ActivationMixin, Layer):
    """y = activation(x @ kernel + bias); x (N, in), kernel (in, units), bias (units,)."""

    def __init__(self, units, activation=None, use_bias=True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", **kwargs):
        super().__init__(**kwargs)
        self.units = positive_int("units", units)
        self.activation = _activations.get(activation)
        self.use_bias = boolean("use_bias", use_bias)
        self.kernel_initializer = _initializers.get(kernel_initializer, "kernel_initializer")
        self.bias_initializer = _initializers.get(bias_initializer, "bias_initializer")

    def compute_output_shape(self, input_shape):
        if len(input_shape) != 2:
            raise ValueError(f"layer {self.name!r} (Dense): expected input of rank 2 (batch, features), got shape "
                             f"{tuple(input_shape)}; put a Flatten layer before it")
        return (input_shape[0], self.units)

    def build(self, input_shape):
        self.add_weight("kernel", (input_shape[-1], self.units), self.kernel_initializer)
        if self.use_bias:
            self.add_weight("bias", (self.units,), self.bias_initializer)

    def forward(self, x, training=False, logits=False, record=None):
        z = _core.dense_forward(x, self._weights["kernel"], self._weights.get("bias"),
                                relu=self.activation == "relu")
        y = self._activate(z, logits)
        self._cache = (x, y, logits) if recording(training, record) else None
        return y

    def backward(self, dy, need_dx=True, factored=False):
        """factored: leave the kernel gradient as an OuterGradient (x^T @ dz, computed when used; the plan asks
        for it for large kernels, which Adam then updates in one pass)."""
        x, y, logits = self._cache
        self._cache = None
        dz = self._activation_backward(dy, y, logits)
        kernel = self._weights["kernel"]
        dx, dw, db = _core.dense_backward(dz, x, kernel, need_dx=need_dx, need_db=self.use_bias,
                                          need_dw=not factored)
        if factored:
            dw = OuterGradient(x, dz, kernel)
        self.grads = {"kernel": dw, "bias": db} if self.use_bias else {"kernel": dw}
        return dx

    def get_config(self):
        return {**super().get_config(), "units": self.units, "activation": self.activation,
                "use_bias": self.use_bias,
                "kernel_initializer": _initializers.serialize(self.kernel_initializer),
                "bias_initializer": _initializers.serialize(self.bias_initializer)}


@register
class Flatten(Layer):
    """(N, d1, d2, ...) -> (N, d1*d2*...), in NHWC (row-major) order like Keras's channels_last."""

    def compute_output_shape(self, input_shape):
        return (input_shape[0], int(np.prod(input_shape[1:])))

    def forward(self, x, training=False, record=None):
        self._cache = x.shape if recording(training, record) else None
        return x.reshape(x.shape[0], -1)

    def backward(self, dy, need_dx=True):
        shape, self._cache = self._cache, None
        return dy.reshape(shape) if need_dx else None


@register
class Dropout(Layer):
    """Inverted dropout while training; identity otherwise. Masks come from a counter-based hash of
    (seed, step), so a seeded run is repeatable and independent of the thread count."""

    def __init__(self, rate, noise_shape=None, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.rate = number("rate", rate, 0.0, 1.0, high_open=True)
        if noise_shape is not None:
            raise ValueError(f"noise_shape: only None (an independent mask per element) is supported, "
                             f"got {noise_shape!r}")
        self.seed = optional_seed("seed", seed)
        self._mask_seed = None
        self._step = 0
        self.row_offset = 0  # under MPI: the first row of this rank's chunk in the global batch

    def forward(self, x, training=False, record=None):
        self._cache = None  # also when recording in inference mode: backward is then the identity
        if not training or self.rate == 0.0:
            return x
        if self._mask_seed is None:
            # Drawn at the first training step, from the global generator so that `set_seed` covers it.
            self._mask_seed = self.seed if self.seed is not None else _seeding.draw_seed()
        # The mask is keyed by the element's index in the global batch, the same for 1 or N processes.
        offset = self.row_offset * (x.size // max(len(x), 1))
        self._cache = (self._step, offset)
        return _core.dropout_forward(x, self.rate, self._mask_seed, self._step, offset)

    def commit_step(self):
        if self.rate > 0.0:
            self._step += 1  # the next step draws a new mask

    def backward(self, dy, need_dx=True):
        cached, self._cache = self._cache, None
        if cached is None:  # forward ran with rate 0
            return dy
        step, offset = cached
        return _core.dropout_backward(dy, self.rate, self._mask_seed, step, offset) if need_dx else None

    def get_training_state(self):
        seed = -1 if self._mask_seed is None else self._mask_seed  # -1: not drawn yet
        return {"mask_seed": np.array([seed], np.int64), "step": np.array([self._step], np.int64)}

    def set_training_state(self, state):
        if set(state) != {"mask_seed", "step"}:
            raise ValueError(f"layer {self.name!r}: expected training state mask_seed and step, got {sorted(state)}")
        seed, step = int(state["mask_seed"][0]), int(state["step"][0])
        if seed < -1 or step < 0:
            raise ValueError(f"layer {self.name!r}: bad training state mask_seed={seed}, step={step}")
        self._mask_seed, self._step = (None if seed == -1 else seed), step

    def get_config(self):
        return {**super().get_config(), "rate": self.rate, "noise_shape": None, "seed": self.seed}


@register
class Activation(_activations.ActivationMixin, Layer):
    """Activation("relu" | "softmax" | "linear")."""

    def __init__(self, activation, **kwargs):
        super().__init__(**kwargs)
        self.activation = _activations.get(activation)

    def forward(self, x, training=False, logits=False, record=None):
        y = _core.relu_forward(x) if self.activation == "relu" else self._activate(x, logits)
        self._cache = (y, logits) if recording(training, record) else None
        return y

    def backward(self, dy, need_dx=True):
        y, logits = self._cache
        self._cache = None
        return self._activation_backward(dy, y, logits) if need_dx else None

    def get_config(self):
        return {**super().get_config(), "activation": self.activation}


@register
class ReLU(Activation):
    """max(x, 0). Keras's max_value / negative_slope / threshold variants are not supported."""

    def __init__(self, max_value=None, negative_slope=0.0, threshold=0.0, **kwargs):
        if max_value is not None or negative_slope != 0 or threshold != 0:
            raise ValueError("ReLU: only max_value=None, negative_slope=0, threshold=0 are supported, got "
                             f"max_value={max_value!r}, negative_slope={negative_slope!r}, threshold={threshold!r}")
        super().__init__("relu", **kwargs)

    def get_config(self):
        config = super().get_config()
        del config["activation"]
        return config


@register
class Softmax(Activation):
    """Softmax over the last axis."""

    def __init__(self, axis=-1, **kwargs):
        if axis != -1:
            raise ValueError(f"axis: only -1 (the last axis) is supported, got {axis!r}")
        super().__init__("softmax", **kwargs)

    def get_config(self):
        config = super().get_config()
        del config["activation"]
        return {**config, "axis": -1}
