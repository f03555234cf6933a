"""A microcnn Sequential of Conv2D / MaxPooling2D / Flatten / Dense / Dropout as an ONNX graph, for the
inference peers of bench_peers.py (ONNX Runtime, OpenVINO).

The graph is what a good exporter writes: NHWC input transposed once to NCHW, Conv with explicit pads (Keras's
"same": the odd extra row/column after), Relu, MaxPool, Flatten with the first Dense's rows permuted to the
NCHW order (so no transpose back), Gemm, Softmax. The batch axis is symbolic ("N").
"""

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def _same_pads(size, kernel, stride):
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def seed_graph(model, opset=17):
    """onnx.ModelProto of `model` (built); its output is the softmax probabilities (N, classes)."""
    nodes, inits = [], []
    h, w, c = model.input_shape[1:]
    nodes.append(helper.make_node("Transpose", ["input"], ["t0"], perm=[0, 3, 1, 2]))
    cur, nchw = "t0", True
    for i, layer in enumerate(model.layers):
        kind, out = type(layer).__name__, f"l{i}"
        if kind == "Conv2D":
            kernel = layer._weights["kernel"]
            r, s = layer.kernel_size
            sh, sw = layer.strides
            inits.append(numpy_helper.from_array(np.ascontiguousarray(kernel.transpose(3, 2, 0, 1)), f"w{i}"))
            inputs = [cur, f"w{i}"]
            if layer.use_bias:
                inits.append(numpy_helper.from_array(layer._weights["bias"], f"b{i}"))
                inputs.append(f"b{i}")
            pads = [0, 0, 0, 0]
            if layer.padding == "same":
                (pt, pb), (pl, pr) = _same_pads(h, r, sh), _same_pads(w, s, sw)
                pads = [pt, pl, pb, pr]
            nodes.append(helper.make_node("Conv", inputs, [out], kernel_shape=[r, s], strides=[sh, sw], pads=pads))
            _, h, w, c = layer.output_shape
            if layer.activation == "relu":
                nodes.append(helper.make_node("Relu", [out], [out + "r"]))
                out += "r"
            elif layer.activation not in (None, "linear"):
                raise ValueError(f"conv activation {layer.activation!r} not handled")
        elif kind == "MaxPooling2D":
            if layer.padding != "valid":
                raise ValueError("only 'valid' pooling is handled")
            nodes.append(helper.make_node("MaxPool", [cur], [out], kernel_shape=list(layer.pool_size),
                                          strides=list(layer.strides)))
            _, h, w, c = layer.output_shape
        elif kind == "Flatten":
            nodes.append(helper.make_node("Flatten", [cur], [out], axis=1))
        elif kind == "Dropout":
            continue
        elif kind == "Dense":
            kernel = layer._weights["kernel"]
            if nchw:  # rows in NHWC flatten order -> NCHW order
                kernel = kernel.reshape(h, w, c, -1).transpose(2, 0, 1, 3).reshape(h * w * c, -1)
                nchw = False
            inits.append(numpy_helper.from_array(np.ascontiguousarray(kernel), f"w{i}"))
            inits.append(numpy_helper.from_array(layer._weights["bias"], f"b{i}"))
            nodes.append(helper.make_node("Gemm", [cur, f"w{i}", f"b{i}"], [out]))
            act = layer.activation
            if act == "relu":
                nodes.append(helper.make_node("Relu", [out], [out + "a"]))
                out += "a"
            elif act == "softmax":
                nodes.append(helper.make_node("Softmax", [out], [out + "a"], axis=1))
                out += "a"
            elif act not in (None, "linear"):
                raise ValueError(f"dense activation {act!r} not handled")
        else:
            raise ValueError(f"layer type {kind} not handled")
        cur = out
    nodes.append(helper.make_node("Identity", [cur], ["probs"]))
    h0, w0, c0 = model.input_shape[1:]
    graph = helper.make_graph(
        nodes, "seed", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", h0, w0, c0])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", model.output_shape[-1]])], inits)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    proto.ir_version = 8
    onnx.checker.check_model(proto)
    return proto
