"""Does the data path keep up? Images/s of a fit() epoch fed by FolderDataset batches (shuffle, uint8->float,
C++ augmentation) against bare train_on_batch steps on ready float32 batches, same model and batch size.

    python benchmarks/data_path.py [DATASET] [--image-size 150] [--batch-size 32] [--repeats 3]
                                   [--augment seed|microscopy|none]
"""

import argparse
import time

import numpy as np

import microcnn
from microcnn.augment_presets import PRESETS, Augmentation
from microcnn.cli._training import build_compiled_model
from microcnn.data import FolderDataset


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("dataset", nargs="?", default="dataset")
    p.add_argument("--image-size", type=int, default=150)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--color", default="auto")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--augment", choices=list(PRESETS), default="seed", help="augmentation preset (default seed)")
    args = p.parse_args()
    microcnn.set_seed(0)
    ds = FolderDataset(args.dataset, image_size=args.image_size, color=args.color)
    model = build_compiled_model("seed", ds.input_shape, ds.num_classes, 0.0004)
    train = ds.batches("train", args.batch_size, augmenter=Augmentation(args.augment, seed=0), seed=0)
    ready = [(xb.copy(), yb.copy()) for xb, yb in train]  # the same batches, prepared in advance
    n = len(ds.x_train)
    model.train_on_batch(*ready[0])  # warm-up
    data_only, bare, epoch = [], [], []
    for _ in range(args.repeats):
        t = time.perf_counter()
        for _batch in train:
            pass
        data_only.append(time.perf_counter() - t)
        t = time.perf_counter()
        for xb, yb in ready:
            model.train_on_batch(xb, yb)
        bare.append(time.perf_counter() - t)
        t = time.perf_counter()
        model.fit(train, epochs=1, verbose=0)
        epoch.append(time.perf_counter() - t)
    b, e, d = min(bare), min(epoch), min(data_only)
    print(f"{n} images {ds.input_shape}, batch {args.batch_size}, {microcnn._core.get_num_threads()} threads, "
          f"{args.augment} augmentation, best of {args.repeats}")
    print(f"data path alone (shuffle, gather, scale, augment): {n / d:8.1f} images/s  ({d:.3f} s)")
    print(f"bare train_on_batch steps:                         {n / b:8.1f} images/s  ({b:.3f} s)")
    print(f"fit() epoch fed by the data path:                  {n / e:8.1f} images/s  ({e:.3f} s)")
    print(f"epoch / bare throughput: {100 * b / e:.1f} %")
    return np.float64(b / e)


if __name__ == "__main__":
    main()
