"""ONNX export: a model's config and weights -> an ONNX graph of standard operators (`onnx` package).

    input  "input"          float32 (batch, H, W, C) -- NHWC, as microcnn and Keras hold images -- or, with
                            input_layout="NCHW", (batch, C, H, W); pixels scaled as microcnn-train did
    output "probabilities"  float32 (batch, classes), in the order of the class_names metadata entry
                            ("output" when the last layer is not a softmax)

Inside, the graph runs NCHW (ONNX's Conv/MaxPool layout): one Transpose after an NHWC input, and one back to
NHWC before a Flatten, so the Dense weights after it keep microcnn's (Keras's) row order. Layer by layer:
Conv2D -> Conv (HWIO kernel transposed to OIHW; "same" as explicit pads, the odd pixel at the bottom/right as
Keras does), MaxPooling2D -> MaxPool, BatchNormalization -> folded into the Conv/Dense before it when that
layer has no activation, else BatchNormalization; GlobalAveragePooling2D -> GlobalAveragePool (+ Flatten),
Dense -> Gemm, Dropout -> nothing (inference is the identity), ReLU / Softmax -> Relu / Softmax.

The file describes itself in `metadata_props` (all JSON except the plain-text rules): class_names,
preprocessing (microcnn's dict), preprocessing_rule, input_layout, output, ood (the open-set detector's
settings, when the model has one), microcnn_version.
"""

import json
import os

import numpy as np

from . import _core
from ._atomic import write_atomic
from ._optional import require

DEFAULT_OPSET = 17
MIN_OPSET = 13  # Softmax over one axis (not "flatten to 2-D first") from opset 13 on
LAYOUTS = ("NHWC", "NCHW")


def _onnx():
    return require("onnx", "ONNX export", "onnx")


def check_opset(opset):
    onnx = _onnx()
    newest = onnx.defs.onnx_opset_version()
    if isinstance(opset, bool) or not isinstance(opset, int) or not MIN_OPSET <= opset <= newest:
        raise ValueError(f"opset: expected an integer from {MIN_OPSET} to {newest} (this onnx package's newest), "
                         f"got {opset!r}")
    return opset


def check_batch(batch):
    if batch == "dynamic" or batch is None:
        return None
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ValueError(f"batch: expected 'dynamic' or a positive integer, got {batch!r}")
    return batch


def _window(shape, window, strides, padding):
    """ONNX pads [top, left, bottom, right] and the output (P, Q) of a window sliding over a (H, W, C) map.
    "same" pads as Keras/TF do: half the padding before, the odd pixel after."""
    pads, out = [0, 0, 0, 0], []
    for axis in (0, 1):
        size = _core.conv2d_output_size(shape[axis], window[axis], strides[axis], padding)
        out.append(size)
        if padding == "same":
            total = max((size - 1) * strides[axis] + window[axis] - shape[axis], 0)
            pads[axis], pads[axis + 2] = total // 2, total - total // 2
    return pads, tuple(out)


class _Graph:
    """Collects the nodes and initializers (weights) of the graph being built."""

    def __init__(self, onnx):
        self.onnx = onnx
        self.nodes, self.initializers = [], []

    def constant(self, name, array):
        self.initializers.append(self.onnx.numpy_helper.from_array(np.ascontiguousarray(array, np.float32),
                                                                   name))
        return name

    def node(self, op, inputs, name, **attributes):
        """Appends one node named after its layer and op; returns its output's name (the same)."""
        output = f"{name}/{op}"
        self.nodes.append(self.onnx.helper.make_node(op, inputs, [output], name=output, **attributes))
        return output


def _layer_weights(weights, index, layer_name):
    prefix = f"layers.{index}.{layer_name}."
    return {key[len(prefix):]: np.asarray(value, np.float32) for key, value in weights.items()
            if key.startswith(prefix)}


def _batchnorm_affine(config, w):
    """(scale, shift) per channel of an inference-mode BatchNormalization, computed in float64."""
    variance = w["moving_variance"].astype(np.float64)
    gamma = w["gamma"].astype(np.float64) if config.get("scale", True) else np.ones_like(variance)
    beta = w["beta"].astype(np.float64) if config.get("center", True) else np.zeros_like(variance)
    scale = gamma / np.sqrt(variance + float(config.get("epsilon", 1e-3)))
    return scale, beta - w["moving_mean"].astype(np.float64) * scale


def _layers_with_weights(config, weights):
    """[(class_name, layer config, {weight name: array})] for every layer of the model config."""
    return [(spec["class_name"], spec["config"], _layer_weights(weights, i, spec["config"]["name"]))
            for i, spec in enumerate(config["layers"])]


def _fold_batchnorm(layers, fold):
    """Merge each BatchNormalization into the Conv2D/Dense just before it when that layer has no activation:
    kernel * scale, bias * scale + shift (float64, then float32). Returns the new list."""
    out = []
    for kind, config, w in layers:
        if (fold and kind == "BatchNormalization" and out and out[-1][0] in ("Conv2D", "Dense")
                and out[-1][1].get("activation", "linear") in (None, "linear")):
            prev_kind, prev_config, prev_w = out.pop()
            scale, shift = _batchnorm_affine(config, w)
            kernel = prev_w["kernel"].astype(np.float64) * scale  # the output channel is the last axis
            bias = prev_w["bias"].astype(np.float64) * scale + shift if "bias" in prev_w else shift
            merged = {**prev_config, "use_bias": True, "name": f"{prev_config['name']}+{config['name']}"}
            out.append((prev_kind, merged, {"kernel": kernel.astype(np.float32), "bias": bias.astype(np.float32)}))
            continue
        out.append((kind, config, w))
    return out


def build_graph(config, weights, opset=DEFAULT_OPSET, batch="dynamic", input_layout="NHWC", fold_batchnorm=True):
    """An onnx.ModelProto (without metadata) for a Sequential's config (`model.get_config()`) and its
    weights ({"layers.<i>.<name>.<weight>": array}, `model.named_weights()`)."""
    onnx = _onnx()
    helper, TensorProto = onnx.helper, onnx.TensorProto
    opset = check_opset(opset)
    batch = check_batch(batch)
    if input_layout not in LAYOUTS:
        raise ValueError(f"input_layout: expected one of {', '.join(LAYOUTS)}, got {input_layout!r}")
    input_shape = tuple(config["input_shape"])
    if len(input_shape) != 3:
        raise ValueError(f"input_shape: ONNX export handles image models (height, width, channels), "
                         f"got {input_shape}")
    h, w, c = input_shape
    graph = _Graph(onnx)
    batch_dim = batch if batch is not None else "batch"
    dims = [batch_dim, h, w, c] if input_layout == "NHWC" else [batch_dim, c, h, w]
    graph_input = helper.make_tensor_value_info("input", TensorProto.FLOAT, dims)
    tensor = "input" if input_layout == "NCHW" else graph.node("Transpose", ["input"], "input", perm=[0, 3, 1, 2])
    nchw, shape = True, (h, w, c)  # shape: (H, W, C) of a map, (features,) when flat
    last_is_softmax = False

    def activation(name, kind):
        nonlocal tensor, last_is_softmax
        last_is_softmax = False
        if kind in (None, "linear"):
            return
        if kind == "relu":
            tensor = graph.node("Relu", [tensor], name)
        elif kind == "softmax":
            tensor = graph.node("Softmax", [tensor], name, axis=1 if nchw else -1)
            last_is_softmax = True
        else:
            raise ValueError(f"layer {name!r}: activation {kind!r} has no ONNX mapping here")

    for kind, layer, wt in _fold_batchnorm(_layers_with_weights(config, weights), fold_batchnorm):
        name = layer["name"]
        if kind == "Conv2D":
            (kh, kw), (sh, sw) = layer["kernel_size"], layer["strides"]
            pads, (p, q) = _window(shape, (kh, kw), (sh, sw), layer["padding"])
            inputs = [tensor, graph.constant(f"{name}/kernel", wt["kernel"].transpose(3, 2, 0, 1))]
            if "bias" in wt:
                inputs.append(graph.constant(f"{name}/bias", wt["bias"]))
            tensor = graph.node("Conv", inputs, name, kernel_shape=[kh, kw], strides=[sh, sw], pads=pads,
                                dilations=[1, 1], group=1)
            shape = (p, q, layer["filters"])
            activation(name, layer.get("activation"))
        elif kind == "MaxPooling2D":
            (ph, pw), (sh, sw) = layer["pool_size"], layer["strides"]
            pads, (p, q) = _window(shape, (ph, pw), (sh, sw), layer["padding"])
            tensor = graph.node("MaxPool", [tensor], name, kernel_shape=[ph, pw], strides=[sh, sw], pads=pads)
            shape = (p, q, shape[2])
            last_is_softmax = False
        elif kind == "Dense":
            if "bias" in wt:
                tensor = graph.node("Gemm", [tensor, graph.constant(f"{name}/kernel", wt["kernel"]),
                                             graph.constant(f"{name}/bias", wt["bias"])], name)
            else:
                tensor = graph.node("MatMul", [tensor, graph.constant(f"{name}/kernel", wt["kernel"])], name)
            shape = (layer["units"],)
            activation(name, layer.get("activation"))
        elif kind == "BatchNormalization":
            ones = np.ones_like(wt["moving_mean"])
            tensor = graph.node("BatchNormalization", [
                tensor, graph.constant(f"{name}/gamma", wt.get("gamma", ones)),
                graph.constant(f"{name}/beta", wt.get("beta", ones * 0)),
                graph.constant(f"{name}/moving_mean", wt["moving_mean"]),
                graph.constant(f"{name}/moving_variance", wt["moving_variance"])], name,
                epsilon=float(layer.get("epsilon", 1e-3)))
            last_is_softmax = False
        elif kind == "GlobalAveragePooling2D":
            tensor = graph.node("GlobalAveragePool", [tensor], name)
            if layer.get("keepdims"):
                shape = (1, 1, shape[2])
            else:
                tensor = graph.node("Flatten", [tensor], name, axis=1)
                nchw, shape = False, (shape[2],)
            last_is_softmax = False
        elif kind == "Flatten":
            if nchw:
                tensor = graph.node("Transpose", [tensor], name, perm=[0, 2, 3, 1])  # back to NHWC order
                tensor = graph.node("Flatten", [tensor], name, axis=1)
                nchw, shape = False, (int(np.prod(shape)),)
            last_is_softmax = False
        elif kind == "Dropout":
            continue  # the identity at inference
        elif kind in ("Activation", "ReLU", "Softmax"):
            activation(name, {"ReLU": "relu", "Softmax": "softmax"}.get(kind, layer.get("activation")))
        else:
            raise ValueError(f"layer {name!r} ({kind}): no ONNX mapping for this layer type")
    if nchw:
        tensor = graph.node("Transpose", [tensor], "output", perm=[0, 2, 3, 1])
    output_name = "probabilities" if last_is_softmax else "output"
    graph.nodes.append(helper.make_node("Identity", [tensor], [output_name], name=output_name))
    out_dims = [batch_dim, *shape]
    graph_output = helper.make_tensor_value_info(output_name, TensorProto.FLOAT, out_dims)
    onnx_graph = helper.make_graph(graph.nodes, config.get("name") or "microcnn", [graph_input], [graph_output],
                                   initializer=graph.initializers)
    opset_ids = [helper.make_opsetid("", opset)]
    model = helper.make_model(onnx_graph, opset_imports=opset_ids, producer_name="microcnn",
                              ir_version=helper.find_min_ir_version_for(opset_ids))
    return model


def describe_input(layout, preprocessing):
    """The plain-text preprocessing rule stored in the file."""
    axes = "(batch, height, width, channels)" if layout == "NHWC" else "(batch, channels, height, width)"
    text = f"float32 {layout} {axes}"
    if preprocessing:
        h, w = preprocessing.get("image_size", ("?", "?"))
        channels = preprocessing.get("channels")
        colour = {1: "grayscale", 3: "RGB"}.get(channels, f"{channels} channels")
        text += f", {h}x{w} pixels, {colour}"
        text += ", resized with bilinear interpolation" if preprocessing.get("resample") == "bilinear" else ""
        text += "; 8-bit images: pixel / 255"
        high = preprocessing.get("high_depth_range")
        if high:
            text += f"; 16-bit and float images: (pixel - {high[0]:g}) / ({high[1]:g} - {high[0]:g})"
    return text


def metadata_props(metadata, ood, layout, output_name):
    """{key: string} for the file's metadata_props."""
    from . import __version__

    metadata = metadata or {}
    props = {"microcnn_version": __version__, "input_layout": layout,
             "output": f"{output_name}: float32 (batch, classes)"
             + (", in the order of class_names" if "class_names" in metadata else "")}
    if "class_names" in metadata:
        props["class_names"] = json.dumps(list(metadata["class_names"]))
    preprocessing = metadata.get("preprocessing")
    if preprocessing is not None:
        props["preprocessing"] = json.dumps(preprocessing)
    props["preprocessing_rule"] = describe_input(layout, preprocessing)
    if ood is not None:
        props["ood"] = json.dumps(ood)
    return props


def ood_config(model):
    """The open-set detector's JSON settings if the model carries one, else None."""
    detector = getattr(model, "ood", None)
    if detector is not None and hasattr(detector, "get_config"):
        return detector.get_config()
    return (getattr(model, "metadata", None) or {}).get("ood")


def export_model(model, filepath, opset=DEFAULT_OPSET, batch="dynamic", input_layout="NHWC", fold_batchnorm=True,
                 ood=None):
    """Write `model` (a built Sequential) to `filepath` as ONNX; returns the onnx.ModelProto. `ood`: the
    open-set settings to record (default: the model's own, if any)."""
    onnx = _onnx()
    model._require_built("export")
    filepath = os.fspath(filepath)
    if os.path.isdir(filepath):
        raise IsADirectoryError(f"{filepath}: is a directory (expected the path of the .onnx file to write)")
    folder = os.path.dirname(os.path.abspath(filepath))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"{filepath}: the folder {folder} does not exist")
    proto = build_graph(model.get_config(), model.named_weights(), opset=opset, batch=batch,
                        input_layout=input_layout, fold_batchnorm=fold_batchnorm)
    output_name = proto.graph.output[0].name
    props = metadata_props(model.metadata, ood if ood is not None else ood_config(model), input_layout,
                           output_name)
    onnx.helper.set_model_props(proto, props)
    proto.doc_string = f"microcnn model {model.name!r}; input: {props['preprocessing_rule']}; {props['output']}"
    onnx.checker.check_model(proto, full_check=True)
    write_atomic(filepath, proto.SerializeToString())
    return proto
