"""Write a folder of PNGs from Fashion-MNIST for the cache and MPI measurements: N training images (and N/10
validation images) as RGB PNGs of SIZE x SIZE, each image tinted a random colour (so colour tells nothing
about the class), in DIR/train/<class>/ and DIR/validation/<class>/.

    python benchmarks/png_dataset.py DIR --count 40000 [--size 64]
"""

import argparse
from pathlib import Path

import numpy as np
from fashion_mnist import DEFAULT_DIR, FILES, read_idx
from PIL import Image

CLASSES = ["tshirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "boot"]


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out")
    p.add_argument("--count", type=int, default=40000)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--fashion-mnist", default=DEFAULT_DIR)
    args = p.parse_args()
    data = {key: read_idx(str(Path(args.fashion_mnist) / name)) for key, name in FILES.items()}
    x = np.concatenate([data["x_train"], data["x_test"]])  # uint8 (70000, 28, 28)
    y = np.concatenate([data["y_train"], data["y_test"]])
    tint = np.random.default_rng(0).uniform(0.4, 1.0, (len(x), 3))
    n_val = args.count // 10
    for split, rows in (("train", range(args.count)), ("validation", range(args.count, args.count + n_val))):
        for i in rows:
            j = i % len(x)
            rgb = (x[j][:, :, None] * tint[j]).astype(np.uint8)
            folder = Path(args.out) / split / CLASSES[y[j]]
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rgb).resize((args.size, args.size), Image.Resampling.BILINEAR).save(folder / f"{i}.png")
    print(f"wrote {args.count} + {n_val} PNGs of {args.size}x{args.size} to {args.out}")


if __name__ == "__main__":
    main()
