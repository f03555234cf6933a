"""The training loop's companions for microcnn-train: the progress display, the best-epoch keeper, and the
random state a checkpoint must carry."""

import math
import time

import numpy as np

from .. import _progress as progress
from ..callbacks import Callback


def build_compiled_model(arch, input_shape, num_classes, learning_rate, precision="f32"):
    from ..optimizers import Adam
    from ..presets import build_model

    model = build_model(arch, input_shape=input_shape, num_classes=num_classes)
    # Integer labels: sparse categorical cross-entropy (the same loss as Keras's categorical one on one-hot).
    model.compile(optimizer=Adam(learning_rate=learning_rate), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"], precision=precision)
    return model


def learning_rate_for(settings, steps_per_epoch):
    """The optimizer's learning rate: a float, or for --schedule cosine a CosineDecay over every step of the
    run (a resumed run continues it: the optimizer's step count is in the checkpoint)."""
    if settings["schedule"] == "cosine":
        from ..schedules import CosineDecay

        return CosineDecay(settings["lr"], decay_steps=max(1, settings["epochs"] * steps_per_epoch))
    return settings["lr"]


def training_callbacks(settings, has_validation):
    """EarlyStopping for --patience and ReduceLROnPlateau for --schedule plateau, on val_loss (on the
    training loss when there are no validation images)."""
    from ..callbacks import EarlyStopping, ReduceLROnPlateau

    monitor = "val_loss" if has_validation else "loss"
    callbacks = []
    if settings["schedule"] == "plateau":
        callbacks.append(ReduceLROnPlateau(monitor=monitor, factor=0.5, patience=2, min_lr=settings["lr"] / 100))
    if settings["patience"] is not None:
        callbacks.append(EarlyStopping(monitor=monitor, patience=settings["patience"], restore_best_weights=True))
    return callbacks


def class_weights_for(mode, ds):
    """None, or for --class-weight auto {class index: n_images / (n_classes * class images)}."""
    if mode != "auto":
        return None
    from ..class_weights import class_counts, compute_class_weight

    counts = class_counts(ds.y_train, ds.num_classes)
    empty = [ds.class_names[c] for c in range(ds.num_classes) if counts[c] == 0]
    if empty:
        raise RuntimeError(f"--class-weight auto: no training images for class {', '.join(empty)}")
    return compute_class_weight(counts)


def rng_state():
    """microcnn's global generator state (it draws the dropout masks)."""
    from .. import _seeding

    return _seeding.global_rng().bit_generator.state


def restore_rng_state(state):
    from .. import _seeding

    _seeding.global_rng().bit_generator.state = state


def _finite_or_none(v):
    return float(v) if v is not None and math.isfinite(v) else None


def _bar(total, desc):
    return progress.bar(total, desc)


def _clock(seconds):
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class Tracker(Callback):
    """A tqdm bar per epoch with the running loss/accuracy, one line per epoch with the validation result,
    the per-epoch history, and an in-memory copy of the weights of the best epoch: highest validation
    accuracy, ties broken by the lower validation loss."""

    KEYS = ("loss", "accuracy", "val_loss", "val_accuracy", "lr")

    def __init__(self, steps, epochs, has_validation, history=None, best_epoch=None, best=None):
        super().__init__()
        self.steps, self.epochs, self.has_validation = steps, epochs, has_validation
        self.history = history or {k: [] for k in self.KEYS}
        for k in self.KEYS:  # a checkpoint from before a key was added
            self.history.setdefault(k, [None] * len(self.history["loss"]))
        self.best_epoch = best_epoch
        self.best = best
        self.best_weights = None
        self._bar = None
        self._t0 = None

    @property
    def epochs_completed(self):
        return len(self.history["loss"])

    def on_epoch_begin(self, epoch, logs=None):
        self._t0 = time.perf_counter()
        self._epoch, self._images = epoch, 0
        if getattr(self, "_run_t0", None) is None:  # the run's clock, for its ETA
            self._run_t0, self._run_batches = self._t0, 0
        self._bar = _bar(self.steps, f"Epoch {epoch + 1}/{self.epochs}")

    def on_train_batch_begin(self, batch, logs=None):
        self._images += (logs or {}).get("size", 0)

    def on_train_batch_end(self, batch, logs=None):
        self._run_batches += 1
        if self._bar is not None and logs:
            now = time.perf_counter()
            postfix = {"loss": f"{logs.get('loss', float('nan')):.4f}",
                       "accuracy": f"{logs.get('accuracy', float('nan')):.4f}",
                       "img/s": f"{self._images / max(now - self._t0, 1e-9):.0f}",
                       "lr": f"{self.model.optimizer.current_learning_rate():.3g}"}
            if self.steps:  # the whole run's time left, at its average pace so far (validation included)
                left = (self.epochs - self._epoch - 1) * self.steps + self.steps - batch - 1
                postfix["run ETA"] = _clock(left * (now - self._run_t0) / self._run_batches)
            self._bar.set_postfix(postfix, refresh=False)
            self._bar.update(1)

    def on_test_begin(self, logs=None):
        self.close()  # the epoch's bar gives way to the validation's
        self._bar = _bar(None, "Validating")

    def on_test_batch_end(self, batch, logs=None):
        if self._bar is not None:
            self._bar.update(1)

    def on_test_end(self, logs=None):
        self.close()

    def close(self):
        progress.close(self._bar)
        self._bar = None

    def on_epoch_end(self, epoch, logs=None):
        self.close()
        logs = logs or {}
        for k in self.KEYS:
            self.history[k].append(_finite_or_none(logs.get(k)))
        line = (f"Epoch {epoch + 1}/{self.epochs}: loss {logs.get('loss', float('nan')):.4f}, "
                f"accuracy {logs.get('accuracy', float('nan')):.4f}")
        if "val_accuracy" in logs:
            line += f" | val_loss {logs['val_loss']:.4f}, val_accuracy {logs['val_accuracy']:.4f}"
            if self._improved(logs):
                self.best_epoch = epoch + 1
                self.best = {"val_accuracy": float(logs["val_accuracy"]),
                             "val_loss": _finite_or_none(logs["val_loss"])}
                self.best_weights = self.model.get_weights()
                line += " (best so far)"
        print(f"{line}  [{time.perf_counter() - self._t0:.1f} s]", flush=True)

    def _improved(self, logs):
        if self.best is None:
            return True
        acc, loss = logs["val_accuracy"], logs["val_loss"]
        if acc != self.best["val_accuracy"]:
            return acc > self.best["val_accuracy"]
        best_loss = self.best["val_loss"]
        return math.isfinite(loss) and (best_loss is None or loss < best_loss)


class NonFiniteError(RuntimeError):
    """Training produced a NaN or infinite loss or weight."""


class StopOnNonFinite(Callback):
    """Raises NonFiniteError at the first non-finite running loss, or at an epoch end whose weights are not all
    finite, before any later callback can keep those weights. Without validation (where the Tracker keeps the
    best epoch's weights) it keeps a copy of the weights of the last finite epoch in `last_good`."""

    def __init__(self, keep_last_good):
        super().__init__()
        self.keep_last_good = keep_last_good
        self.last_good = None
        self.epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(loss):
            raise NonFiniteError(f"the training loss became {loss} in epoch {self.epoch + 1}, batch {batch + 1}")

    def on_epoch_end(self, epoch, logs=None):
        bad = [name for name, w in self.model.named_weights().items() if not np.isfinite(w).all()]
        if bad:
            raise NonFiniteError(f"the weights became non-finite (NaN or Inf) in epoch {epoch + 1} ({bad[0]})")
        for key in ("val_loss",):
            if key in (logs or {}) and not math.isfinite(logs[key]):
                raise NonFiniteError(f"the validation loss became {logs[key]} in epoch {epoch + 1}")
        if self.keep_last_good:
            self.last_good = self.model.get_weights()


def image_size_problem(arch, size, channels=1):
    """None when the preset `arch` takes images of size (H, W), else a sentence giving the smallest size it
    takes (its pooling layers need a minimum). Builds without random draws or lasting layer names."""
    from ..layers import base
    from ..presets import build_model

    def fits(h, w):
        counts = dict(base._NAME_COUNTS)
        try:
            with base.skip_initialization():
                build_model(arch, (h, w, channels), 2)
            return True
        except ValueError:
            return False
        finally:
            base._NAME_COUNTS.clear()
            base._NAME_COUNTS.update(counts)

    if fits(*size):
        return None
    smallest = next((s for s in range(1, 257) if fits(max(s, size[0]), max(s, size[1]))), None)
    need = f"at least {smallest}x{smallest} pixels" if smallest else "larger images"
    return f"the {arch} architecture needs images of {need}, got {size[0]}x{size[1]}"
