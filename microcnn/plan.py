"""The execution plan: how a Sequential's layers run, decided once instead of by special cases in the loops.

`build_plan(layers, ...)` turns the layer list into a list of steps, each a forward/backward pair over whole
batches that owns what its backward needs. No layer reads or writes another layer's state: fusing layers is
the plan's decision, made here (as ONNX Runtime's graph transformers or OpenVINO's fused nodes make it).

Steps:

- `ConvReluPoolStep(conv, pool)`: a Conv2D with ReLU followed by a 2x2 stride-2 "valid" MaxPooling2D, as one
  kernel (`conv2d_relu_maxpool_forward`). The full-resolution ReLU output (the seed net's first: 92 MB a batch)
  never goes to memory; the step keeps the pooled output and its argmax. Backward applies the ReLU's
  derivative on the pooled side, which is exact (a window whose maximum is 0 holds only zeros; any other routes
  its gradient to a positive input) and four times cheaper, then unpools (one pass that writes each element
  once) and runs `conv2d_backward`, all in `conv2d_relu_maxpool_backward_data`. As the
  first step (no input gradient needed) it gets the weight gradients straight from the pooled gradient
  (`conv2d_relu_maxpool_backward`), without the full-resolution gradient in memory.
- `LayerStep(layer)`: any other layer, through its own `forward` / `backward`.
- The loss: when the model is compiled with a probability loss and its last layer ends in a softmax over
  (batch, classes) outputs, `plan.softmax_loss` is true: the last step stops at the logits and the loss's fused
  softmax + cross-entropy kernel takes over (exact, and cheaper than a softmax backward).

Gradients: `backward` returns {layer: {weight name: gradient}}. With `fuse_dense_update` (the default), a Dense
kernel with more than FACTORED_MIN_WEIGHTS weights gives its gradient as an `OuterGradient` (x^T @ dy, kept
factored), which Adam applies in one pass over the weights (`dense_adam_update`). With
`fuse_dense_update=False` every gradient is an array before the optimizer sees it (what an allreduce over
processes needs); the weights are the same bit for bit.

Taps, for tools that look inside the network:

- `plan.features(x)`: the input of the last Dense layer (the penultimate features), in inference mode;
- `plan.conv_map_and_gradient(x, class_index)`: the last Conv2D's output and the gradient of the class score
  (the last layer's output, before a final softmax) with respect to it, per sample (Grad-CAM's inputs). It
  needs a plan in which that output is a step boundary: `build_plan(layers, split_after=last_conv)`, which
  `Sequential.execution_plan(split_after=...)` gives.
"""

import numpy as np

from . import _bf16_train, _core, _infer_path, _inference
from ._outer_gradient import FACTORED_MIN_WEIGHTS
from .layers.conv import Conv2D, MaxPooling2D
from .layers.core import Dense


def fusable(conv, pool):
    """True when `conv` then `pool` run as one ConvReluPoolStep: a ReLU Conv2D followed by 2x2 pooling with
    stride 2 and padding "valid"."""
    return (isinstance(conv, Conv2D) and conv.activation == "relu" and isinstance(pool, MaxPooling2D)
            and pool.pool_size == (2, 2) and pool.strides == (2, 2) and pool.padding == "valid")


class LayerStep:
    """One layer through its own forward/backward; `factored` asks a Dense for an OuterGradient kernel gradient."""

    def __init__(self, layer, factored=False):
        self.layer = layer
        self.layers = (layer,)
        self.factored = factored
        self._backward_options = {"factored": True} if factored else {}

    def forward(self, x, training, logits=False, record=None, precision="f32"):
        if precision == "bf16" and isinstance(self.layer, Dense) and not training and not record:
            self._bf16 = getattr(self, "_bf16", None) or _inference.Bf16Copy()
            return _inference.dense_bf16(self.layer, x, logits and self.layer.ends_in_softmax, self._bf16)
        options = {"logits": True} if logits and self.layer.ends_in_softmax else {}
        if record is not None:
            options["record"] = record
        return self.layer.forward(x, training, **options)

    def backward(self, dy, need_dx):
        dx = self.layer.backward(dy, need_dx=need_dx, **self._backward_options)
        grads, self.layer.grads = self.layer.grads, {}
        return dx, {self.layer: grads}

    def clear(self):
        self.layer.clear_cache()


class ConvReluPoolStep:
    """Conv2D(activation="relu") + MaxPooling2D(2) as one kernel call; see the module docstring."""

    def __init__(self, conv, pool):
        self.conv = conv
        self.layers = (conv, pool)
        self._cache = None
        self._bf16 = _inference.Bf16Copy()

    def forward(self, x, training, logits=False, record=None, precision="f32"):
        conv = self.conv
        if not (training if record is None else record):  # nothing to keep: no argmax (_inference.py)
            self._cache = None
            return _inference.conv_relu_pool(conv, x, precision, self._bf16)
        y, argmax = _core.conv2d_relu_maxpool_forward(x, conv._weights["kernel"], conv._weights.get("bias"),
                                                      conv.strides[0], conv.strides[1], conv.padding)
        self._cache = (x, y, argmax) if (training if record is None else record) else None
        return y

    def backward(self, dy, need_dx):
        x, y, argmax = self._cache
        self._cache = None
        conv = self.conv
        kernel = conv._weights["kernel"]
        if need_dx:
            dx, dw, db = _core.conv2d_relu_maxpool_backward_data(dy, argmax, y, x, kernel, conv.strides[0],
                                                                 conv.strides[1], conv.padding,
                                                                 need_db=conv.use_bias)
        else:
            dx = None
            dw, db = _core.conv2d_relu_maxpool_backward(dy, argmax, y, x, kernel, conv.strides[0], conv.strides[1],
                                                        conv.padding, need_db=conv.use_bias)
        return dx, {conv: {"kernel": dw, "bias": db} if conv.use_bias else {"kernel": dw}}

    def clear(self):
        self._cache = None


def build_plan(layers, loss=None, output_shape=None, fuse=True, fuse_dense_update=True, split_after=None,
               precision="f32"):
    """-> Plan for `layers` (built). `loss` (a compiled Loss) and `output_shape` decide `softmax_loss`;
    fuse=False runs every layer on its own; `split_after`: a layer whose output must stay a step boundary;
    precision "bf16": conv and dense steps train on bf16 operands (_bf16_train.py)."""
    layers = list(layers)
    steps, i = [], 0
    while i < len(layers):
        layer = layers[i]
        if fuse and i + 1 < len(layers) and fusable(layer, layers[i + 1]) and layer is not split_after:
            steps.append(ConvReluPoolStep(layer, layers[i + 1]))
            i += 2
            continue
        factored = (fuse_dense_update and isinstance(layer, Dense)
                    and layer._weights["kernel"].size > FACTORED_MIN_WEIGHTS)
        steps.append(LayerStep(layer, factored=factored))
        i += 1
    if precision == "bf16":
        steps = [_bf16_train.training_step(step, getattr(step, "factored", False)) for step in steps]
    softmax_loss = (loss is not None and not loss.from_logits and bool(layers) and layers[-1].ends_in_softmax
                    and output_shape is not None and len(output_shape) == 2)
    plan = Plan(steps, softmax_loss)
    plan.precision = precision
    return plan


class Plan:
    """A list of steps; see the module docstring."""

    def __init__(self, steps, softmax_loss=False):
        self.steps = list(steps)
        self.softmax_loss = softmax_loss
        self.precision = "f32"  # "bf16": inference on bf16 weights (_inference.py); built so: bf16 training
        self._lean = _infer_path.InferencePath(self.steps, ConvReluPoolStep, LayerStep)  # float32 inference

    def __repr__(self):
        names = ["+".join(layer.name for layer in step.layers) for step in self.steps]
        return f"<Plan steps=[{', '.join(names)}] softmax_loss={self.softmax_loss}>"

    def index(self, layer):
        """Index of the step that runs `layer`."""
        for i, step in enumerate(self.steps):
            if any(member is layer for member in step.layers):
                return i
        raise ValueError(f"layer: {layer.name!r} is not part of this plan")

    def forward(self, x, training, logits=False, start=0, stop=None, record=None, tap=None):
        """Run steps[start:stop]; `logits` stops the last step of the plan before its softmax; `record` (default:
        `training`) keeps what backward needs; tap(y): called with each step's 4-D output (read it there)."""
        if not training and not record and start == 0 and self.precision == "f32":
            y = self._lean.run(x, logits, stop, tap)  # from the input on in inference: _infer_path.py
            if y is not None:
                return y
        stop = len(self.steps) if stop is None else stop
        for i in range(start, stop):
            x = self.steps[i].forward(x, training, logits=logits and i == len(self.steps) - 1, record=record,
                                      precision=self.precision)
            if tap is not None and x.ndim == 4:
                tap(x)
        return x

    def backward(self, dy, start=0, stop=None, need_dx=False):
        """Backpropagate through steps[start:stop] (after a recorded forward) -> (dx or None, {layer: {weight
        name: gradient}}). Steps after `start` always pass a gradient on; step `start` only with `need_dx`."""
        _infer_path.weights_written()  # an update follows: packed inference copies of weights are re-made
        stop = len(self.steps) if stop is None else stop
        grads = {}
        for i in range(stop - 1, start - 1, -1):
            dy, step_grads = self.steps[i].backward(dy, need_dx=need_dx or i > start)
            grads.update(step_grads)
        return dy, grads

    def clear(self):
        """Drop every step's recorded activations (after an error, or a forward not followed by backward)."""
        for step in self.steps:
            step.clear()

    # --- taps ------------------------------------------------------------------------------------------
    def _last(self, kind):
        for i in range(len(self.steps) - 1, -1, -1):
            for layer in self.steps[i].layers:
                if isinstance(layer, kind):
                    return i, layer
        raise ValueError(f"the model has no {kind.__name__} layer")

    def features(self, x):
        """The input of the last Dense layer for the batch x, in inference mode."""
        i, _ = self._last(Dense)
        return self.forward(x, training=False, stop=i)

    def conv_map_and_gradient(self, x, class_index):
        """-> (A, dA): the last Conv2D's output (N, P, Q, K) in inference mode and d score / d A, where score is
        the last layer's output (before a final softmax) at `class_index` (an int or one per sample)."""
        i, conv = self._last(Conv2D)
        if self.steps[i].layers[-1] is not conv:
            raise ValueError(f"layer {conv.name!r} is fused with the layer after it in this plan; build the plan "
                             f"with split_after=that layer")
        try:
            maps = self.forward(x, training=False, stop=i + 1)
            scores = self.forward(maps, training=False, logits=True, start=i + 1, record=True)
            classes = np.broadcast_to(np.asarray(class_index), (len(x),))
            dscores = np.zeros_like(scores)
            dscores[np.arange(len(x)), classes] = 1.0
            dmaps, _ = self.backward(dscores, start=i + 1, need_dx=True)
        finally:
            self.clear()
        return maps, dmaps
