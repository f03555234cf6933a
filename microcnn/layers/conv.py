"""Conv2D and MaxPooling2D on NHWC batches (Keras's channels_last)."""

from .. import _core
from .. import initializers as _initializers
from .._validation import MAX_WINDOW, boolean, choice, int_pair, positive_int
from . import _activations
from .base import Layer, format_shape, recording, register

PADDINGS = ("valid", "same")


def _spatial_output(layer, input_shape, window, strides, padding, kind):
    if len(input_shape) != 4:
        raise ValueError(f"layer {layer.name!r} ({kind}): expected input of rank 4 (batch, height, width, "
                         f"channels), got shape {format_shape(input_shape)}")
    try:  # the kernels' own formula (Keras/TF: valid (size - window) // stride + 1, same ceil(size / stride))
        return tuple(_core.conv2d_output_size(input_shape[axis], window[axis - 1], strides[axis - 1], padding)
                     for axis in (1, 2))
    except ValueError:
        raise ValueError(f"layer {layer.name!r} ({kind}): a {window[0]}x{window[1]} window with padding "
                         f"{padding!r} does not fit input shape {format_shape(input_shape)}") from None


@register
class Conv2D(_activations.ActivationMixin, Layer):
    """2-D convolution: x (N,H,W,C), kernel (kh,kw,C,filters) (HWIO, Keras's layout), bias (filters,)."""

    def __init__(self, filters, kernel_size, strides=1, padding="valid", activation=None, use_bias=True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros", data_format=None, **kwargs):
        super().__init__(**kwargs)
        if data_format not in (None, "channels_last"):
            raise ValueError(f"data_format: expected None or 'channels_last' (NHWC), got {data_format!r}")
        self.filters = positive_int("filters", filters)
        self.kernel_size = int_pair("kernel_size", kernel_size, MAX_WINDOW)
        self.strides = int_pair("strides", strides, MAX_WINDOW)
        self.padding = choice("padding", padding, PADDINGS)
        self.activation = _activations.get(activation)
        self.use_bias = boolean("use_bias", use_bias)
        self.kernel_initializer = _initializers.get(kernel_initializer, "kernel_initializer")
        self.bias_initializer = _initializers.get(bias_initializer, "bias_initializer")

    def compute_output_shape(self, input_shape):
        p, q = _spatial_output(self, input_shape, self.kernel_size, self.strides, self.padding, "Conv2D")
        return (input_shape[0], p, q, self.filters)

    def build(self, input_shape):
        self.add_weight("kernel", (*self.kernel_size, input_shape[-1], self.filters), self.kernel_initializer)
        if self.use_bias:
            self.add_weight("bias", (self.filters,), self.bias_initializer)

    def forward(self, x, training=False, logits=False, record=None):
        z = _core.conv2d_forward(x, self._weights["kernel"], self._weights.get("bias"), self.strides[0],
                                 self.strides[1], self.padding, relu=self.activation == "relu")
        y = self._activate(z, logits)
        self._cache = (x, y, logits) if recording(training, record) else None
        return y

    def backward(self, dy, need_dx=True):
        x, y, logits = self._cache
        self._cache = None
        dz = self._activation_backward(dy, y, logits)
        dx, dw, db = _core.conv2d_backward(dz, x, self._weights["kernel"], self.strides[0], self.strides[1],
                                           self.padding, need_dx=need_dx, need_db=self.use_bias)
        self.grads = {"kernel": dw, "bias": db} if self.use_bias else {"kernel": dw}
        return dx

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "kernel_size": list(self.kernel_size),
                "strides": list(self.strides), "padding": self.padding, "data_format": "channels_last",
                "activation": self.activation, "use_bias": self.use_bias,
                "kernel_initializer": _initializers.serialize(self.kernel_initializer),
                "bias_initializer": _initializers.serialize(self.bias_initializer)}


@register
class MaxPooling2D(Layer):
    """Max over pool_size windows; strides default to pool_size. Keeps the argmax for backward."""

    def __init__(self, pool_size=2, strides=None, padding="valid", data_format=None, **kwargs):
        super().__init__(**kwargs)
        if data_format not in (None, "channels_last"):
            raise ValueError(f"data_format: expected None or 'channels_last' (NHWC), got {data_format!r}")
        self.pool_size = int_pair("pool_size", pool_size, MAX_WINDOW)
        self.strides = self.pool_size if strides is None else int_pair("strides", strides, MAX_WINDOW)
        self.padding = choice("padding", padding, PADDINGS)

    def compute_output_shape(self, input_shape):
        p, q = _spatial_output(self, input_shape, self.pool_size, self.strides, self.padding, "MaxPooling2D")
        return (input_shape[0], p, q, input_shape[3])

    def forward(self, x, training=False, record=None):
        y, argmax = _core.maxpool2d_forward(x, self.pool_size[0], self.pool_size[1], self.strides[0],
                                            self.strides[1], self.padding)
        self._cache = (argmax, x.shape) if recording(training, record) else None
        return y

    def backward(self, dy, need_dx=True):
        argmax, x_shape = self._cache
        self._cache = None
        return _core.maxpool2d_backward(dy, argmax, tuple(x_shape)) if need_dx else None

    def get_config(self):
        return {**super().get_config(), "pool_size": list(self.pool_size), "strides": list(self.strides),
                "padding": self.padding, "data_format": "channels_last"}


MaxPool2D = MaxPooling2D
