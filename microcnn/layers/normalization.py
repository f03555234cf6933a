"""BatchNormalization and GlobalAveragePooling2D, with Keras 3's semantics and weight layout."""

import numbers

import numpy as np

from .. import _core
from .._validation import boolean, number
from .base import Layer, recording, register


@register
class BatchNormalization(Layer):
    """Normalise each channel (the last axis) with the batch statistics while training and with moving
    statistics at inference; then scale by gamma and shift by beta.

    As in Keras 3: weights are [gamma, beta, moving_mean, moving_variance] (gamma/beta only when `scale`/
    `center`); in training `moving = moving * momentum + batch * (1 - momentum)` for the mean and the biased
    batch variance; a layer with trainable=False always runs in inference mode (the fine-tuning rule).
    """

    def __init__(self, axis=-1, momentum=0.99, epsilon=1e-3, center=True, scale=True, **kwargs):
        super().__init__(**kwargs)
        if isinstance(axis, bool) or not isinstance(axis, numbers.Integral):
            raise TypeError(f"axis: expected an integer (the channel axis, -1), got {axis!r}")
        self.axis = int(axis)
        self.momentum = number("momentum", momentum, low=0.0, high=1.0)
        self.epsilon = number("epsilon", epsilon, low=0.0, low_open=True)
        self.center = boolean("center", center)
        self.scale = boolean("scale", scale)

    def build(self, input_shape):
        rank = len(input_shape)
        if self.axis not in (-1, rank - 1):
            raise ValueError(f"axis: expected -1 or {rank - 1} (microcnn normalises the last, channel axis), "
                             f"got {self.axis}")
        channels = input_shape[-1]
        if self.scale:
            self.add_weight("gamma", (channels,), np.ones)
        if self.center:
            self.add_weight("beta", (channels,), np.zeros)
        self.add_weight("moving_mean", (channels,), np.zeros, trainable=False)
        self.add_weight("moving_variance", (channels,), np.ones, trainable=False)
        # Stand-ins for an absent gamma/beta, so every path runs the same kernels.
        self._ones = np.ones(channels, np.float32)
        self._zeros = np.zeros(channels, np.float32)

    def compute_output_shape(self, input_shape):
        if len(input_shape) < 2:
            raise ValueError(f"BatchNormalization: expected an input of rank >= 2, got shape {input_shape}")
        return tuple(input_shape)

    @property
    def _gamma(self):
        return self._weights["gamma"] if self.scale else self._ones

    @property
    def _beta(self):
        return self._weights["beta"] if self.center else self._zeros

    def forward(self, x, training=False, record=None):
        w = self._weights
        if not (training and self.trainable):
            y = _core.batchnorm_forward_infer(x, self._gamma, self._beta, w["moving_mean"], w["moving_variance"],
                                              self.epsilon)
            self._cache = ("infer", None, None, None) if recording(training, record) else None
            return y
        y, mean, var = _core.batchnorm_forward_train(x, self._gamma, self._beta, self.epsilon)
        m = np.float32(self.momentum)
        w["moving_mean"][...] = w["moving_mean"] * m + mean * (np.float32(1) - m)
        w["moving_variance"][...] = w["moving_variance"] * m + var * (np.float32(1) - m)
        self._cache = ("train", x, mean, var)
        return y

    def backward(self, dy, need_dx=True):
        if self._cache is None:
            raise RuntimeError(f"layer {self.name!r}: backward called without a training forward pass")
        mode, x, mean, var = self._cache
        self._cache = None
        if mode == "infer":
            # Frozen: an affine map per channel, gamma / sqrt(moving_variance + epsilon).
            inv = 1.0 / np.sqrt(self._weights["moving_variance"].astype(np.float64) + self.epsilon)
            return (dy * (self._gamma * inv).astype(np.float32)) if need_dx else None
        dx, dgamma, dbeta = _core.batchnorm_backward(dy, x, self._gamma, mean, var, self.epsilon)
        if self.scale:
            self.grads["gamma"] = dgamma
        if self.center:
            self.grads["beta"] = dbeta
        return dx if need_dx else None

    def get_config(self):
        config = super().get_config()
        config.update(axis=self.axis, momentum=self.momentum, epsilon=self.epsilon, center=self.center,
                      scale=self.scale)
        return config


@register
class GlobalAveragePooling2D(Layer):
    """(N, H, W, C) -> (N, C), or (N, 1, 1, C) with keepdims: the mean over the spatial axes."""

    def __init__(self, data_format=None, keepdims=False, **kwargs):
        super().__init__(**kwargs)
        if data_format not in (None, "channels_last"):
            raise ValueError(f"data_format: expected None or 'channels_last' (microcnn is NHWC), got {data_format!r}")
        self.data_format = "channels_last"
        self.keepdims = boolean("keepdims", keepdims)

    def compute_output_shape(self, input_shape):
        if len(input_shape) != 4:
            raise ValueError(f"GlobalAveragePooling2D: expected an input of rank 4 (batch, H, W, C), "
                             f"got shape {input_shape}")
        n, _, _, c = input_shape
        return (n, 1, 1, c) if self.keepdims else (n, c)

    def forward(self, x, training=False, record=None):
        y = _core.global_avgpool_forward(x)
        self._cache = x.shape if recording(training, record) else None
        return y.reshape(x.shape[0], 1, 1, -1) if self.keepdims else y

    def backward(self, dy, need_dx=True):
        if self._cache is None:
            raise RuntimeError(f"layer {self.name!r}: backward called without a training forward pass")
        x_shape, self._cache = self._cache, None
        if not need_dx:
            return None
        dy = np.ascontiguousarray(dy.reshape(x_shape[0], x_shape[3]))
        return _core.global_avgpool_backward(dy, tuple(x_shape))

    def get_config(self):
        config = super().get_config()
        config.update(data_format=self.data_format, keepdims=self.keepdims)
        return config
