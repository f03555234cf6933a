"""Grad-CAM (Selvaraju et al., 2017): which part of an image drove the predicted class.

For a convolution's output A (N, h, w, K) -- the last convolution's by default -- and the score y_c of the
class c (the logit before the softmax):
    alpha_k = mean over (h, w) of d y_c / d A_k        (one weight per channel)
    cam     = ReLU(sum_k alpha_k * A_k)                (h, w), then bilinear to the model's input size
(or, method="hirescam", cam = ReLU(sum_k A_k * d y_c / d A_k) place by place: see grad_cam), and divided
by its maximum, so 1 marks the strongest evidence for c and 0 none (all zeros when nothing in the image speaks
for c). d y_c / d A comes from the layers' own backward kernels run in inference mode (dropout
off, batch normalisation with its moving statistics): no framework, no finite differences.
"""

from pathlib import Path

import numpy as np
from PIL import Image

from . import _atomic
from .layers.conv import Conv2D
from .layers.core import Activation
from .layers.normalization import BatchNormalization

_ELEMENTWISE = (BatchNormalization, Activation)  # ReLU and Softmax layers are Activation subclasses

METHODS = ("gradcam", "hirescam")
DISPLAY_SIDE = 224  # overlays of smaller inputs are enlarged to at least this many pixels per side


def last_conv_index(model, layer=None):
    """Index of `layer` (a name or index) or, by default, of the model's last Conv2D -- or of the batch
    normalisation / activation layers right after it (a Conv2D, BatchNormalization, ReLU block), so the map is
    the rectified one, as for a Conv2D with activation="relu"."""
    layers = model.layers
    if layer is None:
        found = [i for i, item in enumerate(layers) if isinstance(item, Conv2D)]
        if not found:
            raise ValueError("grad_cam: the model has no Conv2D layer; pass layer= a layer with a 4-D output")
        index = found[-1]
        while index + 1 < len(layers) and isinstance(layers[index + 1], _ELEMENTWISE) \
                and len(layers[index + 1].output_shape) == 4:
            index += 1
        return index
    if isinstance(layer, int):
        index = layer
    else:
        index = next((i for i, item in enumerate(layers) if item.name == layer), None)
    if index is None or not -len(layers) <= index < len(layers):
        raise ValueError(f"layer: expected a layer name or index of this model, got {layer!r}; layers are "
                         f"{[item.name for item in layers]}")
    index %= len(layers)
    if len(layers[index].output_shape) != 4:
        raise ValueError(f"layer: expected a layer with a 4-D (batch, height, width, channels) output, got "
                         f"{layers[index].name!r} with output shape {layers[index].output_shape}")
    return index


def grad_cam(model, x, class_index=None, layer=None, batch_size=32, method="gradcam"):
    """Grad-CAM heatmaps for a batch x (N, H, W, C) float32 as the model takes it.

    class_index: None (the predicted class of each image), an int, or one int per image.
    method: "gradcam" (channel weights = the gradient averaged over the map) or "hirescam" (the gradient times
    the map element by element, summed over channels: Draelos & Carin, 2020). With a Flatten + Dense head the
    gradient differs from place to place and its average can be negative for every channel that fires, so
    Grad-CAM shows nothing (the seed network on the bundled dataset: 59 of 61 "trouser" maps empty);
    HiResCAM keeps where the evidence is.
    Returns (heatmaps float32 (N, H, W) in [0, 1], classes int (N,), probabilities float32 (N, classes))."""
    if method not in METHODS:
        raise ValueError(f"method: expected one of {', '.join(METHODS)}, got {method!r}")
    from ._gradcam import feature_map_and_gradient

    model._require_built("grad_cam")
    x = model._prepare_x(x)
    index = last_conv_index(model, layer)
    heatmaps, classes, probabilities = [], [], []
    for start in range(0, len(x), batch_size):
        xb = x[start:start + batch_size]
        chosen = None if class_index is None else np.broadcast_to(np.asarray(class_index), (len(x),))[
            start:start + batch_size]
        feature, gradient, cls, probs = feature_map_and_gradient(model, xb, index, chosen)
        feature = feature.astype(np.float64)
        if method == "gradcam":
            cam = np.einsum("nhwk,nk->nhw", feature, gradient.mean(axis=(1, 2), dtype=np.float64))
        else:
            cam = np.einsum("nhwk,nhwk->nhw", feature, gradient)
        cam = np.maximum(cam, 0.0)
        heatmaps.append(np.stack([_resize(c, x.shape[1:3]) for c in cam]))
        classes.append(cls)
        probabilities.append(probs)
    return np.concatenate(heatmaps), np.concatenate(classes), np.concatenate(probabilities)


def _resize(cam, size):
    """(h, w) float -> (H, W) float32, bilinear, then divided by its maximum (0 stays 0)."""
    height, width = size
    image = Image.fromarray(np.ascontiguousarray(cam, np.float32), mode="F")
    out = np.asarray(image.resize((width, height), Image.BILINEAR), np.float32)
    out = np.maximum(out, 0.0)
    peak = float(out.max())
    return out / peak if peak > 0 else out


def colorize(heatmap):
    """(H, W) in [0, 1] -> (H, W, 3) float in [0, 1], the "jet" colour scale (blue = 0, red = 1)."""
    v = np.clip(heatmap, 0, 1)[..., None]
    centres = np.array([3.0, 2.0, 1.0], np.float32)  # red, green, blue
    return np.clip(1.5 - np.abs(4.0 * v - centres), 0, 1)


def overlay(image, heatmap, alpha=0.45):
    """The model-input image (H, W, 1 or 3, values ~[0, 1]) with the heatmap over it, as uint8 RGB, enlarged
    (nearest neighbour for the image, bilinear for the heatmap) so the shorter side is >= DISPLAY_SIDE."""
    image = np.clip(np.asarray(image, np.float32), 0, 1)
    if image.shape[-1] == 1:
        image = np.repeat(image, 3, axis=-1)
    height, width = heatmap.shape
    scale = max(1, -(-DISPLAY_SIDE // min(height, width)))
    if scale > 1:
        image = image.repeat(scale, axis=0).repeat(scale, axis=1)
        heat = Image.fromarray(np.ascontiguousarray(heatmap, np.float32), mode="F")
        heatmap = np.asarray(heat.resize((width * scale, height * scale), Image.BILINEAR), np.float32)
    blended = (1 - alpha) * image + alpha * colorize(heatmap)
    return (np.clip(blended, 0, 1) * 255 + 0.5).astype(np.uint8)


def save_explanation(directory, name, image, heatmap):
    """DIR/<name>.png (overlay) and DIR/<name>.npy (float32 heatmap at the model's input size), each written
    to a temporary file and renamed into place."""
    directory = Path(directory)
    png, npy = directory / f"{name}.png", directory / f"{name}.npy"
    with _atomic.replacing(png, ".png") as tmp:
        Image.fromarray(overlay(image, heatmap)).save(tmp, format="PNG")
    with _atomic.replacing(npy, ".npy") as tmp:
        np.save(tmp, np.asarray(heatmap, np.float32))
    return png, npy


class ExplanationWriter:
    """`microcnn-predict --explain DIR`: per image, DIR/<name>.png and DIR/<name>.npy, <name> being the
    image's file name without its extension, made unique over the run with _2, _3, ... (a.png and a.tif,
    x/a.png and y/a.png)."""

    def __init__(self, directory, model, method="gradcam"):
        self.directory = Path(directory)
        if self.directory.exists() and not self.directory.is_dir():
            raise ValueError(f"--explain {directory}: exists and is not a directory")
        self.directory.mkdir(parents=True, exist_ok=True)
        self.model, self.method = model, method
        self._seen = set()
        self.empty = []  # paths whose heatmap is all zero (no positive evidence for the class)

    def _name(self, path):
        stem = Path(path).stem or "image"
        name, n = stem, 1
        while name.lower() in self._seen:
            n += 1
            name = f"{stem}_{n}"
        self._seen.add(name.lower())
        return name

    def write(self, x, paths, classes):
        """x: the batch as predicted; classes: the predicted class of each image (the one explained)."""
        heatmaps, _, _ = grad_cam(self.model, x, class_index=np.asarray(classes), method=self.method)
        self.empty += [p for p, heatmap in zip(paths, heatmaps) if not heatmap.any()]
        return [save_explanation(self.directory, self._name(p), image, heatmap)
                for p, image, heatmap in zip(paths, x, heatmaps)]
