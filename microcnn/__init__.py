"""microcnn: small, fast convolutional networks for folders of labelled images."""

import os as _os
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _version

# OpenMP threads that finish a kernel early sleep instead of spinning (libgomp reads this when _core loads
# it). On a machine whose cores are also busy with other work, spinning threads took the CPU time the
# still-working thread needed: a 2-thread training step ran twice as slow as a 1-thread one. An explicit
# OMP_WAIT_POLICY in the environment wins.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from . import _core, callbacks, initializers, layers, losses, optimizers
from ._seeding import set_seed
from .augment import ImageAugmenter
from .augment_presets import Augmentation
from .data import BatchIterator, FolderDataset, preprocess_for_prediction
from .io import load_model
from .model import Sequential
from .presets import available_presets, build_model

try:
    __version__ = _version("microcnn")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = getattr(_core, "__version__", "0+unknown")

__all__ = ["Sequential", "__version__", "callbacks", "initializers", "layers", "load_model", "losses",
           "optimizers", "set_seed"]
__all__ += ["Augmentation", "BatchIterator", "FolderDataset", "ImageAugmenter", "available_presets", "build_model",
            "preprocess_for_prediction"]
