"""Writes the bundled sample dataset: three Fashion-MNIST classes as 28x28 grayscale PNGs.

    python scripts/make_dataset.py [--source /usr/share/datasets/fashion-mnist] [--out dataset]

Reads the IDX files of Fashion-MNIST (Zalando Research, MIT licence; Debian package dataset-fashion-mnist)
and writes dataset/train/<class>/*.png (the first 120 images of each class in the training file) and
dataset/validation/<class>/*.png (the first 60 of each class in the test file). Deterministic: the same
files in, the same PNGs out.
"""

import argparse
import gzip
import struct
import sys
from pathlib import Path

import numpy as np
from PIL import Image

# Fashion-MNIST label -> folder name; three classes that are easy to tell apart by eye.
CLASSES = {1: "trouser", 8: "bag", 9: "ankle_boot"}
PER_CLASS = {"train": 120, "validation": 60}
SOURCE_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
                "validation": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


def read_idx(path):
    """An IDX file (optionally .gz) -> numpy array of its declared shape (uint8 data only)."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as f:
        zero, dtype_code, ndim = struct.unpack(">HBB", f.read(4))
        if zero != 0 or dtype_code != 0x08:
            raise ValueError(f"{path}: not an unsigned-byte IDX file")
        shape = struct.unpack(">" + "I" * ndim, f.read(4 * ndim))
        data = np.frombuffer(f.read(), np.uint8)
    return data.reshape(shape)


def find(source, stem):
    for name in (stem, stem + ".gz"):
        if (source / name).exists():
            return source / name
    raise FileNotFoundError(f"{source}: no {stem} or {stem}.gz")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=Path("/usr/share/datasets/fashion-mnist"))
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "dataset")
    args = parser.parse_args(argv)
    for split, (images_stem, labels_stem) in SOURCE_FILES.items():
        images = read_idx(find(args.source, images_stem))
        labels = read_idx(find(args.source, labels_stem))
        for label, name in CLASSES.items():
            folder = args.out / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for old in folder.glob("*.png"):
                old.unlink()
            index = np.flatnonzero(labels == label)[: PER_CLASS[split]]
            for i in index:
                Image.fromarray(images[i]).save(folder / f"{name}_{i:05d}.png", optimize=True)
            print(f"{split}/{name}: {len(index)} images")
    return 0


if __name__ == "__main__":
    sys.exit(main())
