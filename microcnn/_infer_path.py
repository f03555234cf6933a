"""The lean float32 inference path of a plan: what `Plan.forward` runs for a forward pass from the input on
that records nothing (predict, predict_on_batch, evaluate, validation, a model call in inference mode, the
open-set detector's features with a `tap` on each 4-D step output, `features`).

For each input shape the plan's steps are turned once into a list of kernel calls, and every intermediate
activation gets a buffer that is kept and written again by the next call of that shape: in steady state a
call allocates nothing but the array it returns (the probabilities after a final softmax, else the last
layer's output; a few dozen bytes a sample). That array is always new, so two results a caller keeps never
share memory. The buffers of the last few input shapes are kept (`MAX_SHAPES`; a predict's last, shorter batch
is a second shape); they hold one batch's activations (34 MB for the seed net at 150x150, batch 32) and are
freed with the plan (a new plan is made when the model is built or compiled again).

- a fused Conv2D(relu) + MaxPooling2D(2) step: `conv2d_relu_maxpool_infer(..., out=buffer)`;
- a Dense layer (activation relu, softmax or linear): `dense_forward_infer(..., out=buffer)`. With more than
  4 rows, once its weights have been the same for a few calls, it reads a copy of them packed into the GEMM's
  micro-panels (`DenseWeights`; the values are dense_forward's bit for bit);
- Flatten is a reshape, Dropout and InputLayer are the identity; any other step runs its own `forward`.

A second thread calling the same model while a call runs takes the ordinary (allocating) path rather than
wait or share the buffers. bf16 precision keeps the ordinary path (_inference.py).
"""

import threading
import weakref
from collections import OrderedDict

import numpy as np

from . import _core

MAX_SHAPES = 3
_SAMPLES = 1024  # weights compared per call to notice that a Dense layer's weights changed
_STABLE_CALLS = 3  # calls on unchanged weights before a Dense layer's weights are packed
_copies = weakref.WeakSet()  # every DenseWeights, to drop their packed copies when weights are written


def weights_written():
    """Called where the library writes weights in place (Layer.set_weights, a training step's backward): the
    packed copies are dropped (memory back while training) and made again once the weights are stable."""
    for copy in list(_copies):
        copy.drop()


class DenseWeights:
    """A Dense kernel packed for the GEMM (`_core.pack_dense`), made on the `_STABLE_CALLS`-th call that finds
    the kernel unchanged (a validation pass of 1-2 batches after each training epoch does not pay for packing;
    a longer one packs once per epoch). Unchanged means: no weight write through the library since
    (`weights_written`) and the same address, shape and strided sample of 1024 values (an in-place write by
    the caller)."""

    def __init__(self):
        self._key = None
        self._packed = None
        self._calls = 0
        _copies.add(self)

    def drop(self):
        self._key = self._packed = None
        self._calls = 0

    def get(self, kernel):
        """-> (packed copy, nr), or (None, 0): use the kernel itself for now."""
        flat = kernel.reshape(-1)
        nr = _core.dense_packed_nr()
        key = (flat.__array_interface__["data"][0], kernel.shape, nr,
               flat[:: max(1, flat.size // _SAMPLES)].tobytes())
        if key != self._key:
            self.drop()
            self._key = key
        self._calls += 1
        if self._packed is None and self._calls >= _STABLE_CALLS:
            self._packed = _core.pack_dense(kernel)
        return (self._packed, nr) if self._packed is not None else (None, 0)


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

    def __init__(self, layer, logits, fresh, weights):
        from .layers._activations import softmax

        self.layer, self.softmax = layer, softmax if layer.activation == "softmax" and not logits else None
        self.fresh = fresh and self.softmax is None  # a softmax returns a new array anyway
        self.relu = layer.activation == "relu"
        self.weights, self.buf = weights, None  # weights: the layer's DenseWeights, shared by all shapes

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


def _identity(x):
    return x


def _ops(steps, logits, dense_weights, conv_step, layer_step):
    """One callable per step."""
    from .layers.core import Dense, Dropout, Flatten, InputLayer

    ops, last = [], len(steps) - 1
    producing = [i for i, step in enumerate(steps) if not isinstance(step.layers[-1], (Dropout, InputLayer, Flatten))]
    final = producing[-1] if producing else -1  # the step whose output is returned: always a new array
    for i, step in enumerate(steps):
        layer, step_logits = step.layers[-1], logits and i == last
        if type(step) is conv_step:
            ops.append(_Conv(step.conv, fresh=i == final))
        elif type(step) is not layer_step:
            ops.append(_Step(step, step_logits))
        elif isinstance(layer, (Dropout, InputLayer)):
            ops.append(_identity)  # in inference
        elif isinstance(layer, Flatten):
            ops.append(lambda x: x.reshape(len(x), -1))
        elif isinstance(layer, Dense) and layer.activation in ("relu", "softmax", "linear"):
            weights = dense_weights.setdefault(id(layer), DenseWeights())
            ops.append(_Dense(layer, step_logits and layer.ends_in_softmax, i == final, weights))
        else:
            ops.append(_Step(step, step_logits))
    return ops


class InferencePath:
    """A plan's lean inference, per input shape; see the module docstring."""

    def __init__(self, steps, conv_step, layer_step):
        """steps: the plan's; conv_step, layer_step: plan.ConvReluPoolStep and plan.LayerStep (the step kinds
        this path runs itself; any other runs its own forward)."""
        self._steps = steps
        self._kinds = (conv_step, layer_step)
        self._lock = threading.Lock()
        self._shapes = OrderedDict()
        self._dense_weights = {}  # id(Dense layer) -> DenseWeights, one per layer whatever the shape

    def run(self, x, logits, stop=None, tap=None):
        """The output of steps[:stop] (all by default) for x, a new array, or None when another thread is
        running this path. tap(y) is called with each step's output that is 4-D (a kept buffer: read it there,
        do not keep it)."""
        if not self._lock.acquire(blocking=False):
            return None
        try:
            stop = len(self._steps) if stop is None else stop
            key = (x.shape, bool(logits), stop)
            ops = self._shapes.get(key)
            if ops is None:
                ops = _ops(self._steps[:stop], bool(logits) and stop == len(self._steps), self._dense_weights,
                           *self._kinds)
                self._shapes[key] = ops
                while len(self._shapes) > MAX_SHAPES:
                    self._shapes.popitem(last=False)
            else:
                self._shapes.move_to_end(key)
            y = x
            for op in ops:
                y = op(y)
                if tap is not None and y.ndim == 4:
                    tap(y)
            # Never a view of a kept buffer or of the input (a last step that returns its input unchanged).
            if any(np.may_share_memory(y, b) for b in [x] + [getattr(op, "buf", None) for op in ops]
                   if b is not None):
                y = y.copy()
            return y
        finally:
            self._lock.release()
