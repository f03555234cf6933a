"""Training in bf16 (precision="bf16") against float32: Fashion-MNIST test accuracy with the same seed and epochs,
and training throughput on this CPU.

    python benchmarks/bf16_training.py [--arch seed] [--epochs 3] [--train-images 20000] [--threads 2]

Accuracy: the preset is trained twice from the same initial weights and batch order (Adam 1e-3, batch 64), in
float32 and in bf16, on the first --train-images training images; the 10,000 test images are evaluated with
each model in its own precision (and the bf16-trained one in float32 too). Target: within 0.2 points.
Speed: train_on_batch at batch 32 for each size in --sizes, the two precisions interleaved step by step,
median of --steps steps each (a shared machine is noisy: read the ratio, measured in the same run).
"""

import argparse
import os
import time

import numpy as np
from fashion_mnist import DEFAULT_DIR, load_fashion_mnist

from microcnn import _core, set_seed
from microcnn.optimizers import Adam
from microcnn.presets import build_model

PRECISIONS = ("f32", "bf16")


def compiled(arch, shape, precision, classes=10):
    set_seed(0)
    model = build_model(arch, shape, classes)
    model.compile(optimizer=Adam(learning_rate=1e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"],
                  precision=precision)
    return model


def accuracy(args):
    x_train, y_train, x_test, y_test = load_fashion_mnist(args.data_dir)
    x_train, y_train = x_train[:args.train_images], y_train[:args.train_images]
    print(f"{args.arch} on {len(x_train)} Fashion-MNIST training images, {args.epochs} epochs, batch 64, "
          f"tested on {len(x_test)}:")
    for precision in PRECISIONS:
        model = compiled(args.arch, (28, 28, 1), precision)
        start = time.perf_counter()
        history = model.fit(x_train, y_train, batch_size=64, epochs=args.epochs, verbose=0).history
        seconds = time.perf_counter() - start
        scores = []
        for evaluated in dict.fromkeys((precision, "f32")):
            model.precision = evaluated
            probs = model.predict(x_test, batch_size=500)
            scores.append(f"{100 * np.mean(np.argmax(probs, axis=1) == y_test):.2f} % ({evaluated} inference)")
        print(f"  trained in {precision:4s}: final training loss {history['loss'][-1]:.4f}, test accuracy "
              f"{', '.join(scores)}; {seconds:.0f} s, load average {os.getloadavg()[0]:.1f}")


def speed(args):
    rng = np.random.default_rng(0)
    for size in args.sizes:
        shape = (size, size, 1 if size == 28 else 3)
        x = rng.random((32, *shape), dtype=np.float32)
        y = rng.integers(0, 10, 32)
        models = {p: compiled(args.arch, shape, p) for p in PRECISIONS}
        times = {p: [] for p in PRECISIONS}
        for model in models.values():
            model.train_on_batch(x, y)  # warm-up
        for _ in range(args.steps):
            for precision, model in models.items():
                start = time.perf_counter()
                model.train_on_batch(x, y)
                times[precision].append(time.perf_counter() - start)
        ips = {p: 32 / float(np.median(t)) for p, t in times.items()}
        print(f"  {'x'.join(map(str, shape)):9s} batch 32: f32 {ips['f32']:7.0f} img/s, bf16 {ips['bf16']:7.0f} img/s, "
              f"bf16/f32 {ips['bf16'] / ips['f32']:.2f}x (median of {args.steps} interleaved steps, load average "
              f"{os.getloadavg()[0]:.1f})")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="seed")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--train-images", type=int, default=20000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--sizes", type=lambda s: [int(v) for v in s.split(",")], default=[28, 64, 150])
    ap.add_argument("--steps", type=int, default=15)
    ap.add_argument("--skip-accuracy", action="store_true")
    ap.add_argument("--data-dir", default=DEFAULT_DIR)
    args = ap.parse_args(argv)
    _core.set_num_threads(args.threads)
    print(f"kernel_isa={_core.kernel_isa()}, bf16 kernel={_core.bf16_kernel()}, {args.threads} threads")
    if not args.skip_accuracy:
        accuracy(args)
    print("training throughput:")
    speed(args)


if __name__ == "__main__":
    main()
