"""EarlyStopping, ModelCheckpoint, CSVLogger, ReduceLROnPlateau and LearningRateScheduler driven by fake
epoch logs on a stand-in model, checked against the rules Keras 3 documents."""

import csv
import os

import numpy as np
import pytest

from microcnn.callbacks import (
    CSVLogger,
    EarlyStopping,
    LearningRateScheduler,
    ModelCheckpoint,
    ReduceLROnPlateau,
)


class FakeOptimizer:
    def __init__(self, learning_rate):
        self.learning_rate = learning_rate


class FakeModel:
    """What the callbacks touch: weights, stop_training, optimizer.learning_rate and save()."""

    def __init__(self, learning_rate=0.1):
        self.weights = [np.zeros(3, np.float32)]
        self.stop_training = False
        self.optimizer = FakeOptimizer(learning_rate)
        self.saved = []

    def get_weights(self):
        return [w.copy() for w in self.weights]

    def set_weights(self, weights):
        self.weights = [np.array(w) for w in weights]

    def save(self, path):
        self.saved.append(path)


def run(callback, values, monitor="val_loss", model=None):
    """Drive `callback` through len(values) epochs, the weights of epoch e being all e; stops like fit."""
    model = model or FakeModel()
    callback.set_model(model)
    callback.on_train_begin()
    epochs = 0
    for epoch, value in enumerate(values):
        callback.on_epoch_begin(epoch)
        model.weights = [np.full(3, epoch, np.float32)]
        callback.on_epoch_end(epoch, {monitor: value, "loss": 1.0 / (epoch + 1)})
        epochs += 1
        if model.stop_training:
            break
    callback.on_train_end()
    return model, epochs


def test_early_stopping_stops_after_patience_and_restores_best():
    values = [1.0, 0.8, 0.9, 0.85, 0.95, 0.7]
    model, epochs = run(EarlyStopping(patience=2, restore_best_weights=True), values)
    assert epochs == 4  # best at epoch 1; epochs 2 and 3 do not improve
    np.testing.assert_array_equal(model.weights[0], np.full(3, 1.0))
    model, epochs = run(EarlyStopping(patience=2), values)
    assert epochs == 4 and model.weights[0][0] == 3  # weights of the last epoch kept


def test_early_stopping_min_delta_mode_and_baseline():
    # An improvement smaller than min_delta does not count.
    _, epochs = run(EarlyStopping(patience=1, min_delta=0.1), [1.0, 0.95, 0.92])
    assert epochs == 2
    # "auto" maximises accuracy.
    _, epochs = run(EarlyStopping(monitor="val_accuracy", patience=1), [0.5, 0.6, 0.7, 0.65, 0.6], "val_accuracy")
    assert epochs == 4
    # Improvements that do not beat the baseline do not reset the wait (Keras: checked at the next
    # epoch without improvement).
    _, epochs = run(EarlyStopping(patience=2, baseline=0.5), [0.9, 0.8, 0.85, 0.7], "val_loss")
    assert epochs == 3
    _, epochs = run(EarlyStopping(patience=2), [0.9, 0.8, 0.85, 0.7], "val_loss")
    assert epochs == 4


def test_early_stopping_warns_on_a_missing_monitor():
    with pytest.warns(UserWarning, match="val_loss"):
        _, epochs = run(EarlyStopping(patience=0), [1.0, 2.0], monitor="loss_typo")
    assert epochs == 2


def test_model_checkpoint_saves_every_epoch_or_only_the_best(tmp_path):
    pattern = str(tmp_path / "ckpt-{epoch:02d}-{val_loss:.2f}")
    model, _ = run(ModelCheckpoint(pattern), [1.0, 2.0])
    assert model.saved == [str(tmp_path / "ckpt-01-1.00"), str(tmp_path / "ckpt-02-2.00")]
    model, _ = run(ModelCheckpoint(str(tmp_path / "best"), save_best_only=True), [1.0, 0.5, 0.7, 0.4])
    assert len(model.saved) == 3  # epochs 0, 1 and 3 improved
    model, _ = run(ModelCheckpoint("m", monitor="val_accuracy", save_best_only=True), [0.1, 0.3, 0.2],
                   "val_accuracy")
    assert len(model.saved) == 2
    with pytest.raises(ValueError, match="filepath"):
        run(ModelCheckpoint(str(tmp_path / "{nope}")), [1.0])


def test_csv_logger_writes_a_complete_file_each_epoch(tmp_path):
    path = tmp_path / "history.csv"
    logger = CSVLogger(str(path))
    model = FakeModel()
    logger.set_model(model)
    logger.on_train_begin()
    logger.on_epoch_end(0, {"loss": 0.5, "val_loss": 0.25, "accuracy": np.float32(0.75)})
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows == [{"epoch": "0", "accuracy": "0.75", "loss": "0.5", "val_loss": "0.25"}]
    logger.on_epoch_end(1, {"loss": 0.4, "val_loss": 0.2, "accuracy": 0.8})
    logger.on_train_end()
    # Appending continues the file instead of replacing it.
    again = CSVLogger(str(path), append=True)
    again.set_model(model)
    again.on_train_begin()
    again.on_epoch_end(2, {"loss": 0.3, "val_loss": 0.1, "accuracy": 0.9, "lr": 0.01})
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["epoch"] for r in rows] == ["0", "1", "2"]
    assert [r["loss"] for r in rows] == ["0.5", "0.4", "0.3"]
    assert rows[0]["lr"] == "NA" and rows[2]["lr"] == "0.01"
    assert [p for p in os.listdir(tmp_path) if p != "history.csv"] == []  # no temporary files left


def test_reduce_lr_on_plateau():
    cb = ReduceLROnPlateau(factor=0.5, patience=2, min_lr=0.03, cooldown=1)
    model = FakeModel(learning_rate=0.1)
    lrs = []
    cb.set_model(model)
    cb.on_train_begin()
    for epoch, value in enumerate([1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]):
        cb.on_epoch_end(epoch, {"val_loss": value})
        lrs.append(model.optimizer.learning_rate)
    # Reduced after 2 flat epochs; the cooldown epoch resets the count; then clamped at min_lr.
    assert lrs == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.03, 0.03, 0.03, 0.03])
    # An improvement resets the wait.
    cb = ReduceLROnPlateau(factor=0.5, patience=2)
    model = FakeModel(learning_rate=0.1)
    cb.set_model(model)
    cb.on_train_begin()
    for epoch, value in enumerate([1.0, 1.0, 0.5, 0.5, 0.4]):
        cb.on_epoch_end(epoch, {"val_loss": value})
    assert model.optimizer.learning_rate == 0.1
    with pytest.raises(ValueError, match="factor"):
        ReduceLROnPlateau(factor=1.0)


def test_learning_rate_scheduler_accepts_one_or_two_argument_schedules():
    model = FakeModel(learning_rate=1.0)
    cb = LearningRateScheduler(lambda epoch, lr: lr * 0.5)
    seen = []
    cb.set_model(model)
    for epoch in range(3):
        cb.on_epoch_begin(epoch)
        seen.append(model.optimizer.learning_rate)
    assert seen == [0.5, 0.25, 0.125]
    cb = LearningRateScheduler(lambda epoch: 0.1 / (epoch + 1))
    cb.set_model(model)
    cb.on_epoch_begin(3)
    assert model.optimizer.learning_rate == pytest.approx(0.025)
    bad = LearningRateScheduler(lambda epoch: "fast")
    bad.set_model(model)
    with pytest.raises(ValueError, match="schedule"):
        bad.on_epoch_begin(0)
    with pytest.raises(TypeError, match="schedule"):
        LearningRateScheduler(0.1)


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: EarlyStopping(patience=-1), "patience"),
        (lambda: EarlyStopping(mode="up"), "mode"),
        (lambda: ReduceLROnPlateau(min_lr=-1), "min_lr"),
        (lambda: CSVLogger("x.csv", separator=";;"), "separator"),
    ],
)
def test_constructor_validation(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_callbacks_in_a_real_fit(tmp_path):
    import microcnn
    from microcnn import layers

    microcnn.set_seed(0)
    rng = np.random.default_rng(0)
    y = np.arange(60) % 2
    x = rng.normal(0.0, 1.0, (60, 4)).astype(np.float32) + y[:, None].astype(np.float32)
    model = microcnn.Sequential([layers.Input((4,)), layers.Dense(2, activation="softmax")])
    model.compile(optimizer=microcnn.optimizers.Adam(0.05), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])

    class WeightsPerEpoch(EarlyStopping):
        """Records the weights at each epoch end, to compare with what EarlyStopping restores."""

        def on_epoch_end(self, epoch, logs=None):
            self.seen = getattr(self, "seen", []) + [(logs["val_loss"], self.model.get_weights())]
            super().on_epoch_end(epoch, logs)

    stopper = WeightsPerEpoch(patience=1, restore_best_weights=True)
    checkpoint = ModelCheckpoint(str(tmp_path / "best"), save_best_only=True)
    log = tmp_path / "log.csv"
    history = model.fit(
        x[:40], y[:40], epochs=6, batch_size=10, verbose=0, validation_data=(x[40:], y[40:]),
        callbacks=[stopper, checkpoint, CSVLogger(str(log)), LearningRateScheduler(lambda e: 0.05 / (e + 1))],
    )
    epochs = len(history.history["loss"])
    assert history.history["lr"] == pytest.approx([0.05 / (e + 1) for e in range(epochs)])
    _, best_weights = min(stopper.seen, key=lambda item: item[0])
    for a, b in zip(model.get_weights(), best_weights):
        np.testing.assert_array_equal(a, b)
    # The checkpoint holds the same best epoch.
    again = microcnn.load_model(tmp_path / "best")
    np.testing.assert_array_equal(again.predict(x), model.predict(x))
    with open(log, newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == epochs
    assert [float(r["val_loss"]) for r in rows] == pytest.approx(history.history["val_loss"])
