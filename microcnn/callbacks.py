"""Keras's callback protocol: `fit` calls these hooks on every callback in order.

Epoch logs hold "loss" and the metric names (e.g. "accuracy"), plus "val_loss" / "val_accuracy" when there is
validation data and "lr" (the learning rate at the end of the epoch). Batch logs hold the running averages of
the epoch so far. A callback stops training by setting `self.model.stop_training = True`.
"""

import csv
import inspect
import math
import numbers
import os
import warnings

import numpy as np

from ._atomic import replacing
from ._validation import boolean, number


class Callback:
    def __init__(self):
        self.model = None
        self.params = {}

    def set_model(self, model):
        self.model = model

    def set_params(self, params):
        self.params = params

    # The hooks: no-ops here; a subclass overrides those it needs.
    def on_train_begin(self, logs=None): ...
    def on_train_end(self, logs=None): ...
    def on_epoch_begin(self, epoch, logs=None): ...
    def on_epoch_end(self, epoch, logs=None): ...
    def on_train_batch_begin(self, batch, logs=None): ...
    def on_train_batch_end(self, batch, logs=None): ...
    def on_test_begin(self, logs=None): ...
    def on_test_batch_begin(self, batch, logs=None): ...
    def on_test_batch_end(self, batch, logs=None): ...
    def on_test_end(self, logs=None): ...


class TerminateOnNaN(Callback):
    """Stop training as soon as the running loss is NaN or infinite (Keras's TerminateOnNaN)."""

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(loss):
            print(f"Batch {batch}: invalid loss {loss}, terminating training")
            self.model.stop_training = True


class CallbackList:
    """Dispatches each hook to every callback, in the order given."""

    def __init__(self, callbacks, model, params):
        self.callbacks = list(callbacks)
        for cb in self.callbacks:
            if not isinstance(cb, Callback):
                raise TypeError(f"callbacks: expected Callback instances, got {cb!r}")
            cb.set_model(model)
            cb.set_params(params)

    def __getattr__(self, hook):
        if not hook.startswith("on_"):
            raise AttributeError(hook)

        def call(*args):
            for cb in self.callbacks:
                getattr(cb, hook)(*args)

        return call


class History(Callback):
    """Records epoch logs: `history.history["loss"]` is the list of per-epoch training losses."""

    def __init__(self):
        super().__init__()
        self.epoch = []
        self.history = {}

    def on_train_begin(self, logs=None):
        self.epoch = []

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.append(epoch)
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(value)


# --- training control: Keras 3's EarlyStopping, ModelCheckpoint, CSVLogger, ReduceLROnPlateau, LR scheduler ----
def _monitor_mode(monitor, mode):
    """-> "min" or "max". "auto" maximises accuracy-like metrics (accuracy, acc, auc), minimises the rest."""
    if mode not in ("auto", "min", "max"):
        raise ValueError(f"mode: expected 'auto', 'min' or 'max', got {mode!r}")
    if mode != "auto":
        return mode
    name = monitor.removeprefix("val_")
    return "max" if name in ("accuracy", "acc", "auc") or name.endswith(("_accuracy", "_acc", "_auc")) else "min"


def _monitor_name(monitor):
    if not isinstance(monitor, str) or not monitor:
        raise TypeError(f"monitor: expected a metric name such as 'val_loss', got {monitor!r}")
    return monitor


def _monitored(callback, logs):
    """The monitored value from `logs`, or None with a warning (as Keras) when it is missing."""
    value = (logs or {}).get(callback.monitor)
    if value is None:
        warnings.warn(
            f"{type(callback).__name__}: monitor {callback.monitor!r} is not in the logs (available: "
            f"{', '.join(sorted(logs or {})) or 'none'}); skipping",
            stacklevel=3,
        )
        return None
    return float(value)


class EarlyStopping(Callback):
    """Stop training when `monitor` has not improved by more than `min_delta` for `patience` epochs.
    With restore_best_weights, the weights of the best epoch are put back at the end of training."""

    def __init__(self, monitor="val_loss", min_delta=0, patience=0, verbose=0, mode="auto", baseline=None,
                 restore_best_weights=False, start_from_epoch=0):
        super().__init__()
        self.monitor = _monitor_name(monitor)
        self.min_delta = abs(number("min_delta", min_delta))
        self.patience = _non_negative_int("patience", patience)
        self.verbose = verbose
        self.mode = _monitor_mode(self.monitor, mode)
        self.baseline = None if baseline is None else number("baseline", baseline)
        self.restore_best_weights = boolean("restore_best_weights", restore_best_weights)
        self.start_from_epoch = _non_negative_int("start_from_epoch", start_from_epoch)

    def _is_improvement(self, value, reference):
        if reference is None:
            return True
        if self.mode == "min":
            return value + self.min_delta < reference
        return value - self.min_delta > reference

    def on_train_begin(self, logs=None):
        self.wait = 0
        self.stopped_epoch = 0
        self.best = None
        self.best_weights = None
        self.best_epoch = 0

    def on_epoch_end(self, epoch, logs=None):
        if epoch < self.start_from_epoch:
            return
        current = _monitored(self, logs)
        if current is None:
            return
        if self.restore_best_weights and self.best_weights is None:
            self.best_weights = self.model.get_weights()
        self.wait += 1
        if self._is_improvement(current, self.best):
            self.best, self.best_epoch = current, epoch
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
            if self.baseline is None or self._is_improvement(current, self.baseline):
                self.wait = 0
            return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self.stopped_epoch > 0 and self.verbose:
            print(f"Epoch {self.stopped_epoch + 1}: early stopping")
        if self.restore_best_weights and self.best_weights is not None:
            if self.verbose:
                print(f"Restoring model weights from the end of the best epoch: {self.best_epoch + 1}.")
            self.model.set_weights(self.best_weights)


class ModelCheckpoint(Callback):
    """Save the model after each epoch with `model.save` (atomic), or only when `monitor` improves
    (save_best_only). `filepath` may hold `{epoch}` and log names, e.g. "ckpt-{epoch:02d}-{val_loss:.3f}"."""

    def __init__(self, filepath, monitor="val_loss", verbose=0, save_best_only=False, mode="auto",
                 initial_value_threshold=None):
        super().__init__()
        if not isinstance(filepath, (str, os.PathLike)) or not os.fspath(filepath):
            raise TypeError(f"filepath: expected a path, got {filepath!r}")
        self.filepath = os.fspath(filepath)
        self.monitor = _monitor_name(monitor)
        self.verbose = verbose
        self.save_best_only = boolean("save_best_only", save_best_only)
        self.mode = _monitor_mode(self.monitor, mode)
        self.initial_value_threshold = initial_value_threshold
        self.best = None if initial_value_threshold is None else number("initial_value_threshold",
                                                                        initial_value_threshold)

    def _path(self, epoch, logs):
        try:
            return self.filepath.format(epoch=epoch + 1, **(logs or {}))
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"filepath: cannot fill {self.filepath!r} from epoch and logs "
                             f"{sorted(logs or {})}: {exc}") from None

    def on_epoch_end(self, epoch, logs=None):
        if self.save_best_only:
            current = _monitored(self, logs)
            if current is None:
                return
            improved = self.best is None or (current < self.best if self.mode == "min" else current > self.best)
            if not improved:
                return
            if self.verbose:
                print(f"Epoch {epoch + 1}: {self.monitor} improved from {self.best} to {current}, saving model")
            self.best = current
        path = self._path(epoch, logs)
        self.model.save(path)
        self.last_saved = path


class CSVLogger(Callback):
    """Write one CSV row per epoch (epoch, then the logs' keys sorted). The whole file is rewritten through
    a temporary file and a rename after every epoch, so it is always complete and never half-written."""

    def __init__(self, filename, separator=",", append=False):
        super().__init__()
        if not isinstance(filename, (str, os.PathLike)) or not os.fspath(filename):
            raise TypeError(f"filename: expected a path, got {filename!r}")
        if not isinstance(separator, str) or len(separator) != 1:
            raise ValueError(f"separator: expected a single character, got {separator!r}")
        self.filename = os.fspath(filename)
        self.separator = separator
        self.append = boolean("append", append)

    def on_train_begin(self, logs=None):
        self._rows, self._keys = [], []
        if self.append and os.path.exists(self.filename):
            with open(self.filename, newline="", encoding="utf-8") as f:
                reader = csv.DictReader(f, delimiter=self.separator)
                self._keys = [k for k in (reader.fieldnames or []) if k != "epoch"]
                self._rows = [dict(row) for row in reader]

    def on_epoch_end(self, epoch, logs=None):
        row = {"epoch": epoch}
        for key, value in (logs or {}).items():
            if key not in self._keys:
                self._keys.append(key)
            row[key] = _csv_value(value)
        self._rows.append(row)
        self._write()

    def _write(self):
        keys = ["epoch"] + sorted(self._keys)
        with replacing(self.filename) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=keys, delimiter=self.separator, restval="NA")
            writer.writeheader()
            writer.writerows(self._rows)


def _csv_value(value):
    if isinstance(value, (str, bytes)):
        return value
    if np.ndim(value) == 0:
        value = np.asarray(value).item()
        return repr(float(value)) if isinstance(value, float) else value
    return "[" + ", ".join(str(v) for v in np.ravel(value)) + "]"


class ReduceLROnPlateau(Callback):
    """Multiply the optimizer's learning rate by `factor` when `monitor` has not improved by more than
    `min_delta` for `patience` epochs, then wait `cooldown` epochs; never below `min_lr`."""

    def __init__(self, monitor="val_loss", factor=0.1, patience=10, verbose=0, mode="auto", min_delta=1e-4,
                 cooldown=0, min_lr=0.0):
        super().__init__()
        self.monitor = _monitor_name(monitor)
        self.factor = number("factor", factor, low=0.0, high=1.0, low_open=True, high_open=True)
        self.patience = _non_negative_int("patience", patience)
        self.verbose = verbose
        self.mode = _monitor_mode(self.monitor, mode)
        self.min_delta = abs(number("min_delta", min_delta))
        self.cooldown = _non_negative_int("cooldown", cooldown)
        self.min_lr = number("min_lr", min_lr, low=0.0)
        self._reset()

    def _reset(self):
        self.best = math.inf if self.mode == "min" else -math.inf
        self.wait = 0
        self.cooldown_counter = 0

    def _improved(self, current):
        if self.mode == "min":
            return current < self.best - self.min_delta
        return current > self.best + self.min_delta

    def on_train_begin(self, logs=None):
        self._reset()

    def on_epoch_end(self, epoch, logs=None):
        current = _monitored(self, logs)
        if current is None:
            return
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.wait = 0
        if self._improved(current):
            self.best, self.wait = current, 0
        elif self.cooldown_counter <= 0:
            self.wait += 1
            if self.wait >= self.patience:
                old_lr = _settable_learning_rate(self)
                if old_lr > float(np.float32(self.min_lr)):
                    new_lr = max(old_lr * self.factor, self.min_lr)
                    self.model.optimizer.learning_rate = new_lr
                    if self.verbose:
                        print(f"Epoch {epoch + 1}: ReduceLROnPlateau reducing learning rate to {new_lr:.4g}.")
                    self.cooldown_counter = self.cooldown
                    self.wait = 0


class LearningRateScheduler(Callback):
    """Set the optimizer's learning rate at the start of each epoch to `schedule(epoch, lr)` (or
    `schedule(epoch)` for a one-argument function); epochs count from 0."""

    def __init__(self, schedule, verbose=0):
        super().__init__()
        if not callable(schedule):
            raise TypeError(f"schedule: expected a function epoch[, lr] -> lr, got {schedule!r}")
        self.schedule = schedule
        self.verbose = verbose
        try:
            inspect.signature(schedule).bind(0, 0.0)
            self._two_args = True
        except TypeError:
            self._two_args = False
        except ValueError:  # builtins without a signature
            self._two_args = False

    def on_epoch_begin(self, epoch, logs=None):
        lr = _settable_learning_rate(self)
        new_lr = self.schedule(epoch, lr) if self._two_args else self.schedule(epoch)
        if isinstance(new_lr, bool) or not isinstance(new_lr, (numbers.Real, np.floating)) or not (
            math.isfinite(float(new_lr)) and float(new_lr) >= 0
        ):
            raise ValueError(f"schedule: expected a finite learning rate >= 0 for epoch {epoch}, got {new_lr!r}")
        self.model.optimizer.learning_rate = float(new_lr)
        if self.verbose:
            print(f"Epoch {epoch + 1}: LearningRateScheduler setting learning rate to {float(new_lr):.4g}.")


def _non_negative_int(name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise ValueError(f"{name}: expected an integer >= 0, got {value!r}")
    return int(value)


def _settable_learning_rate(callback):
    lr = callback.model.optimizer.learning_rate
    if callable(lr):
        raise TypeError(f"{type(callback).__name__}: the optimizer's learning_rate is a schedule ({lr!r}); "
                        f"give the optimizer a float learning rate to let this callback change it")
    return float(lr)
