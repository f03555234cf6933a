"""Sequential: an ordered stack of layers, Keras's API. Training and inference loops live in training.py,
model files in io.py."""

import numpy as np

from . import _inference
from . import layers as _layers
from . import losses as _losses
from . import optimizers as _optimizers
from ._validation import shape as _shape
from .layers.base import Layer, format_shape, unique_name
from .training import TrainingMixin


class Sequential(TrainingMixin):
    def __init__(self, layers=None, name=None):
        if name is not None and (not isinstance(name, str) or not name):
            raise ValueError(f"name: expected a non-empty string, got {name!r}")
        self.name = name or unique_name("sequential")
        self._layers = []
        self._input_shape = None  # without the batch axis
        self.built = False
        self.output_shape = None
        self.optimizer = None
        self.loss = None
        self._metric_names = []
        self.compiled = False
        self.precision = "f32"  # or "bf16" (compile(precision=...)): the kernels predict and evaluate use
        self.stop_training = False
        self.history = None
        self.metadata = {}
        if layers is not None:
            if isinstance(layers, Layer) or not isinstance(layers, (list, tuple)):
                raise TypeError(f"layers: expected a list of layers, got {layers!r}")
            for layer in layers:
                self.add(layer)

    # --- structure -------------------------------------------------------------------------------------
    @property
    def layers(self):
        return list(self._layers)

    @property
    def input_shape(self):
        return None if self._input_shape is None else (None, *self._input_shape)

    def add(self, layer):
        if isinstance(layer, _layers.InputLayer):
            if self._layers or self._input_shape is not None:
                raise ValueError("add: an Input can only be the first layer of a Sequential")
            self._input_shape = layer.shape
            return
        if not isinstance(layer, Layer):
            raise TypeError(f"add: expected a microcnn layer, got {layer!r}")
        if any(existing.name == layer.name for existing in self._layers):
            raise ValueError(f"add: the model already has a layer named {layer.name!r}; layer names must be unique")
        if not self._layers and self._input_shape is None and layer._batch_input_shape is not None:
            self._input_shape = tuple(layer._batch_input_shape[1:])
        if self._input_shape is not None:
            # Build now, as Keras does once the input shape is known, so a shape error names this layer.
            shape = self.output_shape if self.built else self._build_layers(self._layers)
            self.output_shape = layer.ensure_built(shape)
            self.built = True
        self._layers.append(layer)

    def pop(self):
        if not self._layers:
            raise ValueError("pop: the model has no layers")
        layer = self._layers.pop()
        if self.built:
            self.output_shape = self._build_layers(self._layers)
        return layer

    def get_layer(self, name=None, index=None):
        if index is not None:
            return self._layers[index]
        for layer in self._layers:
            if layer.name == name:
                return layer
        raise ValueError(f"name: no layer named {name!r}; layers are {[layer.name for layer in self._layers]}")

    def _build_layers(self, layers):
        shape = (None, *self._input_shape)
        for layer in layers:
            shape = layer.ensure_built(shape)
        return shape

    def build(self, input_shape=None):
        """`build((None, 150, 150, 3))`: create every layer's weights for that input (batch axis first)."""
        if input_shape is not None:
            if not isinstance(input_shape, (tuple, list)) or len(input_shape) < 2:
                raise ValueError(f"input_shape: expected (batch or None, ...), got {input_shape!r}")
            shape = _shape("input_shape", tuple(input_shape)[1:])
            if self._input_shape is not None and self.built and shape != self._input_shape:
                raise ValueError(f"input_shape: the model is built for {format_shape(self.input_shape)}, "
                                 f"got {format_shape((None, *shape))}")
            self._input_shape = shape
        if self._input_shape is None:
            raise ValueError("build: the input shape is unknown; pass input_shape, start with Input(shape), or "
                             "give the first layer input_shape=...")
        if not self._layers:
            raise ValueError("build: the model has no layers")
        self.output_shape = self._build_layers(self._layers)
        self.built = True

    def _require_built(self, what):
        if not self.built:
            raise ValueError(f"{what}: the model is not built yet; call build(input_shape), start it with "
                             f"Input(shape), or fit/predict on data first")

    # --- weights ---------------------------------------------------------------------------------------
    def weight_entries(self):
        """[(stable name, layer, weight name)] in get_weights() order; stable names look like
        "layers.0.conv2d.kernel" and key weight files and optimizer state."""
        return [(f"layers.{i}.{layer.name}.{w}", layer, w)
                for i, layer in enumerate(self._layers) for w in layer.weight_names]

    def named_weights(self):
        return {key: layer._weights[w] for key, layer, w in self.weight_entries()}

    @property
    def weights(self):
        return [w for layer in self._layers for w in layer.weights]

    @property
    def trainable_weights(self):
        return [w for layer in self._layers for w in layer.trainable_weights]

    @property
    def non_trainable_weights(self):
        return [w for layer in self._layers for w in layer.non_trainable_weights]

    def training_state(self):
        """{"layers.<i>.<name>.<key>": array}: the layers' non-weight state for an exact resume."""
        return {f"layers.{i}.{layer.name}.{key}": value for i, layer in enumerate(self._layers)
                for key, value in layer.get_training_state().items()}

    def set_training_state(self, state):
        for i, layer in enumerate(self._layers):
            prefix = f"layers.{i}.{layer.name}."
            layer.set_training_state({k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)})

    def get_weights(self):
        return [w.copy() for w in self.weights]

    def set_weights(self, weights):
        """Keras's order: per layer its trainable weights, then its non-trainable ones."""
        self._require_built("set_weights")
        weights = list(weights)
        entries = self.weight_entries()
        if len(weights) != len(entries):
            raise ValueError(f"set_weights: expected {len(entries)} arrays for this model, got {len(weights)}")
        for (key, layer, w), value in zip(entries, weights):
            if np.shape(value) != layer._weights[w].shape:
                raise ValueError(f"set_weights: {key} expected shape {layer._weights[w].shape}, got "
                                 f"{np.shape(value)}")
        start = 0
        for layer in self._layers:
            count = len(layer.weight_names)
            layer.set_weights(weights[start:start + count])
            start += count

    def count_params(self):
        self._require_built("count_params")
        return sum(layer.count_params() for layer in self._layers)

    # --- summary ---------------------------------------------------------------------------------------
    def summary(self, line_length=None, positions=None, print_fn=None):
        """Keras's table: layer name (type), output shape, parameter count, then the totals."""
        self._require_built("summary")
        print_fn = print if print_fn is None else print_fn
        width = line_length or 78
        cols = [int(width * p) for p in (positions or (0.42, 0.76, 1.0))]

        def row(fields):
            line = ""
            for field, end in zip(fields, cols):
                line = (line + str(field))[:end - 1].ljust(end)
            return line.rstrip()

        print_fn(f'Model: "{self.name}"')
        print_fn("_" * width)
        print_fn(row(["Layer (type)", "Output Shape", "Param #"]))
        print_fn("=" * width)
        for i, layer in enumerate(self._layers):
            print_fn(row([f"{layer.name} ({type(layer).__name__})", format_shape(layer.output_shape),
                          f"{layer.count_params():,}"]))
            print_fn(("=" if i == len(self._layers) - 1 else "_") * width)
        trainable = sum(int(w.size) for w in self.trainable_weights)
        non_trainable = sum(int(w.size) for w in self.non_trainable_weights)
        print_fn(f"Total params: {trainable + non_trainable:,}")
        print_fn(f"Trainable params: {trainable:,}")
        print_fn(f"Non-trainable params: {non_trainable:,}")
        print_fn("_" * width)

    # --- compile ---------------------------------------------------------------------------------------
    def compile(self, optimizer="adam", loss=None, metrics=None, precision="f32"):
        """precision "bf16": predict/evaluate on bf16 weights (see _inference.py); training stays float32."""
        self.precision = _inference.check_precision(precision)
        if loss is None:
            raise ValueError("loss: expected 'categorical_crossentropy' or 'sparse_categorical_crossentropy', "
                             "got None")
        self.optimizer = _optimizers.get(optimizer)
        self.loss = _losses.get(loss)
        self._metric_names = _losses.check_metrics(metrics)
        self.compiled = True

    @property
    def metrics_names(self):
        """Keras's labels for evaluate()'s list: ["loss", "accuracy"]."""
        return ["loss", *self._metric_names] if self.compiled else []

    def get_compile_config(self):
        if not self.compiled:
            return None
        return {"optimizer": _optimizers.serialize(self.optimizer), "loss": _losses.serialize(self.loss),
                "metrics": list(self._metric_names)}

    # --- config and files ------------------------------------------------------------------------------
    def get_config(self):
        return {"name": self.name, "input_shape": None if self._input_shape is None else list(self._input_shape),
                "layers": [_layers.serialize(layer) for layer in self._layers]}

    @classmethod
    def from_config(cls, config):
        model = cls(name=config.get("name"))
        if config.get("input_shape") is not None:
            model.add(_layers.Input(tuple(config["input_shape"])))
        for spec in config.get("layers", []):
            model.add(_layers.deserialize(spec))
        return model

    def save_weights(self, filepath, overwrite=True):
        """All weights in one safetensors file (names as in model files), written atomically."""
        from . import io

        io.save_weights(self, filepath, overwrite=overwrite)

    def load_weights(self, filepath):
        """Weights written by save_weights (or a model directory's weights.safetensors); every name and
        shape must match this model."""
        from . import io

        io.load_weights(self, filepath)

    def save(self, filepath, metadata=None, include_optimizer=True, overwrite=True):
        """Write the model directory (see microcnn/io.py); `metadata` (a JSON-able dict) replaces
        `self.metadata` and is stored with it."""
        from . import io

        io.save_model(self, filepath, metadata=metadata, include_optimizer=include_optimizer, overwrite=overwrite)

    def __repr__(self):
        return f"<Sequential name={self.name!r} layers={len(self._layers)}>"
