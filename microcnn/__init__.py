"""microcnn: small, fast convolutional networks for folders of labelled images."""

import os as _os

from ._startup import quiet_interrupt_at_startup as _quiet_interrupt_at_startup

_quiet_interrupt_at_startup()  # first: a Ctrl-C while the command-line tools load is one line, not a traceback

# OpenMP threads that finish a kernel early sleep instead of spinning (libgomp reads this when _core loads
# it). On a machine whose cores are also busy with other work, spinning threads took the CPU time the
# still-working thread needed: a 2-thread training step ran twice as slow as a 1-thread one. An explicit
# OMP_WAIT_POLICY in the environment wins.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

try:
    from . import _core  # noqa: F401  (the compiled kernels: first, so that a missing build says so plainly)
except ImportError as _exc:
    raise ImportError(
        "microcnn's compiled kernels (microcnn._core) are not installed: run `pip install .` in the repository "
        "folder, then use microcnn from anywhere (inside the repository folder Python finds the uncompiled "
        f"sources first unless the install is editable) [{_exc}]") from None
from . import callbacks, class_weights, initializers, layers, losses, optimizers, schedules
from ._seeding import set_seed
from ._version import __version__
from .augment import ImageAugmenter
from .augment_presets import Augmentation
from .batch_iterator import BatchIterator
from .data import FolderDataset, preprocess_for_prediction
from .folders import image_dataset_from_directory
from .keras_import import load_keras_model
from .model import Sequential, load_model
from .presets import available_presets, build_model

__all__ = ["Sequential", "__version__", "callbacks", "class_weights", "initializers", "layers", "load_keras_model",
           "load_model", "losses", "optimizers", "schedules", "set_seed"]
__all__ += ["Augmentation", "BatchIterator", "FolderDataset", "ImageAugmenter", "available_presets", "build_model",
            "image_dataset_from_directory", "preprocess_for_prediction"]
