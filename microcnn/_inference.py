"""Inference (predict, evaluate, validation): the layers run as steps that keep nothing for a backward pass.

Every Conv2D(relu) + MaxPooling2D(2) pair is one kernel call (conv2d_relu_maxpool_infer: the conv output is
pooled while it is in cache, and no argmax is written). With precision "bf16" the Dense layers run on bf16
copies of their weights (half the bytes to stream: a batch-1 prediction through the seed net's 87616x256 Dense
is bound by that read), and on CPUs with AVX512_BF16 the fused conv steps with more than 4 input channels too
(vdpbf16ps; activations rounded to bf16). Accumulation is float32 throughout; the float32 weights stay the
master copy, so training is unchanged. The bf16 copies are made on first use and re-made when the float32
weights change (a strided sample of them is compared on every call).
"""

import numpy as np

from . import _core
from .layers.conv import fusable
from .layers.core import Dense

PRECISIONS = ("f32", "bf16")
_SAMPLES = 512  # float32 weights compared per call to notice that they changed


def check_precision(value, argument="precision"):
    if value not in PRECISIONS:
        raise ValueError(f"{argument}: expected one of {', '.join(map(repr, PRECISIONS))}, got {value!r}")
    return value


class _Bf16Weights:
    """bf16 copies of a model's weight matrices, keyed by layer name."""

    def __init__(self):
        self._entries = {}

    def get(self, name, w2d):
        flat = w2d.reshape(-1)
        key = (flat.__array_interface__["data"][0], flat.shape, flat[:: max(1, flat.size // _SAMPLES)].tobytes())
        entry = self._entries.get(name)
        if entry is None or entry[0] != key:
            entry = (key, _core.pack_bf16(np.ascontiguousarray(w2d)))
            self._entries[name] = entry
        return entry[1]


def forward(model, x, logits=False):
    """The model's output for batch x in inference mode; logits: the last layer's pre-softmax values."""
    layers, last, i = model._layers, len(model._layers) - 1, 0
    bf16 = getattr(model, "precision", "f32") == "bf16"
    if bf16:
        packed = model.__dict__.setdefault("_bf16_weights", _Bf16Weights())
        native = _core.bf16_kernel() == "avx512_bf16"
    while i <= last:
        layer = layers[i]
        if i < last and fusable(layer, layers[i + 1]):
            kernel, bias = layer._weights["kernel"], layer._weights.get("bias")
            (sh, sw), pad = layer.strides, layer.padding
            if bf16 and native and kernel.shape[2] > 4:  # C <= 4 runs the float32 direct kernel (few FLOPs)
                r, s, _, k = kernel.shape
                w = packed.get(layer.name, kernel.reshape(-1, k))
                x = _core.conv2d_relu_maxpool_infer_bf16(x, w, bias, r, s, k, sh, sw, pad)
            else:
                x = _core.conv2d_relu_maxpool_infer(x, kernel, bias, sh, sw, pad)
            i += 2
            continue
        want_logits = logits and i == last
        if bf16 and isinstance(layer, Dense):
            w = packed.get(layer.name, layer._weights["kernel"])
            z = _core.dense_forward_bf16(x, w, layer._weights.get("bias"), layer.units,
                                         relu=layer.activation == "relu")
            x = layer._activate(z, want_logits)
        else:
            x = layer.forward(x, False, logits=True) if want_logits else layer.forward(x, False)
        i += 1
    return x
