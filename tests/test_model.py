"""Sequential: summary, training, gradients against float64 finite differences, determinism, weighting,
batch sources, callbacks, interruption."""

import os
import signal

import numpy as np
import pytest
from _nets import blobs, one_hot, seed_network, tiny_network
from reference_numpy import conv2d_forward, cross_entropy, maxpool2d_forward, relu_forward, softmax_forward

import microcnn
from microcnn import _core, callbacks, layers, optimizers


def test_seed_network_summary_reports_keras_param_count():
    model = seed_network((150, 150, 3), 3)
    lines = []
    model.summary(print_fn=lines.append)
    text = "\n".join(lines)
    assert "Total params: 22,439,875" in text
    assert "Trainable params: 22,439,875" in text and "Non-trainable params: 0" in text
    assert "(None, 37, 37, 64)" in text and "(None, 87616)" in text
    assert model.count_params() == 22_439_875
    shapes = [w.shape for w in model.get_weights()]  # Keras order and layouts
    assert shapes == [(3, 3, 3, 32), (32,), (2, 2, 32, 64), (64,), (87616, 256), (256,), (256, 3), (3,)]


def test_build_paths_agree():
    a = microcnn.Sequential([layers.Dense(4), layers.Dense(2)])
    assert not a.built
    a.build((None, 3))
    b = microcnn.Sequential()
    b.add(layers.Input((3,)))
    b.add(layers.Dense(4))
    c = microcnn.Sequential([layers.Dense(4)])
    c.predict(np.zeros((2, 3), np.float32))  # built on first call
    assert a.output_shape == (None, 2) and b.output_shape == (None, 4) and c.output_shape == (None, 4)


def _reference_forward(model, x, params, dropout_masks=None):
    """The model's function in float64 NumPy, with weights from `params` ({stable name: array}) and the
    given dropout masks ({layer index: mask including the 1/(1-rate) scale})."""
    out = np.asarray(x, np.float64)
    for i, layer in enumerate(model.layers):
        w = {name: params[f"layers.{i}.{layer.name}.{name}"] for name in layer.weight_names}
        if isinstance(layer, layers.Conv2D):
            out = conv2d_forward(out, w["kernel"], w.get("bias"), *layer.strides, layer.padding)
        elif isinstance(layer, layers.Dense):
            out = out @ w["kernel"] + w.get("bias", 0.0)
        elif isinstance(layer, layers.MaxPooling2D):
            out = maxpool2d_forward(out, *layer.pool_size, *layer.strides, layer.padding)[0]
        elif isinstance(layer, layers.Flatten):
            out = out.reshape(len(out), -1)
        elif isinstance(layer, layers.Dropout) and dropout_masks and i in dropout_masks:
            out = out * dropout_masks[i]
        if getattr(layer, "activation", "linear") == "relu":
            out = relu_forward(out)
        elif getattr(layer, "activation", "linear") == "softmax":
            out = softmax_forward(out)
    return out


@pytest.mark.parametrize("head, dropout", [("dense_softmax", 0.0), ("softmax_layer", 0.0), ("unfused", 0.0),
                                           ("dense_softmax", 0.4)])
def test_gradients_match_float64_finite_differences(head, dropout):
    microcnn.set_seed(4)
    model = tiny_network(head=head, dropout=dropout)
    model.compile(optimizer="sgd", loss="categorical_crossentropy")
    assert model._fused_softmax() == (head != "unfused")
    x, y = blobs(6, seed=3)
    labels = one_hot(y, 3)
    sample_weight = np.array([1.0, 0.5, 2.0, 1.0, 0.0, 1.5], np.float32)
    loss, grads = model._gradients(x, labels, sample_weight=sample_weight)

    params = {k: v.astype(np.float64) for k, v in model.named_weights().items()}
    masks = {}
    if dropout:
        index = next(i for i, layer in enumerate(model.layers) if isinstance(layer, layers.Dropout))
        layer = model.layers[index]
        # the mask of the step just computed (not committed), from the layer's (seed, step) counter
        masks[index] = _core.dropout_forward(np.ones((len(x), 6), np.float32), dropout, layer._mask_seed,
                                             layer._step).astype(np.float64)
        assert 0 < np.count_nonzero(masks[index]) < masks[index].size

    def reference_loss():
        return cross_entropy(_reference_forward(model, x, params, masks), labels, sample_weight)

    assert loss == pytest.approx(reference_loss(), rel=1e-5)
    rng = np.random.default_rng(0)
    for name, grad in grads.items():
        for flat in rng.choice(grad.size, size=min(4, grad.size), replace=False):
            index = np.unravel_index(flat, grad.shape)
            saved = params[name][index]
            params[name][index] = saved + 1e-6
            up = reference_loss()
            params[name][index] = saved - 1e-6
            down = reference_loss()
            params[name][index] = saved
            numeric = (up - down) / 2e-6
            assert grad[index] == pytest.approx(numeric, rel=2e-3, abs=2e-5), (name, index)


def test_learns_a_separable_problem():
    microcnn.set_seed(1)
    model = tiny_network()
    model.compile(optimizer=optimizers.Adam(0.01), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    x, y = blobs(96)
    history = model.fit(x, y, batch_size=16, epochs=12, verbose=0)
    assert history.history["accuracy"][-1] == 1.0
    assert history.history["loss"][-1] < history.history["loss"][0] / 4
    loss, accuracy = model.evaluate(x, y, batch_size=40)
    assert accuracy == 1.0 and loss < 0.2
    probs = model.predict(x, batch_size=7)
    assert probs.shape == (96, 3)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(probs.argmax(axis=1), y)
    np.testing.assert_allclose(model.predict(x, batch_size=96), probs, rtol=1e-5, atol=1e-7)


def _fit_weights(seed, **fit_kwargs):
    microcnn.set_seed(seed)
    model = tiny_network(dropout=0.5)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    x, y = blobs(40)
    model.fit(x, y, batch_size=8, epochs=2, verbose=0, **fit_kwargs)
    return model.get_weights()


def test_seeded_fits_are_bit_identical():
    a, b, c = _fit_weights(5), _fit_weights(5), _fit_weights(6)
    assert all(np.array_equal(u, v) for u, v in zip(a, b))
    assert not all(np.array_equal(u, v) for u, v in zip(a, c))


def test_train_on_batch_reports_loss_before_the_update():
    microcnn.set_seed(2)
    model = tiny_network()
    model.compile(optimizer="sgd", loss="categorical_crossentropy", metrics=["accuracy"])
    x, y = blobs(9)
    before = model.predict(x)
    loss, accuracy = model.train_on_batch(x, one_hot(y, 3))
    assert loss == pytest.approx(cross_entropy(before.astype(np.float64), one_hot(y, 3)), rel=1e-5)
    assert accuracy == pytest.approx(np.mean(before.argmax(1) == y))
    assert model.optimizer.iterations == 1
    assert not np.allclose(model.predict(x), before)
    assert model.test_on_batch(x, one_hot(y, 3), return_dict=True).keys() == {"loss", "accuracy"}


def test_class_weight_scales_each_sample():
    microcnn.set_seed(3)
    x, y = blobs(12)
    model = tiny_network()
    model.compile(optimizer=optimizers.SGD(0.1), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    start = model.get_weights()
    probs = model.predict(x).astype(np.float64)
    class_weight = {0: 0.0, 1: 2.0, 2: 0.5}
    loss, _ = model.train_on_batch(x, y, class_weight=class_weight)
    per_sample = np.array([class_weight[c] for c in y])
    assert loss == pytest.approx(cross_entropy(probs, one_hot(y, 3), per_sample), rel=1e-5)
    by_class = model.get_weights()

    # the same weights given per sample give the same update
    model.set_weights(start)
    model.train_on_batch(x, y, sample_weight=per_sample)
    assert all(np.array_equal(u, v) for u, v in zip(model.get_weights(), by_class))

    # a batch of only zero-weighted samples changes nothing
    model.set_weights(start)
    loss, _ = model.train_on_batch(x[y == 0], y[y == 0], class_weight=class_weight)
    assert loss == 0.0
    assert all(np.array_equal(u, v) for u, v in zip(model.get_weights(), start))
    with pytest.raises(ValueError, match="class_weight"):
        model.fit(x, y, class_weight={3: 1.0}, verbose=0)


class Batches:
    """A re-iterable batch source that counts how often it is iterated."""

    def __init__(self, x, y, batch_size):
        self.x, self.y, self.batch_size, self.iterations = x, y, batch_size, 0

    def __len__(self):
        return (len(self.x) + self.batch_size - 1) // self.batch_size

    def __iter__(self):
        self.iterations += 1
        for i in range(0, len(self.x), self.batch_size):
            yield self.x[i:i + self.batch_size], self.y[i:i + self.batch_size]


class IndexedBatches(Batches):
    """Keras-Sequence-like: __len__ and __getitem__ only."""

    __iter__ = None

    def __getitem__(self, i):
        return self.x[i * self.batch_size:(i + 1) * self.batch_size], self.y[i * self.batch_size:(i + 1) * self.batch_size]


@pytest.mark.parametrize("source", [Batches, IndexedBatches, "generator"])
def test_fit_on_iterable_matches_fit_on_arrays(source):
    x, y = blobs(30)
    results = []
    for use_arrays in (True, False):
        microcnn.set_seed(8)
        model = tiny_network()
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        if use_arrays:
            history = model.fit(x, y, batch_size=8, epochs=3, shuffle=False, verbose=0, validation_data=[x, y])
        elif source == "generator":
            def forever():
                while True:
                    yield from Batches(x, y, 8)
            history = model.fit(forever(), epochs=3, steps_per_epoch=4, verbose=0, validation_data=Batches(x, y, 8))
        else:
            data = source(x, y, 8)
            history = model.fit(data, epochs=3, verbose=0, validation_data=Batches(x, y, 8))
            if source is Batches:
                assert data.iterations == 3  # iter() once per epoch
        results.append((model.get_weights(), history.history))
    (w_arrays, h_arrays), (w_iter, h_iter) = results
    assert all(np.array_equal(u, v) for u, v in zip(w_arrays, w_iter))
    assert set(h_iter) == {"loss", "accuracy", "val_loss", "val_accuracy", "lr"}
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        np.testing.assert_allclose(h_iter[key], h_arrays[key], rtol=1e-6)


class Recorder(callbacks.Callback):
    def __init__(self, stop_after_epoch=None):
        super().__init__()
        self.events, self.stop_after_epoch = [], stop_after_epoch

    def on_train_begin(self, logs=None):
        self.events.append("train_begin")

    def on_epoch_begin(self, epoch, logs=None):
        self.events.append(f"epoch_begin {epoch}")

    def on_train_batch_end(self, batch, logs=None):
        self.events.append(f"batch {batch} {sorted(logs)}")

    def on_epoch_end(self, epoch, logs=None):
        self.events.append(f"epoch_end {epoch} {sorted(logs)}")
        if epoch == self.stop_after_epoch:
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        self.events.append("train_end")


def test_callback_protocol_and_stop_training():
    x, y = blobs(20)
    model = tiny_network()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    recorder = Recorder(stop_after_epoch=1)
    history = model.fit(x, y, batch_size=10, epochs=5, verbose=0, callbacks=[recorder], validation_data=(x, y))
    epoch_keys = "['accuracy', 'loss', 'lr', 'val_accuracy', 'val_loss']"
    assert recorder.events == [
        "train_begin",
        "epoch_begin 0", "batch 0 ['accuracy', 'loss']", "batch 1 ['accuracy', 'loss']", f"epoch_end 0 {epoch_keys}",
        "epoch_begin 1", "batch 0 ['accuracy', 'loss']", "batch 1 ['accuracy', 'loss']", f"epoch_end 1 {epoch_keys}",
        "train_end",
    ]
    assert history.epoch == [0, 1] and len(history.history["val_loss"]) == 2
    assert recorder.model is model and model.history is history


def test_learning_rate_is_settable_and_schedulable():
    x, y = blobs(8)
    seen = []

    def schedule(step):
        seen.append(step)
        return 0.01 / (1 + step)

    model = tiny_network()
    model.compile(optimizer=optimizers.SGD(learning_rate=schedule), loss="sparse_categorical_crossentropy")
    model.fit(x, y, batch_size=4, epochs=2, verbose=0)
    assert list(dict.fromkeys(seen)) == [0, 1, 2, 3, 4] and model.optimizer.iterations == 4  # 4: epoch-end "lr"
    model.optimizer.learning_rate = 0.5
    assert model.optimizer.current_learning_rate() == 0.5
    with pytest.raises(ValueError, match="learning_rate"):
        model.optimizer.learning_rate = -1.0


@pytest.mark.parametrize("where", ["batch_begin", "backward"])
def test_keyboard_interrupt_leaves_complete_steps_only(where):
    x, y = blobs(24)
    microcnn.set_seed(9)
    layers.clear_session()
    model = tiny_network(dropout=0.5)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    dropout = next(layer for layer in model.layers if isinstance(layer, layers.Dropout))
    dropout.set_training_state({"mask_seed": np.array([77]), "step": np.array([0])})
    start, start_state = model.get_weights(), model.training_state()

    class InterruptAtThirdBatch(callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            if batch == 2 and where == "batch_begin":
                raise KeyboardInterrupt

    first = model.layers[3]  # a Conv2D run as a layer of its own (the first one is fused with its pool)
    backward_calls = []

    def backward_then_interrupt(dy, **kwargs):
        backward_calls.append(1)
        if len(backward_calls) == 3 and where == "backward":
            raise KeyboardInterrupt  # mid-step: after the forward pass and most of the backward pass
        return type(first).backward(first, dy, **kwargs)

    first.backward = backward_then_interrupt
    with pytest.raises(KeyboardInterrupt):
        model.fit(x, y, batch_size=8, shuffle=False, verbose=0, callbacks=[InterruptAtThirdBatch()])
    assert model.optimizer.iterations == 2
    assert all(layer._cache is None for layer in model.layers)
    assert all(getattr(step, "_cache", None) is None for step in model._current_plan().steps)

    layers.clear_session()  # the same layer names, so the same training-state keys
    reference = tiny_network(dropout=0.5)
    reference.set_weights(start)
    reference.set_training_state(start_state)
    reference.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    reference.train_on_batch(x[:8], y[:8])
    reference.train_on_batch(x[8:16], y[8:16])
    assert all(np.array_equal(u, v) for u, v in zip(model.get_weights(), reference.get_weights()))
    state, expected_state = model.training_state(), reference.training_state()
    assert state.keys() == expected_state.keys() and all(np.array_equal(state[k], expected_state[k]) for k in state)


def test_ctrl_c_during_an_update_waits_for_the_whole_step(monkeypatch):
    x, y = blobs(8)
    model = tiny_network()
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    start = model.get_weights()
    original = optimizers.SGD._update
    calls = []

    def update_then_signal(self, var, grad, slots, lr):
        original(self, var, grad, slots, lr)
        calls.append(1)
        if len(calls) == 1:
            os.kill(os.getpid(), signal.SIGINT)  # arrives after the first of many weight updates

    monkeypatch.setattr(optimizers.SGD, "_update", update_then_signal)
    with pytest.raises(KeyboardInterrupt):
        model.train_on_batch(x, y)
    assert len(calls) == len(model.trainable_weights) and model.optimizer.iterations == 1
    assert all(not np.array_equal(u, v) for u, v in zip(model.get_weights()[::2], start[::2]))


def test_set_weights_validates():
    model = tiny_network()
    weights = model.get_weights()
    with pytest.raises(ValueError, match=f"expected {len(weights)} arrays"):
        model.set_weights(weights[:-1])
    weights[2] = np.zeros((1, 2, 3, 4))
    with pytest.raises(ValueError, match="layers.2.conv2d"):
        model.set_weights(weights)


def test_usage_errors_are_clear():
    model = tiny_network()
    x, y = blobs(4)
    with pytest.raises(RuntimeError, match="compile"):
        model.fit(x, y, verbose=0)
    model.compile(loss="categorical_crossentropy")
    with pytest.raises(ValueError, match="sparse_categorical_crossentropy"):
        model.fit(x, y, verbose=0)
    sparse = tiny_network()
    sparse.compile(loss="sparse_categorical_crossentropy")
    with pytest.raises(ValueError, match=r"y: expected integer class indices in \[0, 3\)"):
        sparse.train_on_batch(x, y + 1)
    with pytest.raises(ValueError, match="non-finite"):
        sparse.train_on_batch(x, np.full(len(x), np.nan))
    with pytest.raises(ValueError, match="x: expected a batch of shape"):
        model.predict(np.zeros((2, 9, 9, 2), np.float32))
    with pytest.raises(ValueError, match="loss"):
        model.compile(loss="mse")
    with pytest.raises(ValueError, match="optimizer"):
        model.compile(optimizer="rmsprop", loss="categorical_crossentropy")
    with pytest.raises(ValueError, match="batch_size"):
        model.evaluate(x, one_hot(y, 3), batch_size=0)


def test_verbose_output(capsys):
    x, y = blobs(16)
    model = tiny_network()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, batch_size=8, epochs=2, verbose=0)
    assert capsys.readouterr().out == ""
    history = model.fit(x, y, batch_size=8, epochs=2, verbose=1, validation_data=(x, y))
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and lines[1].startswith("Epoch 2/2 - loss: ")
    assert f"val_accuracy: {history.history['val_accuracy'][1]:.4f}" in lines[1]


class ArrayLike:
    """Another library's array: converts through __array__ (and is iterable row by row)."""

    def __init__(self, a):
        self.a = a

    def __array__(self, dtype=None, copy=None):
        return self.a if dtype is None else self.a.astype(dtype)

    def __iter__(self):
        return iter(self.a)

    def __len__(self):
        return len(self.a)


def test_array_likes_and_lists_are_samples():
    x, y = blobs(12)
    model = tiny_network()
    model.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    expected = model.predict(x)
    np.testing.assert_array_equal(model.predict(ArrayLike(x)), expected)
    assert model.evaluate(ArrayLike(x), list(y)) == model.evaluate(x, y)
    assert model.evaluate(list(x), y) == model.evaluate(x, y)


def test_stop_training_mid_epoch_still_validates():
    class StopAfterFirstBatch(callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            self.model.stop_training = True

    x, y = blobs(24)
    model = tiny_network()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(x, y, batch_size=8, epochs=3, verbose=0, validation_data=(x, y),
                        callbacks=[StopAfterFirstBatch()])
    assert model.optimizer.iterations == 1 and history.epoch == [0]
    assert history.history["val_loss"] == [pytest.approx(model.evaluate(x, y)[0])]
