"""Augmentation presets run entirely in C++ (`microcnn._core.augment_batch`), one random stream per sample.

    seed        the seed network's Keras ImageDataGenerator settings: shear 0.2 degrees, zoom 0.8-1.2 (x and
                y independently), horizontal flip, fill "nearest" (see microcnn/augment.py for their meaning)
    microscopy  images with no "up" and varying intensity: one of the 8 flips/rotations by 90 degrees (the
                dihedral group; the 4 flips when the image is not square), a free rotation of up to 10
                degrees with reflected edges, gamma exp(+-0.2), contrast x(1 +- 0.2) about each channel's mean,
                brightness +-0.1, a Gaussian blur of sigma up to 0.8 pixel and Gaussian noise of standard
                deviation up to 0.03 (drawn per image; blur, gamma and noise each touch half of the images)
    none        no augmentation

Sample i of epoch e draws from a stream keyed by (seed, e, i), i its index in the dataset: the result does
not depend on batch composition, thread count or the number of processes, and a resumed run needs only the
epoch number. The exact rules (order, distributions) are in cpp/include/microcnn/augment.hpp.
"""

import numpy as np

from . import _core

PRESETS = {
    "seed": {"shear": 0.2, "zoom": (0.8, 1.2), "horizontal_flip": True, "fill_mode": "nearest"},
    "microscopy": {"dihedral": True, "rotation": 10.0, "fill_mode": "reflect", "gamma": 0.2, "contrast": 0.2,
                   "brightness": 0.1, "blur": 0.8, "noise": 0.03},
    "none": {},
}
# The tunable settings (besides the preset) and their defaults when the preset does not set them.
SETTINGS = {"horizontal_flip": False, "vertical_flip": False, "dihedral": False, "rotation": 0.0, "shear": 0.0,
            "zoom": (1.0, 1.0), "fill_mode": "nearest", "cval": 0.0, "blur": 0.0, "gamma": 0.0,
            "contrast": 0.0, "brightness": 0.0, "noise": 0.0}
_MAX_SEED = 2**64


class Augmentation:
    """A preset plus overrides, applied to float32 NHWC batches in C++.

    `Augmentation("microscopy", seed=1, rotation=20)`; call as `aug(x, indices=idx, epoch=e)` with the
    samples' dataset indices, or `aug(x)` to number samples consecutively across calls (reproducible for a
    given seed and call sequence). Invalid settings raise ValueError/TypeError naming the setting.
    """

    def __init__(self, preset="microscopy", seed=0, **overrides):
        if preset not in PRESETS:
            raise ValueError(f"preset: expected one of {', '.join(PRESETS)}, got {preset!r}")
        unknown = sorted(set(overrides) - set(SETTINGS))
        if unknown:
            raise ValueError(f"{unknown[0]}: not an augmentation setting (expected one of {', '.join(SETTINGS)})")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < _MAX_SEED:
            raise ValueError(f"seed: expected an integer in [0, 2**64), got {seed!r}")
        self.preset = preset
        self.seed = int(seed)
        config = {**SETTINGS, **PRESETS[preset], **{k: v for k, v in overrides.items() if v is not None}}
        config["zoom"] = tuple(float(z) for z in config["zoom"])
        self.config = config
        _core.augment_params(0, 0, np.zeros(1, np.int64), 4, 4, self._core_config())  # validates every value
        self._next_index = 0

    def _core_config(self):
        return {k: (list(v) if k == "zoom" else v) for k, v in self.config.items()}

    @property
    def is_identity(self):
        c = self.config
        return not (c["horizontal_flip"] or c["vertical_flip"] or c["dihedral"]) and c["zoom"] == (1.0, 1.0) \
            and all(c[k] == 0 for k in ("rotation", "shear", "blur", "gamma", "contrast", "brightness", "noise"))

    def get_config(self):
        return {"preset": self.preset, "seed": self.seed, **{k: (list(v) if k == "zoom" else v)
                                                             for k, v in self.config.items()}}

    def describe(self):
        """A few words for the training log."""
        if self.is_identity:
            return "no augmentation"
        c = self.config
        parts = ["8 flips/rotations" if c["dihedral"] else None,
                 "horizontal flip" if c["horizontal_flip"] else None, "vertical flip" if c["vertical_flip"] else None,
                 f"rotation +-{c['rotation']:g} deg" if c["rotation"] else None,
                 f"shear {c['shear']:g} deg" if c["shear"] else None,
                 f"zoom {c['zoom'][0]:g}-{c['zoom'][1]:g}" if c["zoom"] != (1.0, 1.0) else None,
                 f"blur <= {c['blur']:g}" if c["blur"] else None, f"gamma {c['gamma']:g}" if c["gamma"] else None,
                 f"contrast {c['contrast']:g}" if c["contrast"] else None,
                 f"brightness {c['brightness']:g}" if c["brightness"] else None,
                 f"noise <= {c['noise']:g}" if c["noise"] else None]
        return f"{self.preset} augmentation (" + ", ".join(p for p in parts if p) + ")"

    def _indices(self, n, indices):
        if indices is None:
            indices = np.arange(self._next_index, self._next_index + n, dtype=np.int64)
            self._next_index += n
        indices = np.ascontiguousarray(indices, dtype=np.int64)
        if indices.shape != (n,):
            raise ValueError(f"indices: expected {n} sample indices (one per image), got shape {indices.shape}")
        return indices

    def params(self, n, height, width, indices=None, epoch=0):
        """(params (n, 12) float64, matrices (n, 2, 3) float32): the draws the next call would make."""
        if indices is None:  # the numbers the next call without indices would use; the counter is not advanced
            idx = np.arange(self._next_index, self._next_index + n, dtype=np.int64)
        else:
            idx = self._indices(n, indices)
        return _core.augment_params(self.seed, int(epoch), idx, height, width, self._core_config())

    def __call__(self, x, indices=None, epoch=0):
        """x (N, H, W, C) float32 -> an augmented copy; sample n draws from (seed, epoch, indices[n])."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        if x.ndim != 4:
            raise ValueError(f"x: expected an (N, H, W, C) batch, got shape {x.shape}")
        idx = self._indices(x.shape[0], indices)
        if self.is_identity:
            return x.copy()
        return _core.augment_batch(x, self.seed, int(epoch), idx, self._core_config())

    # Checkpointing: the streams are keyed by (seed, epoch, index); only the call counter is state.
    def get_state(self):
        return {"next_index": self._next_index}

    def set_state(self, state):
        self._next_index = int(state.get("next_index", 0)) if isinstance(state, dict) else 0
