"""Does the data path keep up? Images/s of a fit() epoch fed by FolderDataset batches (shuffle, uint8->float,
C++ augmentation) against bare train_on_batch steps on ready float32 batches, same model and batch size.

    python benchmarks/data_path.py [DATASET] [--image-size 150] [--batch-size 32] [--repeats 3]
                                   [--augment seed|microscopy|none|seed,microscopy,...]
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
    p.add_argument("--augment", default="seed",
                   help="augmentation preset, or several separated by commas, timed in turn within each repeat so "
                        "that a change of machine load hits them alike (default seed)")
    args = p.parse_args()
    presets = args.augment.split(",")
    for preset in presets:
        if preset not in PRESETS:
            p.error(f"--augment: expected presets from {', '.join(PRESETS)}, got {preset!r}")
    microcnn.set_seed(0)
    ds = FolderDataset(args.dataset, image_size=args.image_size, color=args.color)
    model = build_compiled_model("seed", ds.input_shape, ds.num_classes, 0.0004)
    trains = {a: ds.batches("train", args.batch_size, augmenter=Augmentation(a, seed=0), seed=0) for a in presets}
    ready = [(xb.copy(), yb.copy()) for xb, yb in trains[presets[0]]]  # the same batches, prepared in advance
    n = len(ds.x_train)
    model.train_on_batch(*ready[0])  # warm-up
    data_only, bare, epoch = {a: [] for a in presets}, [], {a: [] for a in presets}
    for _ in range(args.repeats):
        t = time.perf_counter()
        for xb, yb in ready:
            model.train_on_batch(xb, yb)
        bare.append(time.perf_counter() - t)
        for a, train in trains.items():
            t = time.perf_counter()
            for _batch in train:
                pass
            data_only[a].append(time.perf_counter() - t)
            t = time.perf_counter()
            model.fit(train, epochs=1, verbose=0)
            epoch[a].append(time.perf_counter() - t)
    b = min(bare)
    print(f"{n} images {ds.input_shape}, batch {args.batch_size}, {microcnn._core.get_num_threads()} threads, "
          f"best of {args.repeats}")
    print(f"bare train_on_batch steps:                         {n / b:8.1f} images/s  ({b:.3f} s)")
    for a in presets:
        e, d = min(epoch[a]), min(data_only[a])
        print(f"[{a}] data path alone (shuffle, gather, scale, augment): {n / d:8.1f} images/s  ({d:.3f} s)")
        print(f"[{a}] fit() epoch fed by the data path:                  {n / e:8.1f} images/s  ({e:.3f} s)")
        print(f"[{a}] epoch / bare throughput: {100 * b / e:.1f} %")
    return np.float64(b / min(epoch[presets[0]]))


if __name__ == "__main__":
    main()
