"""What a microcnn-train checkpoint holds besides the model, so that an interrupted run continued with --resume is
bit for bit the run that was never interrupted, wherever the interrupt fell:

- the position in the epoch: the batches whose optimizer step was applied (counted under the same Ctrl-C
  deferral as the step, see `TrainingMixin._batch_step`), the shuffle generator's state when the epoch began
  (the epoch's order is drawn again), and the augmentation generator's state before the next batch;
- the epoch's running loss and accuracy totals, so its logged figures are those of the whole epoch;
- microcnn's global generator, the per-epoch history and best epoch, and the state of the learning-rate
  plateau and early-stopping callbacks.
The model file holds the weights, the optimizer state and step count, and the dropout counters.
"""

import math

from ..callbacks import Callback
from ._training import restore_rng_state, rng_state

_CALLBACK_FIELDS = ("wait", "best", "cooldown_counter", "stopped_epoch", "best_epoch")


def _json_number(v):
    return {"float": repr(v)} if isinstance(v, float) and not math.isfinite(v) else v


def _from_json(v):
    return float(v["float"]) if isinstance(v, dict) and "float" in v else v


def capture(model, train, tracker, callbacks):
    """The resume state (JSON-serialisable) at this moment of `model.fit(train, ...)`."""
    totals = getattr(model, "_epoch_totals", None)
    mid_epoch = train.epochs_begun > tracker.epochs_completed and totals is not None
    return {
        "history": tracker.history, "best_epoch": tracker.best_epoch, "best": tracker.best,
        "iterator": train.get_state(totals.batches if mid_epoch else None),
        # Not yet in the resumed epoch: its totals are still the restored ones, waiting for it.
        "epoch_totals": totals.get_state() if mid_epoch else model.__dict__.get("_resume_epoch_totals"),
        "global_rng": rng_state(),
        "callbacks": [{k: _json_number(getattr(cb, k)) for k in _CALLBACK_FIELDS if hasattr(cb, k)}
                      for cb in callbacks],
    }


class _RestoreCallbacks(Callback):
    """Put the saved callback states back after fit's on_train_begin has reset them (it runs last)."""

    def __init__(self, callbacks, states):
        super().__init__()
        self.pairs = list(zip(callbacks, states))

    def on_train_begin(self, logs=None):
        for cb, state in self.pairs:
            for k, v in state.items():
                setattr(cb, k, _from_json(v))


def restore(model, train, state, callbacks):
    """Set the iterator, the epoch totals and the global generator from `capture`'s state; returns the
    callback to append to fit's callbacks (after `callbacks`) that restores their states."""
    train.set_state(state["iterator"])
    if state.get("epoch_totals"):
        model._resume_epoch_totals = state["epoch_totals"]
    restore_rng_state(state["global_rng"])
    return _RestoreCallbacks(callbacks, state.get("callbacks") or [{} for _ in callbacks])


def check_optimizer_state(model, path):
    """A checkpoint's optimizer must hold every slot of every trainable weight once it has taken a step (the
    library accepts missing slots -- a weight unfrozen later has none -- but a microcnn-train checkpoint never
    lacks one, so a missing tensor means a damaged file)."""
    optimizer = model.optimizer
    if optimizer.iterations == 0 or not optimizer.slot_names:
        return
    for key, layer, w in model.weight_entries():
        if w in layer.trainable_weight_names:
            have = optimizer._slots.get(key, {})
            missing = [s for s in optimizer.slot_names if s not in have]
            if missing:
                raise ValueError(f"{path}: missing tensor '{key}.{missing[0]}' of the optimizer state (the "
                                 f"checkpoint is incomplete; start again with --overwrite)")
