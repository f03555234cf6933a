"""Keras-shaped layers. New layer types subclass `Layer` and are decorated with `@register` so that
`Layer.from_config`-style deserialisation and `microcnn.load_model` know them."""

from .base import Layer, clear_session, deserialize, get_layer_class, register, serialize
from .conv import Conv2D, MaxPool2D, MaxPooling2D
from .core import Activation, Dense, Dropout, Flatten, Input, InputLayer, ReLU, Softmax
from .normalization import BatchNormalization, GlobalAveragePooling2D

__all__ = [
    "Activation", "BatchNormalization", "Conv2D", "Dense", "Dropout", "Flatten", "GlobalAveragePooling2D",
    "Input", "InputLayer", "Layer", "MaxPool2D", "MaxPooling2D", "ReLU", "Softmax", "clear_session",
    "deserialize", "get_layer_class", "register", "serialize",
]
