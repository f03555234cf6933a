"""Test-time augmentation: average a model's outputs over the dihedral group of each image.

Microscope images have no "up": the 8 flips and rotations by 90 degrees of a square image (the 4 flips and
the rotation by 180 degrees of a non-square one, which keep its shape) show the same specimen. Averaging
the predicted probabilities over them makes the prediction exactly invariant to those transforms (up to
float rounding) and usually a little more accurate. Costs 8 (or 4) forward passes.
"""

import numpy as np


def dihedral_views(x):
    """x (N, H, W, C) -> the list of its 8 dihedral transforms (4 when H != W), the identity first."""
    x = np.asarray(x)
    if x.ndim != 4:
        raise ValueError(f"x: expected an (N, H, W, C) batch for test-time augmentation, got shape {x.shape}")
    views = [x, x[:, :, ::-1], x[:, ::-1], x[:, ::-1, ::-1]]
    if x.shape[1] == x.shape[2]:
        t = x.transpose(0, 2, 1, 3)
        views += [t, t[:, :, ::-1], t[:, ::-1], t[:, ::-1, ::-1]]
    return [np.ascontiguousarray(v, dtype=np.float32) for v in views]


def predict_tta(model, x, batch_size=32, verbose=0):
    """The mean of model.predict over dihedral_views(x): (N, outputs)."""
    if not isinstance(x, np.ndarray):
        raise TypeError(f"x: test-time augmentation needs an (N, H, W, C) numpy array, got {type(x).__name__}")
    views = dihedral_views(x)
    total = None
    for view in views:
        out = model.predict(view, batch_size=batch_size, verbose=verbose)
        total = out.astype(np.float64) if total is None else total + out
    return (total / len(views)).astype(np.float32)
