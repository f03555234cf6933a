"""The Layer base class and the layer registry that `from_config` and `load_model` use.

A layer owns its weights (float32, C-contiguous NumPy arrays in Keras's layouts) and is a forward/backward
pair over whole batches:

- `build(input_shape)` creates the weights once the input shape (batch axis first, as None) is known;
- `compute_output_shape(input_shape)`;
- `forward(x, training, record=None)` returns the output and, only when `record` (default: `training`) is
  true, keeps what `backward` needs (an inference-mode pass may record too, for gradients with respect to
  inputs, e.g. Grad-CAM);
- `backward(dy, need_dx)` returns dL/dx (or None) and leaves dL/dw in `self.grads[weight_name]`, then drops
  the cached activations. A layer reads and writes only its own state: fusing layers is the execution plan's
  business (microcnn/plan.py). A gradient is an array, or an array-like the optimizer may apply without
  materialising it (a large Dense kernel's `OuterGradient`, see microcnn/_outer_gradient.py); `np.asarray`
  gives the array.

A new layer type subclasses Layer, creates weights with `add_weight` (trainable=False for state such as
moving statistics, which come after the trainable weights as in Keras), and is decorated with `@register`.
State that a training step changes besides the weights (moving statistics, dropout counters) should be
computed in `forward` but stored in `commit_step()`, which the model calls together with the optimizer update
(and Ctrl-C held off), so an interrupted step leaves no trace.
"""

import contextlib
import re

import numpy as np

from .. import _infer_path
from .._registry import Registry
from .._validation import boolean
from .._validation import shape as _shape

_NAME_COUNTS = {}
_initialize = True


@contextlib.contextmanager
def skip_initialization():
    """Build layers with zero-filled weights (no random draws): for loading, where they are overwritten."""
    global _initialize
    previous, _initialize = _initialize, False
    try:
        yield
    finally:
        _initialize = previous


def register(cls):
    """Class decorator: make a layer type known to `deserialize` (and so to `load_model`)."""
    return LAYERS.register()(cls)


def to_snake_case(name):
    """Keras's layer-name rule: Conv2D -> conv2d, MaxPooling2D -> max_pooling2d, ReLU -> re_lu."""
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()


def unique_name(base):
    """conv2d, conv2d_1, conv2d_2, ... per process, as Keras names layers."""
    count = _NAME_COUNTS.get(base, 0)
    _NAME_COUNTS[base] = count + 1
    return base if count == 0 else f"{base}_{count}"


def clear_session():
    """Restart automatic layer/model naming (Keras's `clear_session`)."""
    _NAME_COUNTS.clear()


def recording(training, record):
    """Whether a forward pass keeps what backward needs: `record`, or by default `training`."""
    return training if record is None else record


def format_shape(shape):
    return "(" + ", ".join("None" if s is None else str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"


class Layer:
    def __init__(self, name=None, trainable=True, input_shape=None, batch_input_shape=None, dtype=None):
        if name is None:
            name = unique_name(to_snake_case(type(self).__name__))
        if not isinstance(name, str) or not name or "/" in name:
            raise ValueError(f"name: expected a non-empty string without '/', got {name!r}")
        self.name = name
        self.trainable = boolean("trainable", trainable)
        if dtype not in (None, "float32"):
            raise ValueError(f"dtype: expected None or 'float32' (microcnn computes in float32), got {dtype!r}")
        if input_shape is not None:
            batch_input_shape = (None,) + _shape("input_shape", input_shape)
        elif batch_input_shape is not None:
            if not isinstance(batch_input_shape, (tuple, list)) or len(batch_input_shape) < 2:
                raise ValueError(f"batch_input_shape: expected (batch or None, ...), got {batch_input_shape!r}")
            batch_input_shape = (None,) + _shape("batch_input_shape", tuple(batch_input_shape)[1:])
        # Keras lets the first layer of a Sequential carry the model's input shape.
        self._batch_input_shape = batch_input_shape
        self.built = False
        self.input_shape = None
        self.output_shape = None
        self._weights = {}
        self._trainable_names = []
        self._non_trainable_names = []
        self.grads = {}
        self._cache = None

    # --- weights ---------------------------------------------------------------------------------------
    def add_weight(self, name, shape, initializer, trainable=True):
        if _initialize:
            value = np.ascontiguousarray(initializer(shape), dtype=np.float32)
        else:
            value = np.zeros(shape, dtype=np.float32)
        self._weights[name] = value
        (self._trainable_names if trainable else self._non_trainable_names).append(name)
        return value

    @property
    def trainable_weight_names(self):
        return list(self._trainable_names) if self.trainable else []

    @property
    def non_trainable_weight_names(self):
        frozen = [] if self.trainable else list(self._trainable_names)
        return frozen + list(self._non_trainable_names)

    @property
    def weight_names(self):
        """Names of `weights`, in Keras's order: trainable ones, then non-trainable ones."""
        return self.trainable_weight_names + self.non_trainable_weight_names

    @property
    def trainable_weights(self):
        return [self._weights[n] for n in self.trainable_weight_names]

    @property
    def non_trainable_weights(self):
        return [self._weights[n] for n in self.non_trainable_weight_names]

    @property
    def weights(self):
        return [self._weights[n] for n in self.weight_names]

    def get_weights(self):
        return [w.copy() for w in self.weights]

    def set_weights(self, weights):
        """Copy `weights` (Keras's order and layouts) into this layer's arrays, checking count and shapes."""
        names = self.weight_names
        weights = list(weights)
        if len(weights) != len(names):
            raise ValueError(f"layer {self.name!r}: set_weights expected {len(names)} arrays ({', '.join(names)}), "
                             f"got {len(weights)}")
        arrays = []
        for name, value in zip(names, weights):
            value = np.asarray(value)
            target = self._weights[name]
            if value.shape != target.shape:
                raise ValueError(f"layer {self.name!r}: weight {name!r} expected shape {target.shape}, "
                                 f"got {value.shape}")
            arrays.append(value)
        for name, value in zip(names, arrays):
            # In place, so optimizer state and other references keep pointing at the live array.
            np.copyto(self._weights[name], value, casting="unsafe")
        _infer_path.weights_written()

    def get_training_state(self):
        """{name: int64/float32 array} of non-weight state a resumed run needs to continue exactly (e.g. a
        dropout layer's mask counter); saved with the optimizer state. Most layers have none."""
        return {}

    def set_training_state(self, state):
        if state:
            raise ValueError(f"layer {self.name!r}: unexpected training state {sorted(state)}")

    def count_params(self):
        return int(sum(w.size for w in self.weights))

    # --- shapes ----------------------------------------------------------------------------------------
    def ensure_built(self, input_shape):
        """Validate `input_shape` (batch axis first) and build once; returns the output shape."""
        input_shape = (None,) + tuple(int(s) for s in input_shape[1:])
        if self.built:
            if input_shape[1:] != self.input_shape[1:]:
                raise ValueError(f"layer {self.name!r} was built for input shape {format_shape(self.input_shape)}, "
                                 f"got {format_shape(input_shape)}")
            return self.output_shape
        output_shape = tuple(self.compute_output_shape(input_shape))
        self.build(input_shape)
        self.input_shape, self.output_shape, self.built = input_shape, output_shape, True
        return output_shape

    def build(self, input_shape):
        """Create the weights for `input_shape` (batch axis first). Layers without weights need nothing."""

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    # --- computation -----------------------------------------------------------------------------------
    def forward(self, x, training=False, record=None):
        raise NotImplementedError

    def backward(self, dy, need_dx=True):
        raise NotImplementedError

    def commit_step(self):
        """Called after each completed training step, atomically with the optimizer update."""

    def clear_cache(self):
        self._cache = None

    @property
    def ends_in_softmax(self):
        """True when the output is a softmax over the last axis; such layers accept `forward(..., logits=True)`
        (skip the softmax) so the plan can use the fused softmax + cross-entropy kernel."""
        return False

    def __call__(self, x):
        x = np.ascontiguousarray(x, dtype=np.float32)
        self.ensure_built((None,) + x.shape[1:])
        return self.forward(x, training=False)

    # --- config ----------------------------------------------------------------------------------------
    def get_config(self):
        config = {"name": self.name, "trainable": self.trainable, "dtype": "float32"}
        if self._batch_input_shape is not None:
            config["batch_input_shape"] = list(self._batch_input_shape)
        return config

    @classmethod
    def from_config(cls, config):
        """`Conv2D.from_config(conv.get_config())`; on the base class, `Layer.from_config(serialize(layer))`
        picks the type from the registry."""
        if cls is Layer:
            return deserialize(config)
        return cls(**config)

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name!r}>"


LAYERS = Registry("layer", Layer)
# {"class_name", "config"} <-> layer; deserialize raises ValueError on unknown types or bad configs.
get_layer_class, serialize, deserialize = LAYERS.class_for, LAYERS.serialize, LAYERS.deserialize
