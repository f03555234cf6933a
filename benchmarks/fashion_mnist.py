"""Fashion-MNIST accuracy and training speed of a microcnn preset.

Trains on the 60,000 training images (28x28x1, scaled to [0, 1]) and reports the accuracy on the 10,000 test
images, the training wall time and the training throughput. The IDX files come from the Debian package
dataset-fashion-mnist (/usr/share/datasets/fashion-mnist) or --data-dir.

    python benchmarks/fashion_mnist.py --arch small-flat --label-smoothing 0.1 --time-budget 600
    python benchmarks/fashion_mnist.py --arch small --time-budget 600 --tta
    python benchmarks/fashion_mnist.py --arch seed --time-budget 600
"""

import argparse
import gzip
import math
import os
import sys
import time

import numpy as np

import microcnn
from microcnn.augment import ImageAugmenter
from microcnn.callbacks import Callback
from microcnn.optimizers import Adam, AdamW
from microcnn.presets import available_presets, build_model
from microcnn.schedules import CosineDecay, OneCycle

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


class AugmentedBatches:
    """Shuffled (x, y) batches, re-iterable once per epoch; with `shift` > 0 each batch is randomly flipped
    left-right and shifted by up to `shift` of the image size (microcnn's ImageAugmenter: one C++ affine warp
    per batch)."""

    def __init__(self, x, y, batch_size, shift, seed, label_smoothing=0.0):
        self.x, self.y, self.batch_size = x, y, batch_size
        self.label_smoothing = label_smoothing
        self.rng = np.random.default_rng(seed)
        self.images = 0
        self.augmenter = None
        if shift is not None:
            self.augmenter = ImageAugmenter(shear_range=0.0, zoom_range=0.0, horizontal_flip=True,
                                            width_shift_range=shift, height_shift_range=shift,
                                            fill_mode="constant", cval=0.0, seed=seed + 1)

    def __len__(self):
        return (len(self.x) + self.batch_size - 1) // self.batch_size

    def __iter__(self):
        order = self.rng.permutation(len(self.x))
        for start in range(0, len(self.x), self.batch_size):
            index = np.sort(order[start:start + self.batch_size])
            xb, yb = self.x[index], self.y[index]
            self.images += len(index)
            if self.label_smoothing:  # Keras's rule: onehot * (1 - s) + s / classes
                yb = np.full((len(yb), 10), self.label_smoothing / 10, np.float32)
                yb[np.arange(len(yb)), self.y[index]] += 1.0 - self.label_smoothing
            yield (xb if self.augmenter is None else self.augmenter(xb)), yb


class Clock(Callback):
    """Training wall time, excluding the optional per-epoch test evaluation; with a time budget it stops
    training once the budget is spent (checked after every step, so the overrun is at most one step)."""

    def __init__(self, budget=None, on_epoch=None):
        super().__init__()
        self.budget, self.on_epoch = budget, on_epoch
        self.start, self.excluded, self.budget_hit = None, 0.0, False

    def elapsed(self):
        return 0.0 if self.start is None else time.perf_counter() - self.start - self.excluded

    def on_train_begin(self, logs=None):
        self.start, self.excluded = time.perf_counter(), 0.0

    def on_train_batch_end(self, batch, logs=None):
        if self.budget and self.elapsed() >= self.budget:
            self.budget_hit = True
            self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        if self.on_epoch is not None:
            t = time.perf_counter()
            self.on_epoch(epoch, logs, self.elapsed())
            self.excluded += time.perf_counter() - t


class BudgetedSchedule:
    """A step schedule run on progress = max(step / total_steps, elapsed / budget): with a time budget the
    learning rate anneals over the budget even when the machine is slower than planned, so a run cut short
    by the budget still ends at the bottom of its schedule."""

    def __init__(self, schedule, total_steps, clock):
        self.schedule, self.total_steps, self.clock = schedule, total_steps, clock

    def __call__(self, step):
        progress = step / self.total_steps
        if self.clock.budget:
            progress = max(progress, self.clock.elapsed() / self.clock.budget)
        return self.schedule(min(progress, 1.0) * self.total_steps)


def predict_probs(model, x, tta, batch_size=500):
    probs = model.predict(x, batch_size=batch_size)
    if tta:  # average with the mirrored image: the training augmentation flips, so the model saw both
        probs = probs + model.predict(np.ascontiguousarray(x[:, :, ::-1, :]), batch_size=batch_size)
    return probs


DEFAULTS = {  # arch: (epochs, batch size, peak learning rate, shift augmentation; 0.0 = flips only)
    "seed": (10, 64, 2e-3, None),
    "small": (15, 128, 3e-3, 0.0),
    "small-flat": (23, 128, 3e-3, 0.0),
}


def build_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--arch", default="small-flat", help="a microcnn preset: " + ", ".join(available_presets()))
    p.add_argument("--epochs", type=int, default=None, help="default: per arch ("
                   + ", ".join(f"{a} {d[0]}" for a, d in DEFAULTS.items()) + ")")
    p.add_argument("--batch-size", type=int, default=None, help="default: per arch")
    p.add_argument("--lr", type=float, default=None, help="peak Adam learning rate (default: per arch)")
    p.add_argument("--schedule", choices=("onecycle", "cosine", "constant"), default="onecycle",
                   help="learning-rate schedule over the planned steps")
    p.add_argument("--augment", type=float, nargs="?", const=0.1, default=None, metavar="SHIFT",
                   help="random left-right flips and shifts up to SHIFT of the size (default: per arch; "
                        "--augment alone: 0.1)")
    p.add_argument("--no-augment", action="store_true", help="no augmentation whatever the arch default")
    p.add_argument("--label-smoothing", type=float, default=0.0, metavar="S",
                   help="train on one-hot labels smoothed as in Keras: onehot * (1 - S) + S / 10")
    p.add_argument("--weight-decay", type=float, default=0.0, metavar="WD",
                   help="AdamW's decoupled weight decay (w -= w * WD * lr each step) on kernels; BatchNorm "
                        "gamma/beta and biases are excluded")
    p.add_argument("--tta", action="store_true", help="also report accuracy averaged with the mirrored test image")
    p.add_argument("--time-budget", type=float, default=None, metavar="SECONDS",
                   help="stop training when this much training time is spent; the schedule then runs on "
                        "the larger of step and time progress, so it completes within the budget")
    p.add_argument("--eval-every-epoch", action="store_true",
                   help="print test accuracy after each epoch (not counted in the training time)")
    p.add_argument("--subset", type=int, default=None, help="train on the first N training images only")
    p.add_argument("--threads", type=int, default=None, help="kernel threads (default: all cores)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-dir", default=DEFAULT_DIR)
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    epochs, batch_size, lr, shift = DEFAULTS.get(args.arch, (8, 128, 2e-3, None))
    epochs = args.epochs or epochs
    batch_size = args.batch_size or batch_size
    lr = args.lr or lr
    shift = None if args.no_augment else (args.augment if args.augment is not None else shift)
    if args.threads:
        microcnn._core.set_num_threads(args.threads)
    microcnn.set_seed(args.seed)

    t = time.perf_counter()
    x_train, y_train, x_test, y_test = load_fashion_mnist(args.data_dir)
    if args.subset:
        x_train, y_train = x_train[:args.subset], y_train[:args.subset]
    print(f"Loaded Fashion-MNIST in {time.perf_counter() - t:.1f} s: train {x_train.shape}, test {x_test.shape}")

    model = build_model(args.arch, input_shape=(28, 28, 1), num_classes=10)
    train = AugmentedBatches(x_train, y_train, batch_size, shift, args.seed, args.label_smoothing)
    steps = max(epochs * len(train), 2)
    clock = Clock(args.time_budget, None)
    if args.schedule == "onecycle":
        learning_rate = BudgetedSchedule(OneCycle(lr, total_steps=steps, pct_start=0.25), steps, clock)
    elif args.schedule == "cosine":
        warmup = min(len(train), steps // 2)
        cosine = CosineDecay(lr / 10, decay_steps=steps - warmup, warmup_target=lr, warmup_steps=warmup)
        learning_rate = BudgetedSchedule(cosine, steps, clock)
    else:
        learning_rate = lr
    loss = "categorical_crossentropy" if args.label_smoothing else "sparse_categorical_crossentropy"
    if args.weight_decay:
        optimizer = AdamW(learning_rate=learning_rate, weight_decay=args.weight_decay)
        optimizer.exclude_from_weight_decay(var_names=["gamma", "beta", "bias"])
    else:
        optimizer = Adam(learning_rate=learning_rate)
    model.compile(optimizer=optimizer, loss=loss, metrics=["accuracy"])
    threads = microcnn._core.get_num_threads()
    print(f"{args.arch}: {model.count_params():,} parameters; {epochs} epochs of {len(train)} steps, batch "
          f"{batch_size}, {'AdamW (weight decay ' + format(args.weight_decay, 'g') + ')' if args.weight_decay else 'Adam'} "
          f"{args.schedule} peak lr {lr:g}, augmentation "
          f"{'none' if shift is None else 'flips' + (f' + shifts {shift:g}' if shift else '')}, "
          f"label smoothing {args.label_smoothing:g}, {threads} thread(s), "
          f"kernels {microcnn._core.kernel_isa()}", flush=True)

    def report_epoch(epoch, logs, elapsed):
        line = f"epoch {epoch + 1}: loss {logs['loss']:.4f} accuracy {logs['accuracy']:.4f} lr {logs['lr']:.2e}"
        if args.eval_every_epoch:
            acc = float(np.mean(np.argmax(predict_probs(model, x_test, False), axis=1) == y_test))
            line += f" test_accuracy {acc:.4f}"
        print(f"{line} [{elapsed:.0f} s]", flush=True)

    clock.on_epoch = report_epoch
    model.fit(train, epochs=epochs, verbose=0, callbacks=[clock])
    train_time = clock.elapsed()

    t = time.perf_counter()
    probs = predict_probs(model, x_test, False)
    eval_time = time.perf_counter() - t
    accuracy = float(np.mean(np.argmax(probs, axis=1) == y_test))
    print(f"\nRESULT arch={args.arch} test_accuracy={accuracy:.4f} train_time={train_time:.1f}s "
          f"images={train.images} img_per_s={train.images / train_time:.0f} epochs_run={len(model.history.epoch)}"
          f"{' (time budget hit)' if clock.budget_hit else ''} params={model.count_params()} "
          f"test_eval={eval_time:.1f}s ({len(x_test) / eval_time:.0f} img/s)")
    if args.tta:
        tta = float(np.mean(np.argmax(predict_probs(model, x_test, True), axis=1) == y_test))
        print(f"RESULT arch={args.arch} test_accuracy_flip_tta={tta:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
