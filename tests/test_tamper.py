"""A tampered or damaged model folder or checkpoint is refused with one line naming the file and the key or
tensor at fault (exit 1, no traceback): config.json keys missing, of the wrong type or absurd; weight files
truncated, holding NaN, wrong shapes, extra or missing tensors; checkpoint metadata and optimizer state."""

import json
import shutil

import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import load_file, save_file
from test_cli import make_dataset, train_args

from microcnn.cli import _training
from microcnn.cli.predict import main as predict_main
from microcnn.cli.train import main as train_main


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A dataset, a finished model and an interrupted run's folder (with its checkpoint)."""
    root = tmp_path_factory.mktemp("tamper")
    dataset = make_dataset(root / "data", train=3, validation=1)
    assert train_main(train_args(dataset, root / "model", epochs=1)) == 0
    original = _training.Tracker.on_epoch_begin

    def interrupt(self, epoch, logs=None):
        if epoch == 1:
            raise KeyboardInterrupt
        return original(self, epoch, logs)

    _training.Tracker.on_epoch_begin = interrupt
    try:
        assert train_main(train_args(dataset, root / "run", epochs=3)) == 130
    finally:
        _training.Tracker.on_epoch_begin = original
    return dataset, root / "model", root / "run"


def _edit_config(folder, edit):
    path = folder / "config.json"
    config = json.loads(path.read_text())
    edit(config)
    path.write_text(json.dumps(config))


def _meta(key, value):
    def edit(config):
        target = config["metadata"]
        *parents, last = key.split(".")
        for p in parents:
            target = target[p]
        if value is _DELETE:
            del target[last]
        else:
            target[last] = value
    return edit


_DELETE = object()


def _edit_tensors(folder, file, edit):
    path = folder / file
    with safe_open(path, "np") as f:
        metadata = f.metadata()
    tensors = load_file(path)
    edit(tensors)
    save_file(tensors, path, metadata=metadata)


def _nested(config):
    config["metadata"]["deep"] = "@@"


def _first(tensors):
    return min(k for k in tensors if tensors[k].ndim)


MODEL_CASES = {
    "class_names missing": (lambda d: _edit_config(d, _meta("class_names", _DELETE)), "class_names"),
    "class_names a string": (lambda d: _edit_config(d, _meta("class_names", "xyz")), "'class_names'"),
    "class_names extra": (lambda d: _edit_config(d, _meta("class_names", ["a", "b", "c", "d"])), "'class_names'"),
    "class_names repeated": (lambda d: _edit_config(d, _meta("class_names", ["a", "a", "b"])), "'class_names'"),
    "preprocessing missing": (lambda d: _edit_config(d, _meta("preprocessing", _DELETE)), "preprocessing"),
    "image_size missing": (lambda d: _edit_config(d, _meta("preprocessing.image_size", _DELETE)),
                           "'preprocessing.image_size'"),
    "image_size huge": (lambda d: _edit_config(d, _meta("preprocessing.image_size", [100000, 100000])),
                        "'preprocessing.image_size'"),
    "image_size wrong type": (lambda d: _edit_config(d, _meta("preprocessing.image_size", "8")),
                              "'preprocessing.image_size'"),
    "image_size not the model's": (lambda d: _edit_config(d, _meta("preprocessing.image_size", [9, 9])),
                                   "'preprocessing.image_size/channels'"),
    "channels zero": (lambda d: _edit_config(d, _meta("preprocessing.channels", 0)), "'preprocessing.channels'"),
    "range reversed": (lambda d: _edit_config(d, _meta("preprocessing.high_depth_range", [1000.0, 10.0])),
                       "'preprocessing.high_depth_range'"),
    "range not numbers": (lambda d: _edit_config(d, _meta("preprocessing.high_depth_range", [0, "x"])),
                          "'preprocessing.high_depth_range'"),
    "input_shape missing": (lambda d: _edit_config(d, lambda c: c["model"]["config"].pop("input_shape")),
                            "input_shape"),
    "stride absurd": (lambda d: _edit_config(d, lambda c: c["model"]["config"]["layers"][0]["config"].update(
        strides=[1, 2**62])), "layer 0: strides"),
    "layers empty": (lambda d: _edit_config(d, lambda c: c["model"]["config"].update(layers=[])), "at least one layer"),
    "format_version a string": (lambda d: _edit_config(d, lambda c: c.update(format_version="1")), "format_version"),
    "files wrong": (lambda d: _edit_config(d, lambda c: c.update(files="weights")), "'files'"),
    "deeply nested": (lambda d: (d / "config.json").write_text(
        (d / "config.json").read_text()[:-1] + ', "deep": ' + "[" * 100000 + "]" * 100000 + "}"), "nested too deeply"),
    "5000-digit integer": (lambda d: (d / "config.json").write_text(
        (d / "config.json").read_text()[:-1] + ', "big": ' + "9" * 5000 + "}"), "not valid JSON"),
    "weights truncated": (lambda d: (d / "weights.safetensors").write_bytes(
        (d / "weights.safetensors").read_bytes()[:-100]), "weights.safetensors: "),
    "weights NaN": (lambda d: _edit_tensors(d, "weights.safetensors", lambda t: t[_first(t)].reshape(-1).__setitem__(
        0, np.nan)), "non-finite"),
    "weights wrong shape": (lambda d: _edit_tensors(d, "weights.safetensors", lambda t: t.update(
        {_first(t): np.zeros((2, 2), np.float32)})), "has shape (2, 2)"),
    "weights extra tensor": (lambda d: _edit_tensors(d, "weights.safetensors", lambda t: t.update(
        extra=np.zeros(2, np.float32))), "unexpected ['extra']"),
    "weights missing tensor": (lambda d: _edit_tensors(d, "weights.safetensors", lambda t: t.pop(_first(t))),
                               "missing ["),
}


@pytest.mark.parametrize("case", sorted(MODEL_CASES))
def test_a_tampered_model_is_refused_naming_file_and_key(trained, tmp_path, capsys, case):
    dataset, model, _ = trained
    folder = tmp_path / "model"
    shutil.copytree(model, folder)
    tamper, expected = MODEL_CASES[case]
    tamper(folder)
    image = next((dataset / "validation").rglob("*.png"))
    assert predict_main([str(image), "--model", str(folder)]) == 1
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    file = "weights.safetensors" if case.startswith("weights") else "config.json"
    assert f"{folder}/{file}" in err and expected in err, err


def _drop_slots(tensors):
    weight = min(k for k in tensors if k.endswith(".m"))[:-2]
    del tensors[weight + ".m"], tensors[weight + ".v"]


CHECKPOINT_CASES = {
    "optimizer slot missing": (lambda d: _edit_tensors(d, "optimizer.safetensors", lambda t: t.pop(
        min(k for k in t if k.endswith(".m")))), "optimizer.safetensors", "lacks m"),
    "optimizer tensors of a weight missing": (lambda d: _edit_tensors(d, "optimizer.safetensors", _drop_slots),
                                              "optimizer.safetensors", "missing tensor"),
    "optimizer NaN": (lambda d: _edit_tensors(d, "optimizer.safetensors", lambda t: t[min(
        k for k in t if k.endswith(".v"))].reshape(-1).__setitem__(0, np.nan)), "optimizer.safetensors",
        "non-finite"),
    "lr a string": (lambda d: _edit_config(d, _meta("training.lr", "fast")), "config.json", "'training.lr'"),
    "image_size huge": (lambda d: _edit_config(d, _meta("training.image_size", [100000, 100000])), "config.json",
                        "'training.image_size'"),
    "history wrong type": (lambda d: _edit_config(d, _meta("resume.history", [1, 2])), "config.json",
                           "'resume.history'"),
    "best_epoch absurd": (lambda d: _edit_config(d, _meta("resume.best_epoch", 99)), "config.json",
                          "'resume.best_epoch'"),
    "iterator missing": (lambda d: _edit_config(d, _meta("resume.iterator", _DELETE)), "config.json",
                         "'resume.iterator'"),
    "settings missing": (lambda d: _edit_config(d, _meta("training", _DELETE)), "config.json", "'training'"),
}


@pytest.mark.parametrize("case", sorted(CHECKPOINT_CASES))
def test_a_tampered_checkpoint_is_refused_naming_file_and_key(trained, tmp_path, capsys, case):
    dataset, _, run = trained
    folder = tmp_path / "run"
    shutil.copytree(run, folder)
    tamper, file, expected = CHECKPOINT_CASES[case]
    tamper(folder / "checkpoint")
    assert train_main([str(dataset), "--out", str(folder), "--resume"]) == 1
    err = capsys.readouterr().err
    line = err.strip().splitlines()[-1]
    assert "Traceback" not in err and f"{folder}/checkpoint/{file}" in line and expected in line, err
