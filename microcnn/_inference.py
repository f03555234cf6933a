"""Inference kernels of the plan's steps (plan.py), used when a forward pass keeps nothing for backward
(predict, evaluate, validation, features).

A Conv2D(relu) + MaxPooling2D(2) step runs conv2d_relu_maxpool_infer: the conv output is pooled while it is in
cache and no argmax is written. With precision "bf16" the Dense layers run on bf16 copies of their weights (half
the bytes to stream: a batch-1 prediction through the seed net's 87616x256 Dense is bound by that read), and on
CPUs with AVX512_BF16 the fused conv steps with more than 4 input channels too (vdpbf16ps, activations rounded
to bf16). Accumulation is float32 throughout; the float32 weights stay the master copy, so training is
unchanged. A bf16 copy is made on first use and re-made when the float32 weights change (a strided sample of
them is compared on every call).
"""

import numpy as np

from . import _core

PRECISIONS = ("f32", "bf16")
_SAMPLES = 512  # float32 weights compared per call to notice that they changed


def check_precision(value, argument="precision"):
    if value not in PRECISIONS:
        raise ValueError(f"{argument}: expected one of {', '.join(map(repr, PRECISIONS))}, got {value!r}")
    return value


class Bf16Copy:
    """The packed bf16 copy of one weight matrix, re-packed when the float32 matrix changes."""

    def __init__(self):
        self._key = None
        self._packed = None

    def get(self, w2d):
        flat = w2d.reshape(-1)
        key = (flat.__array_interface__["data"][0], flat.shape, flat[:: max(1, flat.size // _SAMPLES)].tobytes())
        if key != self._key:
            self._packed = _core.pack_bf16(np.ascontiguousarray(w2d))
            self._key = key
        return self._packed


def conv_relu_pool(conv, x, precision, copy):
    """Inference of a fused Conv2D(relu) + MaxPooling2D(2) step; copy: the step's Bf16Copy."""
    kernel, bias = conv._weights["kernel"], conv._weights.get("bias")
    (sh, sw), pad = conv.strides, conv.padding
    # C <= 4 runs the float32 direct kernel (few FLOPs); bf16 conv only where the CPU multiplies bf16 natively
    if precision == "bf16" and kernel.shape[2] > 4 and _core.bf16_kernel() == "avx512_bf16":
        r, s, _, k = kernel.shape
        return _core.conv2d_relu_maxpool_infer_bf16(x, copy.get(kernel.reshape(-1, k)), bias, r, s, k, sh, sw, pad)
    return _core.conv2d_relu_maxpool_infer(x, kernel, bias, sh, sw, pad)


def dense_bf16(layer, x, logits, copy):
    """Inference of a Dense layer on its bf16 weights; logits: stop before a final softmax."""
    z = _core.dense_forward_bf16(x, copy.get(layer._weights["kernel"]), layer._weights.get("bias"), layer.units,
                                 relu=layer.activation == "relu")
    return layer._activate(z, logits)
