"""microcnn-train and microcnn-predict end to end on tiny generated datasets (8x8 images, a few epochs)."""

import csv
import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import microcnn
from microcnn.cli import _training
from microcnn.cli.predict import main as predict_main
from microcnn.cli.train import main as train_main
from microcnn.data import preprocess_for_prediction

# Created in this order on purpose: the class order must be the sorted one, not the creation order.
LEVELS = {"zebra": 230, "apple": 20, "mango": 125}


def make_dataset(root, train=6, validation=3, size=8):
    rng = np.random.default_rng(0)
    for split, count in (("train", train), ("validation", validation)):
        for name, level in LEVELS.items():
            d = root / split / name
            d.mkdir(parents=True)
            for i in range(count):
                pixels = np.clip(level + rng.integers(-15, 15, (size, size)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(d / f"{name}{i}.png")
    return root


@pytest.fixture
def dataset(tmp_path):
    return make_dataset(tmp_path / "data")


def train_args(dataset, out, *extra, epochs=6):
    return [str(dataset), "--out", str(out), "--epochs", str(epochs), "--image-size", "8", "--batch-size", "6",
            "--lr", "0.01", "--seed", "3", "--no-augment", *extra]


def read_csv(path_or_text):
    text = path_or_text if isinstance(path_or_text, str) else path_or_text.read_text()
    return list(csv.reader(io.StringIO(text)))


def test_train_then_predict_end_to_end(dataset, tmp_path, capsys):
    out = tmp_path / "model"
    assert train_main(train_args(dataset, out)) == 0
    stdout = capsys.readouterr().out
    assert "Found 27 images in 3 classes (train 18, validation 9)" in stdout
    assert "best validation accuracy" in stdout
    for name in ("config.json", "weights.safetensors", "history.csv", "confusion.csv"):
        assert (out / name).is_file(), name
    try:
        import matplotlib  # noqa: F401 - plots are optional
    except ImportError:
        pass
    else:
        assert (out / "curves.png").stat().st_size > 1000 and (out / "confusion.png").stat().st_size > 1000
    history = read_csv(out / "history.csv")
    assert history[0] == ["epoch", "loss", "accuracy", "val_loss", "val_accuracy"]
    assert [int(r[0]) for r in history[1:]] == list(range(1, 7))
    val_acc = [float(r[4]) for r in history[1:]]
    model = microcnn.load_model(out)
    meta = model.metadata
    assert meta["class_names"] == ["apple", "mango", "zebra"]
    assert meta["training"]["best"]["val_accuracy"] == pytest.approx(max(val_acc), abs=1e-6)
    val_loss = [float(r[3]) for r in history[1:]]
    best = meta["training"]["best_epoch"]
    assert val_acc[best - 1] == max(val_acc)  # ties: the lowest validation loss among them
    assert val_loss[best - 1] == min(v for v, a in zip(val_loss, val_acc) if a == max(val_acc))
    confusion = read_csv(out / "confusion.csv")
    assert confusion[0] == ["true\\predicted", "apple", "mango", "zebra"]
    matrix = np.array([[int(v) for v in row[1:]] for row in confusion[1:]])
    assert matrix.sum(axis=1).tolist() == [3, 3, 3]
    assert np.trace(matrix) / 9 == pytest.approx(max(val_acc), abs=1e-6)  # saved model = best epoch

    # predict: the same files, three formats, agreeing with the model applied directly.
    val = sorted((dataset / "validation").rglob("*.png"))
    x, _, _ = preprocess_for_prediction(val, meta["preprocessing"])
    probs = model.predict(x)
    assert predict_main([str(dataset / "validation"), "--model", str(out), "--format", "json", "--top-k", "3"]) == 0
    results = json.loads(capsys.readouterr().out)
    assert [r["path"] for r in results] == [str(p) for p in val]
    for r, p in zip(results, probs):
        assert r["class"] == meta["class_names"][int(np.argmax(p))]
        assert r["probability"] == pytest.approx(float(p.max()), rel=1e-6)
        assert [t["probability"] for t in r["top_k"]] == sorted((t["probability"] for t in r["top_k"]), reverse=True)
        assert sorted(t["class"] for t in r["top_k"]) == ["apple", "mango", "zebra"]
    predicted = np.array([meta["class_names"].index(r["class"]) for r in results])
    true = np.array([meta["class_names"].index(p.parent.name) for p in val])
    np.testing.assert_array_equal(np.bincount(true * 3 + predicted, minlength=9).reshape(3, 3), matrix)

    assert predict_main([str(val[0]), str(val[4]), "--model", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == [f"{val[i]}: {results[i]['class']} ({results[i]['probability']:.4f})" for i in (0, 4)]
    assert predict_main([str(val[0]), "--model", str(out), "--format", "csv", "--top-k", "2"]) == 0
    rows = read_csv(capsys.readouterr().out)
    assert rows[0] == ["path", "class", "probability", "class_2", "probability_2", "known", "score"]
    assert rows[1][:2] == [str(val[0]), results[0]["class"]]
    assert float(rows[1][2]) == pytest.approx(results[0]["probability"], abs=1e-6)


def test_class_order_survives_save_and_load(dataset, tmp_path, capsys):
    out = tmp_path / "m"
    assert train_main(train_args(dataset, out, epochs=12)) == 0
    capsys.readouterr()
    assert predict_main([str(dataset / "validation"), "--model", str(out)]) == 0
    for line in capsys.readouterr().out.splitlines():
        path, predicted = line.split(": ")
        assert predicted.split(" ")[0] == os.path.basename(os.path.dirname(path))  # separable classes


def test_predict_names_an_unreadable_file_and_still_predicts_the_rest(dataset, tmp_path, capsys):
    out = tmp_path / "m"
    assert train_main(train_args(dataset, out, epochs=1)) == 0
    capsys.readouterr()
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    good = sorted((dataset / "validation" / "apple").glob("*.png"))
    code = predict_main([str(good[0]), str(bad), str(tmp_path / "missing.tif"), str(good[1]), "--model", str(out)])
    captured = capsys.readouterr()
    assert code == 1
    assert [line.split(": ")[0] for line in captured.out.splitlines()] == [str(good[0]), str(good[1])]
    errors = captured.err.splitlines()
    assert len(errors) == 2 and any(str(bad) in e for e in errors) and any("missing.tif" in e for e in errors)


@pytest.mark.parametrize("which, argv, mentions", [
    ("train", ["--epochs", "0"], "--epochs"),
    ("train", ["--image-size", "big"], "--image-size"),
    ("train", ["--color", "purple"], "--color"),
    ("train", ["--validation-split", "1.5"], "--validation-split"),
    ("train", ["--frobnicate"], "--frobnicate"),
    ("train", [], "DATASET"),
    ("train", ["no/such/folder"], "no/such/folder"),
    ("predict", ["x.png", "--top-k", "0"], "--top-k"),
    ("predict", ["x.png", "--format", "xml"], "--format"),
    ("predict", [], "IMAGE_OR_DIR"),
])
def test_usage_errors_exit_2_with_one_line(which, argv, mentions, dataset, capsys):
    if which == "train" and argv and argv[0].startswith("--"):
        argv = [str(dataset), *argv]
    code = (train_main if which == "train" else predict_main)(argv)
    err = capsys.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and mentions in err and "Traceback" not in err


def test_runtime_errors_exit_1_naming_the_folder(tmp_path, capsys):
    one_class = tmp_path / "one"
    make_dataset(tmp_path / "full")
    (one_class / "train" / "cells").mkdir(parents=True)
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(one_class / "train" / "cells" / "a.png")
    assert train_main([str(one_class), "--out", str(tmp_path / "m"), "--validation-split", "0.5"]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and str(one_class / "train") in err
    assert predict_main(["x.png", "--model", str(tmp_path / "nomodel")]) == 1
    assert "nomodel" in capsys.readouterr().err
    assert train_main([str(one_class), "--out", str(tmp_path / "m"), "--validation-split", "0.5", "--debug"]) == 1
    assert "Traceback" in capsys.readouterr().err


def test_refuses_to_overwrite_without_overwrite(dataset, tmp_path, capsys):
    out = tmp_path / "results"
    out.mkdir()
    (out / "notes.txt").write_text("my notes")
    assert train_main(train_args(dataset, out, epochs=1)) == 1
    assert "--overwrite" in capsys.readouterr().err and not (out / "config.json").exists()
    assert train_main(train_args(dataset, out, "--overwrite", epochs=1)) == 0
    assert (out / "notes.txt").read_text() == "my notes" and (out / "config.json").exists()
    assert train_main(train_args(dataset, out, epochs=1)) == 1  # a model is there now: still refused
    assert train_main(train_args(dataset, dataset / "model", epochs=1)) == 2  # inside the dataset


@pytest.mark.parametrize("where", ["epoch_boundary", "mid_epoch"])
def test_ctrl_c_saves_a_checkpoint_and_resume_finishes(dataset, tmp_path, capsys, monkeypatch, where):
    out = tmp_path / "m"
    calls = {"n": 0}
    original = _training.Tracker.on_epoch_begin if where == "epoch_boundary" else _training.Tracker.on_train_batch_end

    def interrupt(self, index, logs=None):
        calls["n"] += 1
        if (where == "epoch_boundary" and index == 2) or (where == "mid_epoch" and calls["n"] == 5):
            raise KeyboardInterrupt
        return original(self, index, logs)

    name = "on_epoch_begin" if where == "epoch_boundary" else "on_train_batch_end"
    monkeypatch.setattr(_training.Tracker, name, interrupt)
    assert train_main(train_args(dataset, out, epochs=4)) == 130
    captured = capsys.readouterr()
    assert "--resume" in captured.err
    assert (out / "checkpoint" / "optimizer.safetensors").is_file()
    completed = 2 if where == "epoch_boundary" else 1
    assert len(read_csv(out / "history.csv")) == 1 + completed
    checkpoint = microcnn.load_model(out / "checkpoint")
    assert checkpoint.optimizer.iterations == (6 if where == "epoch_boundary" else 5)  # 3 batches an epoch
    monkeypatch.setattr(_training.Tracker, name, original)
    assert train_main([str(dataset), "--out", str(out), "--resume"]) == 0
    stdout = capsys.readouterr().out
    assert "Resuming" in stdout and f"Epoch {completed + 1}/4:" in stdout and f"Epoch {completed}/4:" not in stdout
    history = read_csv(out / "history.csv")
    assert [int(r[0]) for r in history[1:]] == [1, 2, 3, 4]
    assert not (out / "checkpoint").exists()
    assert microcnn.load_model(out).metadata["training"]["epochs_completed"] == 4


def test_resume_without_checkpoint_is_an_error(dataset, tmp_path, capsys):
    assert train_main([str(dataset), "--out", str(tmp_path / "m"), "--resume"]) == 1
    assert "checkpoint" in capsys.readouterr().err


def test_console_scripts_in_a_subprocess(dataset, tmp_path):
    # Run from tmp_path so the child imports the installed package, not the source tree.
    out = tmp_path / "m"
    train = subprocess.run([sys.executable, "-m", "microcnn.cli.train", *train_args(dataset, out, epochs=1)],
                           check=False, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert train.returncode == 0, train.stderr
    assert "Saved the model of epoch 1" in train.stdout
    (tmp_path / "bad.jpg").write_text("not a jpeg")
    image = min((dataset / "validation" / "mango").glob("*.png"))
    predict = subprocess.run([sys.executable, "-m", "microcnn.cli.predict", str(image), str(tmp_path / "bad.jpg"),
                              "--model", str(out)], check=False, capture_output=True, text=True, timeout=60,
                             cwd=tmp_path)
    assert predict.returncode == 1
    assert predict.stdout.startswith(f"{image}: ") and "bad.jpg" in predict.stderr
    assert "Traceback" not in predict.stderr


def test_same_seed_same_model(dataset, tmp_path, capsys):
    # Augmentation on, a non-square size: the split, shuffling, augmentation, initialisation and dropout all
    # come from --seed, so two runs (same thread count) give the same weights.
    runs = []
    for name in ("a", "b"):
        args = [a for a in train_args(dataset, tmp_path / name, epochs=2) if a != "--no-augment"]
        args[args.index("--image-size") + 1] = "8x6"
        assert train_main(args) == 0
        runs.append(microcnn.load_model(tmp_path / name).get_weights())
    capsys.readouterr()
    assert runs[0][0].shape == (3, 3, 1, 32)
    for wa, wb in zip(*runs):
        np.testing.assert_array_equal(wa, wb)
    assert microcnn.load_model(tmp_path / "a").metadata["preprocessing"]["image_size"] == [8, 6]
