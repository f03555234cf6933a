"""Keras model configs (JSON) -> microcnn layer configs and a built Sequential: the layer-by-layer
translation behind microcnn/keras_import.py. Supported: a Sequential, or a Functional model whose layers form
one chain, of the layer types in LAYER_TYPES with the activations in ACTIVATIONS, plus a final
Dense(1, sigmoid) (imported as Dense(2, softmax), see SIGMOID_TO_SOFTMAX); anything else is a
KerasImportError naming the layer and what is unsupported."""

from .layers.base import to_snake_case

ACTIVATIONS = ("relu", "softmax", "linear")
SIGMOID_TO_SOFTMAX = "sigmoid_to_softmax"  # a final Dense(1, sigmoid) imported as Dense(2, softmax)
# Keras class names that microcnn has under the same name (aliases map to the canonical one).
LAYER_TYPES = {"Conv2D": "Conv2D", "Convolution2D": "Conv2D", "MaxPooling2D": "MaxPooling2D",
               "MaxPool2D": "MaxPooling2D", "BatchNormalization": "BatchNormalization",
               "GlobalAveragePooling2D": "GlobalAveragePooling2D", "GlobalAvgPool2D": "GlobalAveragePooling2D",
               "Flatten": "Flatten", "Dense": "Dense", "Dropout": "Dropout", "Activation": "Activation",
               "ReLU": "ReLU", "Softmax": "Softmax"}


class KerasImportError(ValueError):
    """A Keras file microcnn cannot read or represent; the message names the file and the layer."""


def _fail(path, message):
    raise KerasImportError(f"{path}: {message}")


def _activation(path, name, kind, value):
    if isinstance(value, dict):  # Keras 3 may serialise an activation as an object
        value = value.get("config", {}).get("name", value.get("class_name"))
    value = "linear" if value is None else str(value).lower()
    if value not in ACTIVATIONS:
        _fail(path, f"layer {name!r} ({kind}): activation {value!r} is not supported (microcnn has "
                    f"{', '.join(ACTIVATIONS)})")
    return value


def _require(path, name, kind, config, key, allowed, default):
    value = config.get(key, default)
    value = list(value) if isinstance(value, (list, tuple)) else value
    if value not in allowed:
        _fail(path, f"layer {name!r} ({kind}): {key}={value!r} is not supported (microcnn needs "
                    f"{' or '.join(map(repr, allowed))})")


def _layer_spec(path, spec, rank, last=False):
    """A Keras layer spec -> (a microcnn one ({"class_name", "config"}), None or how to convert its weights)."""
    kind = spec.get("class_name")
    config = spec.get("config", {})
    name = str(config.get("name", to_snake_case(kind or "layer"))).replace("/", "_")
    if kind not in LAYER_TYPES:
        _fail(path, f"layer {name!r} ({kind}) is not supported: microcnn has "
                    f"{', '.join(sorted(set(LAYER_TYPES.values())))}")
    kind = LAYER_TYPES[kind]
    common = {"name": name, "trainable": bool(config.get("trainable", True))}
    if kind in ("Conv2D", "MaxPooling2D", "Flatten", "GlobalAveragePooling2D"):
        _require(path, name, kind, config, "data_format", (None, "channels_last"), None)
    if kind == "Conv2D":
        _require(path, name, kind, config, "dilation_rate", ([1, 1], 1), [1, 1])
        _require(path, name, kind, config, "groups", (1,), 1)
        _require(path, name, kind, config, "padding", ("valid", "same"), "valid")
        out = {"filters": config["filters"], "kernel_size": config["kernel_size"], "strides": config["strides"],
               "padding": config["padding"], "use_bias": config.get("use_bias", True),
               "activation": _activation(path, name, kind, config.get("activation"))}
    elif kind == "MaxPooling2D":
        _require(path, name, kind, config, "padding", ("valid", "same"), "valid")
        out = {"pool_size": config.get("pool_size", [2, 2]), "strides": config.get("strides"),
               "padding": config.get("padding", "valid")}
    elif kind == "Dense":
        if last and config.get("units") == 1 and config.get("activation") == "sigmoid":
            # A binary classifier's sigmoid output p = s(z) is the softmax of (0, z): two classes, exactly.
            return {"class_name": kind, "config": {**common, "units": 2, "activation": "softmax",
                                                   "use_bias": True}}, SIGMOID_TO_SOFTMAX
        out = {"units": config["units"], "use_bias": config.get("use_bias", True),
               "activation": _activation(path, name, kind, config.get("activation"))}
    elif kind == "BatchNormalization":
        axis = config.get("axis", -1)
        axis = axis[0] if isinstance(axis, list) and len(axis) == 1 else axis
        if axis not in (-1, rank - 1):
            _fail(path, f"layer {name!r} ({kind}): axis={config.get('axis')!r} is not supported (microcnn "
                        f"normalises the last axis)")
        out = {"momentum": config.get("momentum", 0.99), "epsilon": config.get("epsilon", 1e-3),
               "center": config.get("center", True), "scale": config.get("scale", True)}
    elif kind == "GlobalAveragePooling2D":
        out = {"keepdims": bool(config.get("keepdims", False))}
    elif kind == "Dropout":
        out = {"rate": config["rate"]}  # noise_shape only matters in training; imported models predict
    elif kind == "Activation":
        out = {"activation": _activation(path, name, kind, config.get("activation"))}
    elif kind == "ReLU":
        for key in ("max_value", "negative_slope", "threshold"):
            value = config.get(key)
            if value not in (None, 0, 0.0):
                _fail(path, f"layer {name!r} (ReLU): {key}={value!r} is not supported (only plain max(x, 0))")
        out = {}
    elif kind == "Softmax":
        axis = config.get("axis", -1)
        if axis not in (-1, [-1], rank - 1, [rank - 1]):
            _fail(path, f"layer {name!r} (Softmax): axis={axis!r} is not supported (only the last axis)")
        out = {}
    else:  # Flatten
        out = {}
    return {"class_name": kind, "config": {**common, **out}}, None


def _input_shape(config):
    for key in ("batch_shape", "batch_input_shape"):
        if config.get(key) is not None:
            return tuple(config[key][1:])
    return None


def _chain(path, model_config):
    """The layer list of a Functional model whose layers form one chain, in order."""
    layers = model_config.get("layers", [])
    previous = None
    for spec in layers:
        inbound = []
        for node in spec.get("inbound_nodes") or []:
            if isinstance(node, dict):  # Keras 3: {"args": [keras tensor], "kwargs": {}}
                for arg in node.get("args", []):
                    history = arg.get("config", {}).get("keras_history") if isinstance(arg, dict) else None
                    if history:
                        inbound.append(history[0])
            else:  # Keras 2: [[layer_name, node_index, tensor_index, kwargs], ...]
                inbound.extend(item[0] for item in node)
        name = spec.get("config", {}).get("name", spec.get("name"))
        if previous is not None and inbound != [previous]:
            _fail(path, f"layer {name!r} takes {inbound or 'no input'}, not the layer before it ({previous!r}): "
                        f"microcnn models are one chain of layers (Sequential)")
        previous = name
    return layers


def model_from_config(path, keras_config, input_shape=None):
    """A built microcnn Sequential (zero weights) for a Keras model config ({"class_name", "config"}).
    input_shape (H, W, C) or (H, W) replaces the one in the config (for models that accept any size)."""
    from . import layers as _layers
    from .layers.base import skip_initialization
    from .model import Sequential

    kind = keras_config.get("class_name")
    config = keras_config.get("config", {})
    if kind == "Sequential":
        specs = config.get("layers", [])
    elif kind in ("Functional", "Model"):
        specs = _chain(path, config)
    else:
        _fail(path, f"model class {kind!r} is not supported (expected a Sequential or a chain-shaped Functional)")
    specs = [s for s in specs if s.get("class_name") != "InputLayer" or _input_shape(s.get("config", {}))]
    shape = None
    if specs and specs[0].get("class_name") == "InputLayer":
        shape = _input_shape(specs.pop(0)["config"])
    if shape is None and specs:
        shape = _input_shape(specs[0].get("config", {}))
    if shape is None and config.get("build_input_shape"):
        shape = tuple(config["build_input_shape"][1:])
    if input_shape is not None:  # (H, W) keeps the file's channels
        shape = tuple(input_shape) if len(input_shape) == 3 or not shape else (*input_shape, shape[-1])
    if not shape or any(s is None for s in shape):
        _fail(path, f"the model's input shape is not fixed in the file ({shape}); give the image size")
    model = Sequential(name=str(config.get("name", "keras_model")).replace("/", "_"))
    model.add(_layers.Input(tuple(int(s) for s in shape)))
    rank = len(shape) + 1
    with skip_initialization():
        for i, spec in enumerate(specs):
            try:
                micro, conversion = _layer_spec(path, spec, rank, last=i == len(specs) - 1)
            except (KeyError, TypeError, AttributeError) as exc:
                spec = spec if isinstance(spec, dict) else {}
                name = (spec.get("config") or {}).get("name")
                _fail(path, f"layer {name!r} ({spec.get('class_name')}): malformed config ({type(exc).__name__}: "
                            f"{exc})")
            try:
                layer = _layers.deserialize(micro)
                model.add(layer)
                if conversion:
                    model.metadata.setdefault("keras_weight_conversions", {})[layer.name] = conversion
            except (ValueError, TypeError) as exc:
                _fail(path, f"layer {micro['config']['name']!r} ({micro['class_name']}): {exc}")
            rank = len(model.output_shape)
    if not model.layers:
        _fail(path, "the model has no layers")
    return model
