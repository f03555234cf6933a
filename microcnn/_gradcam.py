"""The gradient Grad-CAM needs: a layer's output A and d(class score)/dA, from the layers' backward kernels in
inference mode (see explain.py)."""

import contextlib

import numpy as np

from .layers._activations import softmax
from .layers.core import Dropout
from .layers.normalization import BatchNormalization


@contextlib.contextmanager
def _inference_with_caches(layers):
    """Layers run forward(training=True) to keep what backward needs, but must compute as in inference:
    batch normalisation is switched to its moving statistics (trainable=False does that, and stops it from
    updating them); dropout layers are skipped by the caller."""
    frozen = [layer for layer in layers if isinstance(layer, BatchNormalization) and layer.trainable]
    for layer in frozen:
        layer.trainable = False
    try:
        yield
    finally:
        for layer in frozen:
            layer.trainable = True
        for layer in layers:
            layer.clear_cache()
            layer.grads = {}


def feature_map_and_gradient(model, x, index, classes=None):
    """For the output A of layer `index`: (A (N, h, w, K), d y_c / d A, c (N,), softmax probabilities), with
    y_c the logit of class c: `classes` when given, else the predicted class of each image."""
    layers = model.layers
    a = x
    for layer in layers[:index + 1]:
        a = layer.forward(a, training=False)
    feature = a
    head = [layer for layer in layers[index + 1:] if not isinstance(layer, Dropout)]
    with _inference_with_caches(head):
        h = feature
        for i, layer in enumerate(head):
            if i == len(head) - 1 and layer.ends_in_softmax:
                h = layer.forward(h, training=True, logits=True)
            else:
                h = layer.forward(h, training=True)
        if h.ndim != 2:
            raise ValueError(f"grad_cam: expected the model to end in class scores (batch, classes), got shape "
                             f"{h.shape}")
        probabilities = softmax(h) if head and head[-1].ends_in_softmax else h
        chosen = np.argmax(probabilities, axis=1) if classes is None else np.asarray(classes, np.int64)
        if chosen.min() < 0 or chosen.max() >= h.shape[1]:
            raise ValueError(f"class_index: expected class indices in [0, {h.shape[1]}), got {chosen.tolist()}")
        grad = np.zeros_like(h)
        grad[np.arange(len(h)), chosen] = 1.0
        for layer in reversed(head):
            grad = layer.backward(grad)
    return feature, np.asarray(grad, np.float32), chosen, np.asarray(probabilities, np.float32)
