"""Activation functions for layers: "linear" (None), "relu", "softmax" (over the last axis)."""

from .. import _core

NAMES = ("linear", "relu", "softmax")


def get(identifier, argument="activation"):
    if identifier is None:
        return "linear"
    if not isinstance(identifier, str):
        raise TypeError(f"{argument}: expected None or one of {', '.join(map(repr, NAMES))}, got {identifier!r}")
    if identifier.lower() not in NAMES:
        raise ValueError(f"{argument}: expected None or one of {', '.join(map(repr, NAMES))}, got {identifier!r}")
    return identifier.lower()


def softmax(z):
    """Softmax over the last axis of any-rank z (the kernel takes (N, M))."""
    return _core.softmax_forward(z.reshape(-1, z.shape[-1])).reshape(z.shape)


def softmax_backward(dy, y):
    flat = (-1, y.shape[-1])
    return _core.softmax_backward(dy.reshape(flat), y.reshape(flat)).reshape(y.shape)


class ActivationMixin:
    """For layers whose kernel applies ReLU itself (relu=True) and whose output may be a softmax.

    Forward: `z = kernel(..., relu=self.activation == "relu")`, then `y = self._activate(z, logits)`.
    Backward: `dz = self._activation_backward(dy, y, logits)` with y the layer's output.
    """

    activation = "linear"

    @property
    def ends_in_softmax(self):
        return self.activation == "softmax"

    def _activate(self, z, logits):
        if self.activation == "softmax" and not logits:
            return softmax(z)
        return z

    def _activation_backward(self, dy, y, logits):
        if self.activation == "relu":
            return _core.relu_backward(dy, y)
        if self.activation == "softmax" and not logits:
            return softmax_backward(dy, y)
        return dy
