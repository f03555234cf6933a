"""Sequential: an ordered stack of layers, Keras's API. Training and inference loops live in training.py, the
execution plan (which layers run fused) in plan.py, the model file format in modelfile.py."""

import os

import numpy as np

from . import _inference, modelfile
from . import layers as _layers
from . import losses as _losses
from . import optimizers as _optimizers
from ._open_set import OpenSetMixin
from ._validation import shape as _shape
from .layers.base import Layer, format_shape, skip_initialization, unique_name
from .plan import build_plan
from .training import TrainingMixin


class Sequential(TrainingMixin, OpenSetMixin):
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
        self.precision = "f32"  # or "bf16" (compile(precision=...)): training, predict and evaluate in bf16
        self.stop_training = False
        self.history = None
        self.metadata = {}
        self._plan = None
        self._fuse_dense_update = True
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
        self._plan = None

    def pop(self):
        if not self._layers:
            raise ValueError("pop: the model has no layers")
        layer = self._layers.pop()
        self._plan = None
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
        self._plan = None

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
        """precision "bf16": bf16 GEMM operands in training (_bf16_train.py) and inference (_inference.py)."""
        self.precision = _inference.check_precision(precision)
        if loss is None:
            raise ValueError("loss: expected 'categorical_crossentropy' or 'sparse_categorical_crossentropy', "
                             "got None")
        self.optimizer = _optimizers.get(optimizer)
        self.loss = _losses.get(loss)
        self._metric_names = _losses.check_metrics(metrics)
        self.compiled = True
        self._plan = None

    # --- execution plan --------------------------------------------------------------------------------
    @property
    def fuse_dense_update(self):
        """True (default): a large Dense kernel's gradient stays factored and Adam applies it in one pass with
        the update. False: every gradient is an array before the optimizer update (e.g. to sum it over
        processes first). The trained weights are the same bit for bit."""
        return self._fuse_dense_update

    @fuse_dense_update.setter
    def fuse_dense_update(self, value):
        self._fuse_dense_update = bool(value)
        self._plan = None

    def execution_plan(self, fuse=True, split_after=None):
        """A new Plan of this (built) model's layers (see microcnn/plan.py), e.g. for features or Grad-CAM:
        `model.execution_plan(split_after=last_conv).conv_map_and_gradient(x, class_index)`."""
        self._require_built("execution_plan")
        return build_plan(self._layers, self.loss if self.compiled else None, self.output_shape, fuse=fuse,
                          fuse_dense_update=self._fuse_dense_update, split_after=split_after,
                          precision=self.precision)

    def _current_plan(self):
        """The plan training and inference run, made once after each build/compile."""
        if self._plan is None or self._plan.precision != self.precision:
            self._plan = self.execution_plan()
        return self._plan

    @property
    def metrics_names(self):
        """Keras's labels for evaluate()'s list: ["loss", "accuracy"]."""
        return ["loss", *self._metric_names] if self.compiled else []

    def get_compile_config(self):
        if not self.compiled:
            return None
        return {"optimizer": _optimizers.serialize(self.optimizer), "loss": _losses.serialize(self.loss),
                "metrics": list(self._metric_names), "precision": self.precision}

    # --- config and files ------------------------------------------------------------------------------
    def get_config(self):
        return {"name": self.name, "input_shape": None if self._input_shape is None else list(self._input_shape),
                "layers": [_layers.serialize(layer) for layer in self._layers]}

    @classmethod
    def from_config(cls, config):
        """The model `get_config()` describes, with freshly initialised weights; ValueError/TypeError naming the
        field (and the layer's index) that is wrong."""
        if not isinstance(config, dict):
            raise TypeError(f"config: expected a dict, got {type(config).__name__}")
        model = cls(name=config.get("name"))
        if config.get("input_shape") is not None:
            shape = config["input_shape"]
            model.add(_layers.Input(_shape("input_shape", tuple(shape) if isinstance(shape, list) else shape)))
        specs = config.get("layers", [])
        if not isinstance(specs, list):
            raise TypeError(f"layers: expected a list of layer configs, got {specs!r}")
        for i, spec in enumerate(specs):
            try:
                model.add(_layers.deserialize(spec))
            except (ValueError, TypeError) as exc:
                raise ValueError(f"layer {i}: {exc}") from None
            except MemoryError:
                raise ValueError(f"layer {i}: its weights are too large to allocate ({spec.get('config')})") from None
        return model

    def save_weights(self, filepath, overwrite=True):
        """All weights in one safetensors file (names as in model files), written atomically."""
        self._require_built("save_weights")
        _refuse_keras_file("filepath", filepath, "one safetensors file, e.g. 'weights.safetensors'")
        modelfile.save_weights(filepath, self.named_weights(), overwrite=overwrite)

    def load_weights(self, filepath):
        """Weights written by save_weights (or a model directory's weights.safetensors); every name and
        shape must match this model."""
        self._require_built("load_weights")
        path, tensors = modelfile.read_weights(filepath)

        # Matched by position and weight name, as Keras does: the layer names in the file need not match.
        def by_position(name):
            parts = name.split(".")
            return f"{parts[0]}.{parts[1]}.{parts[-1]}" if len(parts) >= 4 else name

        tensors = {by_position(k): v for k, v in tensors.items()}
        live = {by_position(k): v for k, v in self.named_weights().items()}
        modelfile.check_tensors(path, tensors, {k: (v.shape, np.float32) for k, v in live.items()}, "this model")
        for name, value in live.items():
            np.copyto(value, tensors[name])

    def save(self, filepath, metadata=None, include_optimizer=True, overwrite=True):
        """Write the model directory (see microcnn/modelfile.py); `metadata` (a JSON-able dict) replaces
        `self.metadata` and is stored with it."""
        self._require_built("save")
        _refuse_keras_file("filepath", filepath, "a model folder, e.g. 'model' (config.json + weights.safetensors)")
        optimizer_state = None
        if include_optimizer and self.compiled:
            optimizer_state = modelfile.optimizer_tensors(self.optimizer.get_state(), self.training_state())
        self.metadata = modelfile.save_model(
            filepath, {"class_name": "Sequential", "config": self.get_config()}, self.get_compile_config(),
            self.metadata if metadata is None else metadata, self.named_weights(), optimizer_state, overwrite,
            ood=None if self.ood is None else (self.ood.get_config(), self.ood.get_tensors()))

    def export(self, filepath, format="onnx", **options):
        """Keras 3's spelling: `model.export("m.onnx", format="onnx")` writes an ONNX file (needs the onnx
        package); options: opset, batch, input_layout, fold_batchnorm, ood (see microcnn/onnx_export.py)."""
        if format != "onnx":
            raise ValueError(f"format: expected 'onnx', got {format!r}")
        from .onnx_export import export_model

        return export_model(self, filepath, **options)

    def __repr__(self):
        return f"<Sequential name={self.name!r} layers={len(self._layers)}>"


def _refuse_keras_file(argument, filepath, expected):
    """Keras's file names (.keras, .h5) would silently get microcnn's format: say so instead."""
    name = os.fspath(filepath)
    if name.lower().endswith((".keras", ".h5", ".hdf5")):
        raise ValueError(f"{argument}: expected {expected}, got {name!r}; microcnn does not write Keras files "
                         f"(microcnn-export writes ONNX)")


def _load_detector(saved):
    """The open-set detector of a model directory; errors name config.json or ood.safetensors."""
    from .ood import OODDetector

    try:
        detector = OODDetector.from_config(saved.config["ood"])
    except ValueError as exc:
        modelfile.fail(saved.config_path, str(exc))
    _, tensors = saved.ood()
    try:
        return detector.set_tensors(tensors)
    except ValueError as exc:
        modelfile.fail(saved.ood_path, str(exc))


def load_model(dirpath, compile=True):
    """Rebuild a model saved with `model.save(dirpath)`: architecture, weights, `model.metadata`, and (with
    compile=True) the compiled optimizer, loss and metrics with the optimizer state for resuming. A save by
    another process into the same directory meanwhile is waited for (see modelfile.read_consistently)."""
    return modelfile.read_consistently(os.fspath(dirpath), lambda: _load_model_once(dirpath, compile))


def _load_model_once(dirpath, compile):
    saved = modelfile.SavedModel(dirpath)
    config = saved.config
    # The weights are read next: skip the random initialisation (time, and draws from the global generator).
    with skip_initialization():
        try:
            model = Sequential.from_config(config["model"]["config"])
        except (ValueError, TypeError) as exc:
            modelfile.fail(saved.config_path, str(exc))
    if not model.built or not model.layers:
        modelfile.fail(saved.config_path, "the model needs an input_shape and at least one layer")
    live = model.named_weights()
    weights = saved.weights()
    modelfile.check_tensors(saved.weights_path, weights, {k: (v.shape, np.float32) for k, v in live.items()})
    for name, value in live.items():
        np.copyto(value, weights[name])
    model.metadata = config.get("metadata", {})
    if config.get("ood") is not None:
        model.ood = _load_detector(saved)

    compile_config = config.get("compile")
    if compile and compile_config is not None:
        try:
            model.compile(optimizer=_optimizers.deserialize(compile_config.get("optimizer")),
                          loss=compile_config.get("loss"), metrics=compile_config.get("metrics"),
                          precision=compile_config.get("precision", "f32"))
        except (ValueError, TypeError) as exc:
            modelfile.fail(saved.config_path, f"bad compile config: {exc}")
        state = saved.optimizer_state()
        if state is not None:
            optimizer_state, layer_state = state
            modelfile.check_tensors(saved.optimizer_path, layer_state,
                                    {k: (v.shape, v.dtype) for k, v in model.training_state().items()})
            model.set_training_state(layer_state)
            try:
                model.optimizer.set_state(optimizer_state, live)
            except ValueError as exc:
                modelfile.fail(saved.optimizer_path, str(exc))
    return model
