"""Start-up time and peak memory of training through the image cache against decoding into memory.

    python benchmarks/cache_memory.py DIR40K [--small 10000] [--work /tmp/cache-bench]

DIR40K: a dataset from benchmarks/png_dataset.py. A 10,000-image dataset is made from its first files
(hard links). For each dataset and mode a fresh process reads the dataset as microcnn-train does
(FolderDataset), then trains one epoch over every training image, with the CLI's batches and augmentation,
of a deliberately small network (the seed net would add a constant ~50 MB of weights and Adam state and take
minutes per epoch here) and reports its start-up time and peak resident memory (ru_maxrss).
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path


def child(dataset, cache):
    import microcnn
    from microcnn import layers
    from microcnn.augment import ImageAugmenter
    from microcnn.data import FolderDataset

    microcnn.set_seed(0)
    t0 = time.perf_counter()
    ds = FolderDataset(dataset, image_size=64, seed=0, cache=cache)
    startup = time.perf_counter() - t0
    model = microcnn.Sequential([layers.Input(ds.input_shape), layers.Conv2D(8, (3, 3), strides=(2, 2)),
                                 layers.MaxPooling2D(), layers.Flatten(),
                                 layers.Dense(ds.num_classes, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    t0 = time.perf_counter()
    model.fit(ds.batches("train", 32, augmenter=ImageAugmenter(seed=0), seed=0), epochs=1,
              validation_data=ds.batches("validation", 32), verbose=0)
    print(json.dumps({"images": len(ds.x_train) + len(ds.x_val), "startup_s": startup,
                      "decoded": ds.cache.decoded if ds.cache is not None else len(ds.x_train) + len(ds.x_val),
                      "epoch_s": time.perf_counter() - t0,
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def subset(big, small, count):
    """Hard links to the first `count` training files of `big` (and a tenth as many validation files)."""
    for split, n in (("train", count), ("validation", count // 10)):
        files = sorted((Path(big) / split).rglob("*.png"), key=lambda p: int(p.stem))[:n]
        for f in files:
            target = Path(small) / split / f.parent.name / f.name
            target.parent.mkdir(parents=True, exist_ok=True)
            if not target.exists():
                os.link(f, target)


def run(dataset, cache):
    args = [sys.executable, __file__, "--child", str(dataset)] + (["--cache", str(cache)] if cache else [])
    out = subprocess.run(args, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("dataset")
    p.add_argument("--small", type=int, default=10000)
    p.add_argument("--work", default="/tmp/cache-bench")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--cache", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return child(args.dataset, args.cache)
    work = Path(args.work)
    small = work / f"png{args.small}"
    subset(args.dataset, small, args.small)
    print("| images | mode | start-up (s) | images decoded | epoch (s) | peak RSS (MB) |")
    print("|---|---|---|---|---|---|")
    for dataset, name in ((small, f"{args.small}"), (Path(args.dataset), "big")):
        cache = work / f"cache-{name}"
        for mode, c in (("in memory (--no-cache)", None), ("cache, first run", cache),
                        ("cache, second run", cache)):
            r = run(dataset, c)
            print(f"| {r['images']} | {mode} | {r['startup_s']:.1f} | {r['decoded']} | {r['epoch_s']:.1f} | "
                  f"{r['peak_rss_mb']:.0f} |", flush=True)


if __name__ == "__main__":
    main()
