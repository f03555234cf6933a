"""The gradient Grad-CAM needs: a layer's output A and d(class score)/dA, from the execution plan (plan.py)
run in inference mode (dropout off, batch normalisation on its moving statistics) with the head's steps
recording what their backward kernels need."""

import numpy as np

from .layers._activations import softmax


def feature_map_and_gradient(model, x, index, classes=None):
    """For the output A of layer `index`: (A (N, h, w, K), d y_c / d A, c (N,), softmax probabilities), with
    y_c the class score (the last layer's output before a final softmax) of class c: `classes` when given,
    else the predicted class of each image."""
    layer = model.layers[index]
    plan = model.execution_plan(split_after=layer)  # A stays a step boundary (not fused with a pooling)
    boundary = plan.index(layer) + 1
    try:
        feature = plan.forward(x, training=False, stop=boundary)
        scores = plan.forward(feature, training=False, logits=True, start=boundary, record=True)
        if scores.ndim != 2:
            raise ValueError(f"grad_cam: expected the model to end in class scores (batch, classes), got "
                             f"shape {scores.shape}")
        probabilities = softmax(scores) if model.layers[-1].ends_in_softmax else scores
        chosen = np.argmax(probabilities, axis=1) if classes is None else np.asarray(classes, np.int64)
        if chosen.min() < 0 or chosen.max() >= scores.shape[1]:
            raise ValueError(f"class_index: expected class indices in [0, {scores.shape[1]}), got "
                             f"{sorted(set(chosen.tolist()))}")
        dscores = np.zeros_like(scores)
        dscores[np.arange(len(scores)), chosen] = 1.0
        gradient, _ = plan.backward(dscores, start=boundary, need_dx=True)
    finally:
        plan.clear()
    return feature, np.asarray(gradient, np.float32), chosen, np.asarray(probabilities, np.float32)
