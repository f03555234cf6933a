"""Fashion-MNIST test accuracy of one trained model evaluated in float32 and in bf16 (precision="bf16").

    python benchmarks/bf16_accuracy.py [--arch seed] [--epochs 3] [--threads 2]

Trains the preset in float32 (Adam, batch 64), then evaluates the 10,000 test images twice with the same
weights: the difference is what bf16 inference costs in accuracy (target: within 0.2 points).
"""

import argparse
import os
import time

import numpy as np
from fashion_mnist import DEFAULT_DIR, load_fashion_mnist

from microcnn import _core, set_seed
from microcnn.optimizers import Adam
from microcnn.presets import build_model


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="seed")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--data-dir", default=DEFAULT_DIR)
    args = ap.parse_args(argv)
    _core.set_num_threads(args.threads)
    set_seed(0)
    x_train, y_train, x_test, y_test = load_fashion_mnist(args.data_dir)
    model = build_model(args.arch, (28, 28, 1), 10)
    model.compile(optimizer=Adam(learning_rate=1e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    start = time.perf_counter()
    model.fit(x_train, y_train, batch_size=64, epochs=args.epochs, verbose=0)
    print(f"{args.arch}: trained {args.epochs} epochs in {time.perf_counter() - start:.0f} s "
          f"(load average {os.getloadavg()[0]:.1f})")
    results = {}
    for precision in ("f32", "bf16"):
        model.precision = precision
        start = time.perf_counter()
        probs = model.predict(x_test, batch_size=500)
        results[precision] = probs
        acc = float(np.mean(np.argmax(probs, axis=1) == y_test))
        print(f"  {precision:5s} test accuracy {100 * acc:.2f} %  ({time.perf_counter() - start:.2f} s to predict; "
              f"bf16 kernel: {_core.bf16_kernel() if precision == 'bf16' else '-'})")
    same = np.mean(np.argmax(results["f32"], 1) == np.argmax(results["bf16"], 1))
    diff = np.max(np.abs(results["f32"] - results["bf16"]))
    print(f"  same predicted class for {100 * same:.2f} % of images; max |probability difference| {diff:.4f}")


if __name__ == "__main__":
    main()
