"""microcnn-train --schedule, --patience and --class-weight on tiny generated datasets."""

import numpy as np
import pytest
from _helpers import interrupt_at_epoch
from PIL import Image

import microcnn
from microcnn.callbacks import EarlyStopping, ReduceLROnPlateau
from microcnn.cli import _training
from microcnn.cli import train as train_cli
from microcnn.schedules import CosineDecay

LEVELS = {"apple": 20, "mango": 125, "zebra": 230}


def make_dataset(root, counts, validation=3, swap_validation=False):
    """8x8 grey images whose brightness names the class; `swap_validation` files every validation image
    under the wrong class, so validation loss rises as the model learns."""
    rng = np.random.default_rng(0)
    names = list(LEVELS)
    for split, per_class in (("train", counts), ("validation", [validation] * len(names))):
        for index, (name, count) in enumerate(zip(names, per_class)):
            folder_name = names[(index + 1) % len(names)] if split == "validation" and swap_validation else name
            d = root / split / folder_name
            d.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                pixels = np.clip(LEVELS[name] + rng.integers(-15, 15, (8, 8)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(d / f"{name}{i}.png")
    return root


def args(dataset, out, *extra, epochs=4):
    return [str(dataset), "--out", str(out), "--epochs", str(epochs), "--image-size", "8", "--batch-size", "6",
            "--lr", "0.01", "--seed", "3", "--no-augment", *extra]


@pytest.fixture
def captured(monkeypatch):
    """The compiled model and the keyword arguments of its fit call."""
    seen = {}
    build = train_cli.build_compiled_model

    def build_and_keep(*a, **k):
        model = build(*a, **k)
        fit = model.fit

        def fit_and_keep(*fa, **fk):
            seen["fit_kwargs"] = fk
            return fit(*fa, **fk)

        model.fit = fit_and_keep
        seen["model"] = model
        return model

    monkeypatch.setattr(train_cli, "build_compiled_model", build_and_keep)
    return seen


def test_cosine_schedule_decays_over_the_whole_run(tmp_path, captured, capsys):
    data = make_dataset(tmp_path / "data", [6, 6, 6])
    assert train_cli.main(args(data, tmp_path / "m", "--schedule", "cosine")) == 0
    assert "cosine schedule" in capsys.readouterr().out
    model = captured["model"]
    lr = model.optimizer.learning_rate
    steps = 4 * 3  # 18 images in batches of 6, 4 epochs
    assert isinstance(lr, CosineDecay) and lr.decay_steps == steps and lr.initial_learning_rate == 0.01
    assert model.optimizer.iterations == steps
    assert model.optimizer.current_learning_rate() == pytest.approx(0.0, abs=1e-12)
    history = model.history.history["lr"]
    assert history == sorted(history, reverse=True) and history[0] < 0.01


def test_plateau_schedule_and_patience_add_keras_callbacks():
    settings = {"lr": 0.01, "schedule": "plateau", "patience": 3}
    plateau, stopper = _training.training_callbacks(settings, has_validation=True)
    assert isinstance(plateau, ReduceLROnPlateau) and plateau.monitor == "val_loss"
    assert plateau.min_lr == pytest.approx(1e-4)
    assert isinstance(stopper, EarlyStopping) and stopper.patience == 3 and stopper.restore_best_weights
    assert [cb.monitor for cb in _training.training_callbacks(settings, has_validation=False)] == ["loss", "loss"]
    assert _training.training_callbacks({"lr": 0.01, "schedule": "constant", "patience": None}, True) == []


def test_patience_stops_when_validation_loss_rises(tmp_path, captured, capsys):
    data = make_dataset(tmp_path / "data", [6, 6, 6], swap_validation=True)
    assert train_cli.main(args(data, tmp_path / "m", "--patience", "2", "--schedule", "plateau", epochs=30)) == 0
    out = capsys.readouterr().out
    epochs = len(captured["model"].history.history["loss"])
    assert epochs < 30 and f"Trained {epochs} epoch(s)" in out
    assert (tmp_path / "m" / "config.json").is_file()


def test_class_weight_auto_weights_the_rare_class(tmp_path, captured, capsys):
    data = make_dataset(tmp_path / "data", [2, 6, 10])
    assert train_cli.main(args(data, tmp_path / "m", "--class-weight", "auto")) == 0
    out = capsys.readouterr().out
    expected = {0: 18 / (3 * 2), 1: 18 / (3 * 6), 2: 18 / (3 * 10)}
    assert captured["fit_kwargs"]["class_weight"] == pytest.approx(expected)
    assert "Class weights: apple 3, mango 1, zebra 0.6" in out
    assert train_cli.main(args(data, tmp_path / "n")) == 0
    assert captured["fit_kwargs"]["class_weight"] is None


@pytest.mark.parametrize("extra", [["--schedule", "step"], ["--patience", "0"], ["--class-weight", "yes"]])
def test_bad_options_are_usage_errors(tmp_path, extra, capsys):
    data = make_dataset(tmp_path / "data", [2, 2, 2])
    assert train_cli.main(args(data, tmp_path / "m", *extra)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and extra[0] in err


def test_resume_keeps_the_schedule(tmp_path, monkeypatch, capsys):
    data = make_dataset(tmp_path / "data", [6, 6, 6])
    out = tmp_path / "m"
    original = interrupt_at_epoch(monkeypatch, 2)  # before epoch 3
    assert train_cli.main(args(data, out, "--schedule", "cosine", "--class-weight", "auto")) == 130
    checkpoint = microcnn.load_model(out / "checkpoint")
    lr = checkpoint.optimizer.learning_rate
    assert isinstance(lr, CosineDecay) and lr.decay_steps == 12 and checkpoint.optimizer.iterations == 6
    monkeypatch.setattr(_training.Tracker, "on_epoch_begin", original)
    capsys.readouterr()
    assert train_cli.main([str(data), "--out", str(out), "--resume"]) == 0
    stdout = capsys.readouterr().out
    assert "Resuming" in stdout and "(cosine schedule)" in stdout and "Class weights:" in stdout
