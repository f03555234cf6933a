"""bf16 training: the plan's steps for a model compiled with precision="bf16".

Every product of a training step's GEMMs takes bf16 operands, rounded to nearest even from float32 (what
vcvtne2ps2bf16 does before vdpbf16ps), and is summed in float32:

- Conv2D: forward (x, kernel), backward-data (dy, kernel), backward-weights (x, dy): `conv2d_forward_bf16`,
  `conv2d_backward_bf16` (cpp/src/bf16_train.cpp);
- Dense: forward (x, kernel) and backward-data (dz, kernel) on the packed bf16 kernel (`dense_forward_bf16`),
  backward-weights (x, dz) on the bf16-rounded factors through the float32 kernels (the same products), so a
  large kernel keeps its gradient factored for Adam's one-pass update as in float32.

A product of two bf16 values is exact in float32, so every CPU computes the same products; only the order of
the float32 sums differs. With AVX512_BF16 the packed bf16 GEMM runs on vdpbf16ps. On AVX2 without it, the
float32 kernels run on bf16-rounded float32 copies of the operands (a bf16 GEMM there would only widen to
float32 and run the same FMAs); the portable build (MICROCNN_ISA=generic) runs the packed bf16 GEMM in C++.
The float32 weights stay the master copy and Adam's moments stay float32: each step rounds the weights afresh.
Bias gradients and everything that is not a GEMM (activations, pooling, loss, optimizer) stay float32. Steps
that record nothing (predict, evaluate, validation) run the bf16 inference paths of the float32 steps they
wrap (_inference.py).
"""

import numpy as np

from . import _core
from ._outer_gradient import OuterGradient
from .layers.conv import Conv2D
from .layers.core import Dense


def _widening():
    """True where the bf16 GEMM would only widen bf16 to float32 (AVX2 without AVX512_BF16): the float32 kernels
    run on bf16-rounded copies there, the same products."""
    return _core.bf16_kernel() == "avx2/fma"


def training_step(step, factored=False):
    """The bf16 training version of a plan step, or the step itself when it has no GEMM."""
    first = step.layers[0]
    if isinstance(first, Conv2D):
        return ConvReluPoolStep(step) if len(step.layers) == 2 else ConvStep(step)
    if isinstance(first, Dense):
        return DenseStep(step, factored)
    return step


class _Bf16Step:
    """Wraps a float32 plan step: records in bf16, delegates what records nothing to the wrapped step."""

    def __init__(self, inner):
        self.inner = inner
        self.layers = inner.layers
        self._cache = None

    def forward(self, x, training, logits=False, record=None, precision="f32"):
        if not (training if record is None else record):
            self._cache = None
            return self.inner.forward(x, training, logits=logits, record=record, precision=precision)
        return self._record(x, training, logits)

    def clear(self):
        self._cache = None
        self.inner.clear()


def _conv_args(conv):
    return conv.strides[0], conv.strides[1], conv.padding


class ConvStep(_Bf16Step):
    """A Conv2D on its own."""

    def _record(self, x, training, logits):
        conv = self.layers[0]
        logits = logits and conv.ends_in_softmax
        z = _core.conv2d_forward_bf16(x, conv._weights["kernel"], conv._weights.get("bias"), *_conv_args(conv),
                                      relu=conv.activation == "relu")
        y = conv._activate(z, logits)
        self._cache = (x, y, logits)
        return y

    def backward(self, dy, need_dx):
        (x, y, logits), self._cache = self._cache, None
        conv = self.layers[0]
        dz = conv._activation_backward(dy, y, logits)
        dx, dw, db = _core.conv2d_backward_bf16(dz, x, conv._weights["kernel"], *_conv_args(conv), need_dx=need_dx,
                                                need_db=conv.use_bias)
        return dx, {conv: {"kernel": dw, "bias": db} if conv.use_bias else {"kernel": dw}}


class ConvReluPoolStep(_Bf16Step):
    """Conv2D(relu) + MaxPooling2D(2). Widening CPUs: the float32 fused kernels on bf16-rounded x, kernel and dy
    (the full-resolution activation never reaches memory, as in float32). Elsewhere: the bf16 convolution, then
    the float32 pooling kernel."""

    def _record(self, x, training, logits):
        conv = self.layers[0]
        kernel, bias = conv._weights["kernel"], conv._weights.get("bias")
        if _widening():
            x = _core.round_bf16(x)
            y, argmax = _core.conv2d_relu_maxpool_forward(x, _core.round_bf16(kernel), bias, *_conv_args(conv))
            self._cache = (x, y, argmax, conv.compute_output_shape(x.shape))
            return y
        z = _core.conv2d_forward_bf16(x, kernel, bias, *_conv_args(conv), relu=True)
        y, argmax = _core.maxpool2d_forward(z, 2, 2, 2, 2, "valid")
        self._cache = (x, y, argmax, z.shape)
        return y

    def backward(self, dy, need_dx):
        (x, y, argmax, z_shape), self._cache = self._cache, None
        conv = self.layers[0]
        kernel = conv._weights["kernel"]
        if not need_dx and _widening():  # the first step: weight gradients straight from the pooled gradient
            dw, _ = _core.conv2d_relu_maxpool_backward(_core.round_bf16(dy), argmax, y, x, kernel, *_conv_args(conv),
                                                       need_db=False)
            grads = {"kernel": dw}
            if conv.use_bias:  # the bias gradient sums dy as given, as conv2d_backward_bf16's does
                grads["bias"] = _core.relu_backward(dy, y).sum(axis=(0, 1, 2), dtype=np.float32)
            return None, {conv: grads}
        dz = _core.maxpool2d_backward(_core.relu_backward(dy, y), argmax, z_shape)
        dx, dw, db = _core.conv2d_backward_bf16(dz, x, kernel, *_conv_args(conv), need_dx=need_dx,
                                                need_db=conv.use_bias)
        return dx, {conv: {"kernel": dw, "bias": db} if conv.use_bias else {"kernel": dw}}


class DenseStep(_Bf16Step):
    """A Dense layer; `factored`: leave a large kernel's gradient as an OuterGradient of bf16-rounded factors."""

    def __init__(self, inner, factored=False):
        super().__init__(inner)
        self.factored = factored

    def _record(self, x, training, logits):
        dense = self.layers[0]
        logits = logits and dense.ends_in_softmax
        x = _core.round_bf16(x)
        kernel, bias, relu = dense._weights["kernel"], dense._weights.get("bias"), dense.activation == "relu"
        if _widening():  # the float32 kernel on a bf16-rounded copy
            rounded = _core.round_bf16(kernel)
            z = _core.dense_forward(x, rounded, bias, relu=relu)
        else:
            rounded = None
            z = _core.dense_forward_bf16(x, _core.pack_bf16(kernel), bias, dense.units, relu=relu)
        y = dense._activate(z, logits)
        self._cache = (x, y, logits, rounded)
        return y

    def backward(self, dy, need_dx):
        (x, y, logits, rounded), self._cache = self._cache, None
        dense = self.layers[0]
        kernel = dense._weights["kernel"]
        dz = dense._activation_backward(dy, y, logits)
        dz_bf16 = _core.round_bf16(dz)
        dx = None
        if need_dx and rounded is not None:
            dx = _core.dense_backward(dz_bf16, x, rounded, need_dx=True, need_db=False, need_dw=False)[0]
        elif need_dx:
            dx = _core.dense_forward_bf16(dz_bf16, _core.pack_bf16_transposed(kernel), None, kernel.shape[0])
        if self.factored:
            dw = OuterGradient(x, dz_bf16, kernel)
        else:
            _, dw, _ = _core.dense_backward(dz_bf16, x, kernel, need_dx=False, need_db=False)
        grads = {"kernel": dw}
        if dense.use_bias:
            grads["bias"] = _core.dense_backward(dz, x, kernel, need_dx=False, need_db=True, need_dw=False)[2]
        return dx, {dense: grads}
