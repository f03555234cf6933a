"""Augmentation presets compared: none, seed (Keras shear/zoom/horizontal flip) and microscopy (dihedral,
rotation, intensity jitter, blur, noise) on Fashion-MNIST, in two tasks:

- upright:     the usual test set (images in the training orientation);
- rotated:     a rotation-sensitive task: train on upright images, test on the test set with every image
               turned by one of the 8 flips/rotations by 90 degrees (image i gets transform i mod 8),
               as microscope images arrive in any orientation. Also scored with test-time augmentation.

With --task cells, the same on synthetic microscope-like images (32x32, three classes: rods, rods with a
bright spot at one end, round cells with a central spot; random position, size, brightness and noise). The
training cells all lie within 10 degrees of horizontal; the "rotated" test turns each test cell by a free
angle in [0, 360) (and "upright" keeps the training orientations), as cells lie on a slide.

Each preset trains the same architecture from the same initial weights with the same shuffling, on a
subset of the training images (modest runs: the numbers compare presets, they are not the best accuracy).

    python benchmarks/augment_presets.py [--train-size 12000] [--epochs 6] [--arch seed]
    python benchmarks/augment_presets.py --task cells [--train-size 3000] [--epochs 6] [--aug-rotation 45]
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np

import microcnn
from microcnn.augment_presets import Augmentation
from microcnn.data import BatchIterator
from microcnn.optimizers import Adam
from microcnn.presets import build_model
from microcnn.tta import dihedral_views

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fashion_mnist import DEFAULT_DIR, FILES, read_idx


def load(directory, train_size, seed):
    arrays = {k: read_idx(f"{directory}/{name}") for k, name in FILES.items()}
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.permutation(len(arrays["y_train"]))[:train_size])
    x_train = np.ascontiguousarray(arrays["x_train"][pick][..., None])
    x_test = arrays["x_test"][..., None].astype(np.float32) / np.float32(255.0)
    return x_train, arrays["y_train"][pick].astype(np.int32), x_test, arrays["y_test"].astype(np.int32)


def cells(n, seed, any_angle):
    """n synthetic 32x32 cells and labels: 0 rod, 1 rod with a spot at one end, 2 round with a central spot."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n).astype(np.int32)
    r, c = np.mgrid[0:32, 0:32].astype(np.float32) - 15.5
    x = np.empty((n, 32, 32, 1), np.float32)
    for i in range(n):
        theta = rng.uniform(0, 2 * np.pi) if any_angle else np.deg2rad(rng.uniform(-10, 10))
        dr, dc = rng.uniform(-3, 3, 2)
        u = (c - dc) * np.cos(theta) + (r - dr) * np.sin(theta)  # along the cell
        v = -(c - dc) * np.sin(theta) + (r - dr) * np.cos(theta)
        size = rng.uniform(0.85, 1.15)
        a, b = (11 * size, 4 * size) if y[i] < 2 else (6 * size, 6 * size)
        body = 1 / (1 + np.exp(((u / a) ** 2 + (v / b) ** 2 - 1) * 8))
        spot_u = 0.65 * a if y[i] == 1 else 0.0
        spot = np.exp(-((u - spot_u) ** 2 + v ** 2) / 4.0) if y[i] >= 1 else 0.0
        img = rng.uniform(0.5, 0.9) * body + 0.6 * spot + rng.normal(0, 0.05, body.shape)
        x[i, :, :, 0] = img
    return x, y


def load_cells(train_size, seed):
    x_train, y_train = cells(train_size, seed, any_angle=False)
    x_test, y_test = cells(2000, seed + 1, any_angle=False)
    x_rot, _ = cells(2000, seed + 1, any_angle=True)  # the same cells (same draws), at any angle
    return x_train, y_train, x_test, y_test, x_rot


def turned(x):
    """Image i of x under dihedral transform i mod 8."""
    views = dihedral_views(x)
    out = np.empty_like(x)
    for k, view in enumerate(views):
        out[k::8] = view[k::8]
    return out


def accuracy(model, x, y, tta=False):
    return float((np.argmax(model.predict(x, batch_size=256, tta=tta), axis=1) == y).mean())


def run(preset, args, data):
    x_train, y_train, x_test, y_test = data[:4]
    microcnn.set_seed(args.seed)
    model = build_model(args.arch, input_shape=x_train.shape[1:], num_classes=int(y_train.max()) + 1)
    model.compile(optimizer=Adam(learning_rate=args.lr), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    aug = Augmentation(preset, seed=args.seed, rotation=args.aug_rotation if preset != "none" else None)
    train = BatchIterator(x_train, y_train, batch_size=args.batch_size,
                          augmenter=None if aug.is_identity else aug, seed=args.seed)
    t0 = time.perf_counter()
    model.fit(train, epochs=args.epochs, verbose=0)
    seconds = time.perf_counter() - t0
    rotated = data[4] if len(data) > 4 else turned(x_test)
    return {"preset": preset, "upright": accuracy(model, x_test, y_test),
            "rotated": accuracy(model, rotated, y_test), "rotated_tta": accuracy(model, rotated, y_test, tta=True),
            "seconds": seconds}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--task", choices=("fashion", "cells"), default="fashion")
    p.add_argument("--data-dir", default=DEFAULT_DIR)
    p.add_argument("--train-size", type=int, default=None, help="default 12000 (fashion) or 3000 (cells)")
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--arch", default="seed")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=0.001)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--presets", default="none,seed,microscopy")
    p.add_argument("--aug-rotation", type=float, default=None, help="override the presets' free rotation (degrees)")
    args = p.parse_args()
    if args.task == "cells":
        data = load_cells(args.train_size or 3000, args.seed)
    else:
        data = load(args.data_dir, args.train_size or 12000, args.seed)
    print(f"{'Synthetic cells' if args.task == 'cells' else 'Fashion-MNIST'}: {len(data[1])} training images, {len(data[3])} test images, arch {args.arch}, "
          f"{args.epochs} epochs, batch {args.batch_size}, Adam lr {args.lr:g}, seed {args.seed}, "
          f"{microcnn._core.get_num_threads()} threads", flush=True)
    rows = []
    for preset in args.presets.split(","):
        rows.append(run(preset, args, data))
        r = rows[-1]
        print(f"  {preset}: upright {r['upright']:.4f}, rotated {r['rotated']:.4f}, rotated + TTA "
              f"{r['rotated_tta']:.4f} ({r['seconds']:.0f} s)", flush=True)
    print("\n| augmentation | upright test | rotated/mirrored test | rotated/mirrored + --tta | training time |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['preset']} | {r['upright']:.4f} | {r['rotated']:.4f} | {r['rotated_tta']:.4f} | "
              f"{r['seconds']:.0f} s |")


if __name__ == "__main__":
    main()
