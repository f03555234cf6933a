"""Fashion-MNIST accuracy and training speed of a microcnn preset.

Trains on the 60,000 training images (28x28x1, scaled to [0, 1]) and reports the accuracy on the 10,000 test
images, the training wall time and the training throughput. The IDX files come from the Debian package
dataset-fashion-mnist (/usr/share/datasets/fashion-mnist) or --data-dir.

    python benchmarks/fashion_mnist.py --arch small --epochs 8 --augment
    python benchmarks/fashion_mnist.py --arch seed --epochs 10
"""

import gzip
import math
import os

import numpy as np

DEFAULT_DIR = "/usr/share/datasets/fashion-mnist"
FILES = {
    "x_train": "train-images-idx3-ubyte.gz",
    "y_train": "train-labels-idx1-ubyte.gz",
    "x_test": "t10k-images-idx3-ubyte.gz",
    "y_test": "t10k-labels-idx1-ubyte.gz",
}


def read_idx(path):
    """An IDX file (optionally gzip-compressed) of unsigned bytes -> numpy uint8 array of its shape."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise ValueError(f"{path}: not an IDX file of unsigned bytes")
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    offset = 4 + 4 * ndim
    if len(data) - offset != math.prod(dims):
        raise ValueError(f"{path}: expected {math.prod(dims)} values for shape {dims}, got {len(data) - offset}")
    return np.frombuffer(data, np.uint8, offset=offset).reshape(dims)


def load_fashion_mnist(directory=DEFAULT_DIR):
    """-> (x_train (60000,28,28,1) float32 in [0,1], y_train int32, x_test, y_test)."""
    arrays = {key: read_idx(os.path.join(directory, name)) for key, name in FILES.items()}
    scale = np.float32(1.0 / 255.0)
    x_train = (arrays["x_train"].astype(np.float32) * scale)[..., None]
    x_test = (arrays["x_test"].astype(np.float32) * scale)[..., None]
    return x_train, arrays["y_train"].astype(np.int32), x_test, arrays["y_test"].astype(np.int32)
