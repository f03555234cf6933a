"""fit / evaluate / predict / train_on_batch for Sequential. Every numeric step is a kernel call on a whole
batch; NumPy here only slices, shuffles and counts."""

import contextlib
import math
import signal
import threading

import numpy as np

from . import _progress, _seeding
from . import distributed as _distributed
from ._batches import make_source
from ._validation import positive_int, shown
from .callbacks import CallbackList, History


@contextlib.contextmanager
def _defer_keyboard_interrupt():
    """Hold Ctrl-C until the block ends, so an optimizer step updates all weights or none; then deliver it
    to whatever handler was installed."""
    previous = signal.getsignal(signal.SIGINT) if threading.current_thread() is threading.main_thread() else None
    if previous is None or previous is signal.SIG_IGN:  # not ours to manage (other thread, C handler, ignored)
        yield
        return
    received = []
    signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if received:
            signal.raise_signal(signal.SIGINT)


def _batch_size(value):
    """Keras treats batch_size=None as 32 (and ignores it for batch sources)."""
    return 32 if value is None else positive_int("batch_size", value)


class _Totals:
    """Running loss (weighted by batch size, as Keras) and accuracy over an epoch."""

    def __init__(self, metric_names):
        self.metric_names = metric_names
        self.loss = 0.0
        self.correct = 0
        self.count = 0
        self.batches = 0

    def add(self, loss, correct, count):
        self.loss += loss * count
        self.correct += correct
        self.count += count
        self.batches += 1

    def get_state(self):
        return {"loss": self.loss, "correct": self.correct, "count": self.count, "batches": self.batches}

    def set_state(self, state):
        if state:
            self.loss, self.correct = float(state["loss"]), int(state["correct"])
            self.count, self.batches = int(state["count"]), int(state["batches"])

    def logs(self, prefix=""):
        if self.count == 0:
            return {}
        logs = {prefix + "loss": self.loss / self.count}
        for name in self.metric_names:
            logs[prefix + name] = self.correct / self.count
        return logs


class TrainingMixin:
    # --- one batch -------------------------------------------------------------------------------------
    def _require_compiled(self, what):
        if not getattr(self, "compiled", False):
            raise RuntimeError(f"{what}: compile the model first, e.g. model.compile(optimizer='adam', "
                               f"loss='categorical_crossentropy', metrics=['accuracy'])")

    def _prepare_x(self, x, argument="x"):
        x = np.ascontiguousarray(x, dtype=np.float32)
        if not self.built:
            if self._input_shape is None and x.ndim >= 2:
                self._input_shape = tuple(x.shape[1:])
            self.build()
        if x.shape[1:] != tuple(self._input_shape) or len(x) == 0:
            raise ValueError(f"{argument}: expected a batch of shape (batch, {', '.join(map(str, self._input_shape))}), "
                             f"got shape {x.shape}")
        return x

    def _fused_softmax(self):
        """Whether the plan skips the final softmax and lets the loss kernel work on logits."""
        return self._current_plan().softmax_loss

    def _forward(self, x, training, logits=False):
        return self._current_plan().forward(x, training, logits)

    def _sample_weights(self, labels, sample_weight, class_weight, n):
        weights = None
        if sample_weight is not None:
            weights = np.asarray(sample_weight, dtype=np.float32).reshape(-1)
            if weights.shape != (n,):
                raise ValueError(f"sample_weight: expected shape ({n},), got {np.shape(sample_weight)}")
        if class_weight is not None:
            per_class = self._class_weight_table(class_weight)
            from_classes = per_class[self.loss.class_indices(labels)]
            weights = from_classes if weights is None else weights * from_classes
        return None if weights is None else np.ascontiguousarray(weights, dtype=np.float32)

    def _class_weight_table(self, class_weight):
        classes = self.output_shape[-1]
        if not isinstance(class_weight, dict):
            raise TypeError(f"class_weight: expected a dict {{class index: weight}}, got {class_weight!r}")
        table = np.ones(classes, dtype=np.float32)
        for key, value in class_weight.items():
            if isinstance(key, bool) or not isinstance(key, (int, np.integer)) or not 0 <= key < classes:
                raise ValueError(f"class_weight: keys must be class indices in [0, {classes}), got {shown(key)}")
            if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) \
                    or not math.isfinite(value) or value < 0:
                raise ValueError(f"class_weight: weights must be finite numbers >= 0, got {shown(value)} for class {key}")
            table[int(key)] = value
        return table

    def _batch_step(self, x, y, sample_weight, class_weight, training, totals=None):
        """One batch: -> (loss, number correct, batch size). Training also updates the weights, and adds the
        batch to `totals` under the same Ctrl-C deferral, so the running totals always match the weights."""
        world = _distributed.world()
        if world is not None:  # this rank's share of a global batch (microcnn/_data_parallel.py)
            from . import _data_parallel

            result = _data_parallel.batch_step(self, world, x, y, sample_weight, class_weight, training,
                                               _defer_keyboard_interrupt)
            if totals is not None:
                totals.add(*result)
            return result
        rows = len(x)
        try:
            loss, correct, doutputs = self._forward_and_loss(x, y, sample_weight, class_weight, training)
            if training:
                grads_and_vars, names = self._backward(doutputs)
                with _defer_keyboard_interrupt():
                    self.optimizer.apply_gradients(grads_and_vars, names)
                    for layer in self._layers:
                        layer.commit_step()
                    if totals is not None:
                        totals.add(float(loss), correct, rows)
            elif totals is not None:
                totals.add(float(loss), correct, rows)
        except BaseException:
            self._current_plan().clear()
            raise
        return float(loss), correct, rows

    def _forward_and_loss(self, x, y, sample_weight, class_weight, training):
        """One batch forward and its loss: -> (loss, number correct, d loss / d outputs)."""
        x = self._prepare_x(x)
        labels = self.loss.prepare_labels(y, self.output_shape[-1])
        if len(labels) != len(x):
            raise ValueError(f"y: expected {len(x)} labels for a batch of {len(x)} samples, got {len(labels)}")
        weights = self._sample_weights(labels, sample_weight, class_weight, len(x))
        logits = self._fused_softmax()
        outputs = self._forward(x, training, logits)
        loss, probs, doutputs = self.loss(outputs, labels, weights, outputs_are_logits=logits)
        correct = int(np.count_nonzero(np.argmax(probs, axis=1) == self.loss.class_indices(labels)))
        return loss, correct, doutputs

    def _backward(self, doutputs):
        """Backpropagate d loss / d outputs -> ([(grad, weight)], [stable weight name]) for trainable weights."""
        _, grads = self._current_plan().backward(doutputs)
        grads_and_vars, names = [], []
        for key, layer, w in self.weight_entries():
            if w in layer.trainable_weight_names:
                grads_and_vars.append((grads[layer][w], layer._weights[w]))
                names.append(key)
        return grads_and_vars, names

    def _gradients(self, x, y, sample_weight=None, class_weight=None):
        """(loss, {stable weight name: gradient}) for one batch, without updating anything."""
        loss, _, doutputs = self._forward_and_loss(x, y, sample_weight, class_weight, True)
        grads_and_vars, names = self._backward(doutputs)
        return float(loss), {name: np.asarray(grad) for name, (grad, _) in zip(names, grads_and_vars)}

    def _results(self, totals, return_dict):
        logs = totals.logs()
        if return_dict:
            return logs
        values = [logs["loss"]] + [logs[m] for m in self._metric_names]
        return values if self._metric_names else values[0]

    def train_on_batch(self, x, y=None, sample_weight=None, class_weight=None, return_dict=False):
        self._require_compiled("train_on_batch")
        totals = _Totals(self._metric_names)
        totals.add(*self._batch_step(x, y, sample_weight, class_weight, training=True))
        return self._results(totals, return_dict)

    def test_on_batch(self, x, y=None, sample_weight=None, return_dict=False):
        self._require_compiled("test_on_batch")
        totals = _Totals(self._metric_names)
        totals.add(*self._batch_step(x, y, sample_weight, None, training=False))
        return self._results(totals, return_dict)

    # --- loops -----------------------------------------------------------------------------------------
    def evaluate(self, x=None, y=None, batch_size=32, verbose=0, sample_weight=None, steps=None,
                 return_dict=False):
        self._require_compiled("evaluate")
        source = make_source(x, y, sample_weight, _batch_size(batch_size), "x", steps)
        totals = self._run_epoch(source, None, None, training=False, verbose=verbose, desc="Evaluate")
        if totals.count == 0:
            raise ValueError("x: yielded no batches to evaluate")
        return self._results(totals, return_dict)

    def _run_epoch(self, source, rng, class_weight, training, verbose, desc, callbacks=None, hook="train"):
        """One pass over `source`; `callbacks` get on_<hook>_batch_begin/end ("train", or "test" for validation)."""
        totals = _Totals(self._metric_names)
        if training:  # a resumed epoch continues its running totals (see microcnn/resume.py)
            totals.set_state(self.__dict__.pop("_resume_epoch_totals", None))
            self._epoch_totals = totals
        bar = None
        if verbose == 1:
            total = len(source) if getattr(source, "has_len", True) else None
            bar = _progress.bar(total, desc, disable=False)
        try:
            for step, (xb, yb, swb) in enumerate(source.batches(rng, shard=True)):
                if yb is None:
                    raise ValueError("x: batches must carry labels, (x, y) or (x, y, sample_weight)")
                if callbacks is not None:
                    getattr(callbacks, f"on_{hook}_batch_begin")(step, {"batch": step, "size": len(xb)})
                self._batch_step(xb, yb, swb, class_weight, training, totals)
                logs = totals.logs()
                if bar is not None:
                    bar.set_postfix({k: f"{v:.4f}" for k, v in logs.items()}, refresh=False)
                    bar.update(1)
                if callbacks is not None:
                    getattr(callbacks, f"on_{hook}_batch_end")(step, logs)
                    if self.stop_training and hook == "train":
                        break
        finally:
            if bar is not None:
                _progress.close(bar)
        source.end_epoch()
        world = _distributed.world()
        if world is not None and not training:
            from . import _data_parallel

            _data_parallel.reduce_totals(world, totals)
        return totals

    def fit(self, x=None, y=None, batch_size=32, epochs=1, verbose=1, callbacks=None, validation_split=0.0,
            validation_data=None, shuffle=True, class_weight=None, sample_weight=None, initial_epoch=0,
            steps_per_epoch=None, validation_steps=None, validation_batch_size=None):
        """Train; returns a History whose .history holds per-epoch loss, metrics, val_* and lr."""
        self._require_compiled("fit")
        self.ood = None  # a detector fitted on the old weights would no longer match: fit_ood again after
        batch_size = _batch_size(batch_size)
        epochs = int(positive_int("epochs", epochs))
        if isinstance(initial_epoch, bool) or not isinstance(initial_epoch, int) or not 0 <= initial_epoch:
            raise ValueError(f"initial_epoch: expected an integer >= 0, got {initial_epoch!r}")
        if verbose not in (0, 1, 2, "auto"):
            raise ValueError(f"verbose: expected 0, 1 or 2, got {verbose!r}")
        verbose = 1 if verbose == "auto" else verbose
        if steps_per_epoch is not None:
            positive_int("steps_per_epoch", steps_per_epoch)
        if not 0.0 <= float(validation_split) < 1.0:
            raise ValueError(f"validation_split: expected a fraction in [0, 1), got {validation_split!r}")
        if validation_split and validation_data is None:
            if not isinstance(x, np.ndarray):
                raise ValueError("validation_split: only supported when x is an array")
            split = int(len(x) * (1.0 - validation_split))  # Keras validates on the last samples
            validation_data = (x[split:], np.asarray(y)[split:])
            x, y = x[:split], np.asarray(y)[:split]
            sample_weight = None if sample_weight is None else np.asarray(sample_weight)[:split]
        train = make_source(x, y, sample_weight, batch_size, "x", steps_per_epoch)
        val = self._validation_source(validation_data, validation_batch_size or batch_size, validation_steps)
        if hasattr(train, "input_shape") and train.input_shape is not None and not self.built:
            self._prepare_x(np.zeros((1, *train.input_shape), np.float32))
        if class_weight is not None and self.built:
            self._class_weight_table(class_weight)  # fail before the first epoch, not in it

        history = History()
        self.history = history
        cbs = CallbackList(list(callbacks or []) + [history], self,
                           {"epochs": epochs, "steps": len(train) if getattr(train, "has_len", True) else None,
                            "verbose": verbose})
        world = _distributed.world()
        stop_on_signal = contextlib.nullcontext()
        if world is not None:  # every rank starts from rank 0's weights and random state
            from . import _data_parallel

            _data_parallel.synchronize(self, world)
            stop_on_signal = _data_parallel.stop_on_signal()
        rng = np.random.default_rng(_seeding.draw_seed()) if shuffle else None
        self.stop_training = False
        with stop_on_signal:
            self._fit_epochs(cbs, train, val, rng, class_weight, initial_epoch, epochs, verbose)
        return history

    def _fit_epochs(self, cbs, train, val, rng, class_weight, initial_epoch, epochs, verbose):
        cbs.on_train_begin({})
        for epoch in range(initial_epoch, epochs):
            cbs.on_epoch_begin(epoch, {})
            totals = self._run_epoch(train, rng, class_weight, True, verbose, f"Epoch {epoch + 1}/{epochs}", cbs)
            if totals.count == 0:
                raise ValueError(f"x: yielded no batches in epoch {epoch + 1}; pass arrays or a re-iterable "
                                 f"of (x, y) batches (a one-shot generator needs steps_per_epoch)")
            logs = totals.logs()
            if val is not None:  # also after a stop requested mid-epoch, as Keras: callbacks see val_* logs
                cbs.on_test_begin({})
                logs.update(self._run_epoch(val, None, None, False, 0, "Validate", cbs, hook="test").logs("val_"))
                cbs.on_test_end({})
            logs["lr"] = float(self.optimizer.current_learning_rate())
            if verbose:
                print(f"Epoch {epoch + 1}/{epochs} - " + " - ".join(f"{k}: {v:.4g}" if k == "lr" else f"{k}: {v:.4f}"
                                                               for k, v in logs.items()), flush=True)
            with _defer_keyboard_interrupt():  # all callbacks see the epoch end, or none (resumable state)
                cbs.on_epoch_end(epoch, logs)
            if self.stop_training:
                break
        cbs.on_train_end({})

    def _validation_source(self, validation_data, batch_size, steps):
        if validation_data is None:
            return None
        if isinstance(validation_data, (tuple, list)) and len(validation_data) in (2, 3) \
                and isinstance(validation_data[0], np.ndarray):
            xv, yv, swv = (tuple(validation_data) + (None,))[:3]
            if yv is None:
                raise ValueError("validation_data: expected (x_val, y_val) or (x_val, y_val, sample_weight)")
            return make_source(xv, yv, swv, batch_size, "validation_data")
        return make_source(validation_data, None, None, batch_size, "validation_data", steps)

    # --- inference -------------------------------------------------------------------------------------
    def predict(self, x, batch_size=32, verbose=0, steps=None, tta=False):
        """Outputs for every sample, batch by batch, in inference mode (nothing kept for backward).
        tta=True: the mean over the 8 flips/rotations of each image (microcnn/tta.py; x an array)."""
        if tta:
            from .tta import predict_tta

            return predict_tta(self, x, batch_size=batch_size, verbose=verbose)
        source = make_source(x, None, None, _batch_size(batch_size), "x", steps)
        bar = None
        if verbose == 1:
            bar = _progress.bar(len(source) if getattr(source, "has_len", True) else None, "Predict",
                                leave=True, disable=False)
        outputs = []
        try:
            for xb, _, _ in source.batches(None):
                outputs.append(self._forward(self._prepare_x(xb), training=False))
                if bar is not None:
                    bar.update(1)
        finally:
            if bar is not None:
                bar.close()
        if not outputs:
            raise ValueError("x: yielded no batches to predict")
        return np.concatenate(outputs, axis=0)

    # Keras 2 names from before fit/evaluate/predict accepted generators.
    def fit_generator(self, generator, steps_per_epoch=None, epochs=1, verbose=1, callbacks=None,
                      validation_data=None, validation_steps=None, class_weight=None, shuffle=True,
                      initial_epoch=0):
        return self.fit(generator, steps_per_epoch=steps_per_epoch, epochs=epochs, verbose=verbose,
                        callbacks=callbacks, validation_data=validation_data, validation_steps=validation_steps,
                        class_weight=class_weight, shuffle=shuffle, initial_epoch=initial_epoch)

    def evaluate_generator(self, generator, steps=None, verbose=0):
        return self.evaluate(generator, steps=steps, verbose=verbose)

    def predict_generator(self, generator, steps=None, verbose=0):
        return self.predict(generator, steps=steps, verbose=verbose)

    def predict_on_batch(self, x):
        return self._forward(self._prepare_x(x), training=False)

    def __call__(self, x, training=False):
        y = self._forward(self._prepare_x(x), training=bool(training))
        self._current_plan().clear()  # a call is not followed by backward: keep nothing
        return y
