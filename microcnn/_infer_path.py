"""The lean float32 inference path of a plan: what `Plan.forward` runs for a whole forward pass that records
nothing (predict, predict_on_batch, evaluate, validation, a model call in inference mode).

For each input shape the plan's steps are turned once into a list of kernel calls, and every intermediate
activation gets a buffer that is kept and written again by the next call of that shape: in steady state a
call allocates nothing but the array it returns (the final Dense layer's output and, after a softmax, the
probabilities; a few hundred bytes a sample). That array is always new, so two results a caller keeps never
share memory. The buffers of the last few input shapes are kept (`MAX_SHAPES`; a predict's last, shorter batch
is a second shape); they hold one batch's activations (34 MB for the seed net at 150x150, batch 32) and are
freed with the plan (a new plan is made when the model is built or compiled again).

- a fused Conv2D(relu) + MaxPooling2D(2) step: `conv2d_relu_maxpool_infer(..., out=buffer)`;
- a Dense layer (activation relu, softmax or linear): `dense_forward_infer(..., out=buffer)`. With more than
  4 rows it reads a copy of the weights packed once into the GEMM's micro-panels (`DenseWeights`; the values
  are dense_forward's bit for bit);
- Flatten is a reshape, Dropout and InputLayer are the identity; any other step runs its own `forward`.

A second thread calling the same model while a call runs takes the ordinary (allocating) path rather than
wait or share the buffers. bf16 precision keeps the ordinary path (_inference.py).
"""

import threading
from collections import OrderedDict

import numpy as np

from . import _core

MAX_SHAPES = 3
_SAMPLES = 1024  # weights compared per call to notice that a Dense layer's weights changed
_writes = [0]  # weight writes through the library (set_weights, training steps): packed copies are re-made


def weights_written():
    """Called where the library writes weights in place (Layer.set_weights, a training step's backward)."""
    _writes[0] += 1


class DenseWeights:
    """A Dense kernel packed once for the GEMM (`_core.pack_dense`), re-made when the float32 kernel may have
    changed: after any weight write through the library (`weights_written`), or when its address, shape or a
    strided sample of 1024 of its values differ from the last call's (an in-place write by the caller)."""

    def __init__(self):
        self._key = None
        self._packed = None

    def get(self, kernel):
        flat = kernel.reshape(-1)
        nr = _core.dense_packed_nr()
        key = (_writes[0], flat.__array_interface__["data"][0], kernel.shape, nr,
               flat[:: max(1, flat.size // _SAMPLES)].tobytes())
        if key != self._key:
            self._packed = None  # the old copy goes before the new one is made
            self._packed = _core.pack_dense(kernel)
            self._key = key
        return self._packed, nr


class _Conv:
    """A fused Conv2D(relu) + MaxPooling2D(2) step into its kept buffer."""

    def __init__(self, conv, fresh):
        self.conv, self.fresh, self.buf = conv, fresh, None

    def __call__(self, x):
        conv = self.conv
        y = _core.conv2d_relu_maxpool_infer(x, conv._weights["kernel"], conv._weights.get("bias"), conv.strides[0],
                                            conv.strides[1], conv.padding, out=self.buf)
        if not self.fresh:
            self.buf = y
        return y


class _Dense:
    """A Dense layer (relu, softmax or linear) into its kept buffer; `logits`: stop before a final softmax."""

    def __init__(self, layer, logits, fresh):
        from .layers._activations import softmax

        self.layer, self.softmax = layer, softmax if layer.activation == "softmax" and not logits else None
        self.fresh = fresh and self.softmax is None  # a softmax returns a new array anyway
        self.relu = layer.activation == "relu"
        self.weights, self.buf = DenseWeights(), None

    def __call__(self, x):
        w = self.layer._weights
        kernel = w["kernel"]
        packed, nr = self.weights.get(kernel) if len(x) > 4 else (None, 0)  # 1-4 rows: the plain weights
        z = _core.dense_forward_infer(x, kernel, w.get("bias"), self.relu, packed, nr, out=self.buf)
        if not self.fresh:
            self.buf = z
        return z if self.softmax is None else self.softmax(z)


class _Step:
    """Any other step, through its own forward (allocating)."""

    def __init__(self, step, logits):
        self.step, self.logits = step, logits

    def __call__(self, x):
        return self.step.forward(x, False, logits=self.logits)


def _ops(steps, logits):
    from .layers.core import Dense, Dropout, Flatten, InputLayer

    ops, last = [], len(steps) - 1
    producing = [i for i, step in enumerate(steps) if not isinstance(step.layers[-1], (Dropout, InputLayer, Flatten))]
    final = producing[-1] if producing else -1  # the step whose output is returned: always a new array
    for i, step in enumerate(steps):
        layer, step_logits = step.layers[-1], logits and i == last
        if len(step.layers) == 2:  # ConvReluPoolStep
            ops.append(_Conv(step.conv, fresh=i == final))
        elif isinstance(layer, (Dropout, InputLayer)):
            continue  # the identity in inference
        elif isinstance(layer, Flatten):
            ops.append(lambda x: x.reshape(len(x), -1))
        elif isinstance(layer, Dense) and layer.activation in ("relu", "softmax", "linear"):
            ops.append(_Dense(layer, step_logits and layer.ends_in_softmax, fresh=i == final))
        else:
            ops.append(_Step(step, step_logits))
    return ops


class InferencePath:
    """A plan's lean inference, per input shape; see the module docstring."""

    def __init__(self, steps):
        self._steps = steps
        self._lock = threading.Lock()
        self._shapes = OrderedDict()

    def run(self, x, logits):
        """The plan's output for x (a new array), or None when another thread is running this path."""
        if not self._lock.acquire(blocking=False):
            return None
        try:
            key = (x.shape, bool(logits))
            ops = self._shapes.get(key)
            if ops is None:
                ops = self._shapes[key] = _ops(self._steps, bool(logits))
                while len(self._shapes) > MAX_SHAPES:
                    self._shapes.popitem(last=False)
            else:
                self._shapes.move_to_end(key)
            y = x
            for op in ops:
                y = op(y)
            # Never a view of a kept buffer or of the input (a last step that returns its input unchanged).
            if any(np.may_share_memory(y, b) for b in [x] + [getattr(op, "buf", None) for op in ops]
                   if b is not None):
                y = y.copy()
            return y
        finally:
            self._lock.release()
