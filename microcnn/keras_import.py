"""Keras model files -> a microcnn Sequential, read with h5py and json (no TensorFlow, no Keras).

    Keras 2 (tf.keras / tf_keras)   model.save("x.h5")          HDF5: model_config + model_weights
                                    model.save_weights("x.h5")  HDF5: weights only (layer_names order)
    Keras 3                         model.save("x.keras")       zip: config.json + model.weights.h5
                                    model.save_weights("x.weights.h5")   weights only
                                    model.save("x.h5")          legacy HDF5, as Keras 2's
    an architecture alone           model.to_json() written to a .json file

A Sequential, or a Functional model whose layers form one chain, of the layers microcnn has (InputLayer,
Conv2D, MaxPooling2D, BatchNormalization, GlobalAveragePooling2D, Flatten, Dense, Dropout, Activation, ReLU,
Softmax; activations relu/softmax/linear; a final Dense(1, sigmoid) as the equivalent two-class softmax)
becomes the same microcnn model: the weight layouts are Keras's.
Anything else is a KerasImportError naming the layer. Optimizer state in the files is ignored.

Weights are matched as Keras matches them: a Keras 2 HDF5 file by the order of the layers that have weights,
a Keras 3 weights file by the class-derived path Keras 3 writes (layers/conv2d, layers/conv2d_1, ...).
"""

import contextlib
import json
import os
import zipfile

import numpy as np

from ._keras_config import SIGMOID_TO_SOFTMAX, KerasImportError, _fail, model_from_config
from ._optional import require
from .layers.base import to_snake_case


def _h5py():
    return require("h5py", "reading Keras files", "keras")


def _text(value):
    if isinstance(value, bytes):
        return value.decode("utf-8")
    return str(value)


def _names(attribute):
    return [_text(v) for v in attribute]


@contextlib.contextmanager
def _reading(path):
    """Damaged or foreign files fail with the file's name, whatever part of them is wrong."""
    try:
        yield
    except KerasImportError:
        raise
    except (KeyError, IndexError, TypeError, AttributeError, ValueError, zipfile.BadZipFile) as exc:
        raise KerasImportError(f"{path}: not a readable Keras file ({type(exc).__name__}: {exc})") from None
    except OSError as exc:  # h5py's errors for damaged HDF5 files carry no file name
        raise KerasImportError(f"{path}: cannot read it ({exc})") from None


# --- weights ---------------------------------------------------------------------------------------------
def _hdf5_layer_weights(group):
    """[(layer name, [arrays])] of a Keras 2 / legacy HDF5 weights group, layers with weights only."""
    result = []
    for name in _names(group.attrs.get("layer_names", [])):
        arrays = [np.asarray(group[name][w], np.float32) for w in _names(group[name].attrs.get("weight_names", []))]
        if arrays:
            result.append((name, arrays))
    return result


def _keras3_vars(layers_group, key):
    if key not in layers_group or "vars" not in layers_group[key]:
        return None
    group = layers_group[key]["vars"]
    return [np.asarray(group[str(i)], np.float32) for i in range(len(group))]


def _sigmoid_to_softmax(arrays):
    """Dense(1, sigmoid) weights -> Dense(2, softmax) ones: logits (0, z) give softmax (1 - s(z), s(z))."""
    kernel = arrays[0]
    bias = arrays[1] if len(arrays) > 1 else np.zeros(1, np.float32)
    return [np.concatenate([np.zeros_like(kernel), kernel], axis=1), np.concatenate([np.zeros(1, np.float32), bias])]


def _assign(path, model, per_layer):
    """per_layer: [(model layer, arrays or None, source name)] -> set_weights with errors naming layers."""
    conversions = (model.metadata or {}).get("keras_weight_conversions", {})
    for layer, arrays, source in per_layer:
        expected = [w.shape for w in layer.weights]
        if arrays is None:
            _fail(path, f"no weights for layer {layer.name!r} ({type(layer).__name__}) at {source!r}")
        if conversions.get(layer.name) == SIGMOID_TO_SOFTMAX and arrays[0].shape[-1:] == (1,):
            arrays = _sigmoid_to_softmax(arrays)
        got = [a.shape for a in arrays]
        if got != expected:
            _fail(path, f"layer {layer.name!r} ({type(layer).__name__}): the weights at {source!r} have shapes "
                        f"{got}, this model needs {expected}")
        layer.set_weights(arrays)


def describe_weights(path):
    """"Keras 2.21.0 weights file", "Keras 3 .weights.h5 file", ... for messages."""
    h5py = _h5py()
    path = os.fspath(path)
    try:
        with h5py.File(path, "r") as f:
            if "model_config" in f.attrs:
                return f"Keras {_text(f.attrs.get('keras_version', '?'))} HDF5 model file"
            if "layer_names" in f.attrs:
                return f"Keras {_text(f.attrs.get('keras_version', '?'))} weights file"
            return "Keras 3 .weights.h5 file" if "layers" in f else "HDF5 file"
    except OSError:  # missing or damaged: reading the weights says so
        return "file"


def holds_only_weights(path):
    """True for an HDF5 file written by save_weights (no architecture in it)."""
    h5py = _h5py()
    path = os.fspath(path)
    if not os.path.isfile(path) or zipfile.is_zipfile(path) or not h5py.is_hdf5(path):
        return False
    try:
        with h5py.File(path, "r") as f:
            return "model_config" not in f.attrs
    except OSError:  # damaged: reading it as a model says so, with the file's name
        return False


def load_weights_into(model, path):
    """Keras weights (a Keras 2 / legacy HDF5 file, full model or weights only, or a Keras 3 .weights.h5)
    into `model`, a built microcnn Sequential of the same architecture."""
    h5py = _h5py()
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such file")
    if not h5py.is_hdf5(path):
        _fail(path, "not an HDF5 file (expected Keras weights: .h5 or .weights.h5)")
    with _reading(path), h5py.File(path, "r") as f:
        _load_weights_from(model, path, f)
    return model


def _load_weights_from(model, path, f):
    weighted = [layer for layer in model.layers if layer.weights]
    if "layers" in f and "layer_names" not in f.attrs and "model_weights" not in f:
        # Keras 3: layers/<class name in snake case>[_<n>]/vars/<i>, n counting that class in the model.
        seen, per_layer = {}, []
        for layer in model.layers:
            base = to_snake_case(type(layer).__name__)
            key = base if base not in seen else f"{base}_{seen[base] + 1}"
            seen[base] = seen.get(base, -1) + 1
            if layer.weights:
                per_layer.append((layer, _keras3_vars(f["layers"], key), f"layers/{key}/vars"))
        _assign(path, model, per_layer)
        return
    group = f.get("model_weights", f)
    if "layer_names" not in group.attrs:
        _fail(path, "not a Keras weights file (no layer_names, no layers/ group)")
    stored = _hdf5_layer_weights(group)
    if len(stored) != len(weighted):
        _fail(path, f"holds weights for {len(stored)} layers ({', '.join(n for n, _ in stored)}), this model has "
                    f"{len(weighted)} layers with weights ({', '.join(layer.name for layer in weighted)})")
    _assign(path, model, [(layer, arrays, name) for layer, (name, arrays) in zip(weighted, stored)])


# --- files -----------------------------------------------------------------------------------------------
def read_keras_file(path, input_shape=None):
    """(model or None when the file holds weights only, description, whether the model has the file's
    weights) for a Keras file."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such file")
    if os.path.isdir(path):
        _fail(path, "is a directory (expected a Keras .h5, .keras or .json file)")
    with _reading(path):
        return _read_keras_file(path, input_shape)


def _read_keras_file(path, input_shape):
    if zipfile.is_zipfile(path):
        return _read_keras_zip(path, input_shape)
    h5py = _h5py()
    if h5py.is_hdf5(path):
        with h5py.File(path, "r") as f:
            version = _text(f.attrs.get("keras_version", "?"))
            if "model_config" not in f.attrs:
                return None, f"Keras {version} weights file", True
            model = model_from_config(path, json.loads(_text(f.attrs["model_config"])), input_shape)
            _load_weights_from(model, path, f)
            legacy = " legacy" if version.startswith("3") else ""
            return model, f"Keras {version}{legacy} HDF5 full model", True
    try:
        with open(path, encoding="utf-8") as f:
            config = json.load(f)
    except (UnicodeDecodeError, json.JSONDecodeError):
        _fail(path, "not a Keras model file (expected HDF5 .h5, a .keras zip or a model.to_json() .json)")
    if not isinstance(config, dict) or "class_name" not in config:
        _fail(path, "not a Keras model architecture (JSON without class_name)")
    return model_from_config(path, config, input_shape), "Keras architecture (JSON)", False


def _read_keras_zip(path, input_shape):
    h5py = _h5py()
    with zipfile.ZipFile(path) as z:
        names = set(z.namelist())
        if "config.json" not in names or "model.weights.h5" not in names:
            _fail(path, f"not a Keras 3 .keras file (has {sorted(names)}, expected config.json and "
                        f"model.weights.h5)")
        config = json.loads(z.read("config.json").decode("utf-8"))
        version = "3"
        if "metadata.json" in names:
            version = json.loads(z.read("metadata.json").decode("utf-8")).get("keras_version", "3")
        model = model_from_config(path, config, input_shape)
        with z.open("model.weights.h5") as weights, h5py.File(weights, "r") as f:
            _load_weights_from(model, path, f)
    return model, f"Keras {version} .keras file", True


def load_keras_model(path, weights=None, input_shape=None):
    """A microcnn Sequential from Keras files, for prediction (not compiled).

    path: a Keras 2 HDF5 model (model.save('x.h5')), a Keras 3 .keras file or legacy .h5, a model.to_json()
    architecture, or an architecture given as a built microcnn model (e.g. `build_model("seed", (150, 150, 3),
    2)`); weights: a Keras weights file (Keras 2 save_weights .h5, Keras 3 .weights.h5) to load instead of the
    file's own. input_shape (H, W, C) or (H, W): build for another image size than the file's, where the layers allow.
    """
    from .model import Sequential

    if isinstance(path, Sequential):
        model, description = path, f"{describe_weights(weights)} into a microcnn architecture" if weights else ""
        model._require_built("load_keras_model")
        if weights is None:
            raise KerasImportError("weights: expected a Keras weights file to load into the given model, got None")
    else:
        model, description, has_weights = read_keras_file(path, input_shape)
        if model is None:
            _fail(os.fspath(path), "holds only weights (Keras save_weights): give the architecture as path (a "
                                   "Keras model or model.to_json() file, or a microcnn model such as "
                                   "build_model('seed', ...)) and this file as weights=")
        if not has_weights and weights is None:
            _fail(os.fspath(path), "holds only the architecture: give the weights file as weights=")
    if weights is not None:
        load_weights_into(model, weights)
        if not isinstance(path, Sequential):
            description += f" + {describe_weights(weights)} {os.path.basename(os.fspath(weights))}"
    model.metadata = {**(model.metadata or {}), "imported_from": description}
    return model
