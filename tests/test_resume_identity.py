"""Ctrl-C at any point of microcnn-train, then --resume, gives bit for bit the model and history of the run that
was never interrupted (augmentation, dropout and the plateau schedule on)."""

import numpy as np
import pytest
from test_cli import make_dataset

import microcnn
from microcnn.augment import ImageAugmenter
from microcnn.cli import _training
from microcnn.cli.train import main as train_main
from microcnn.model import Sequential


def _args(dataset, out):
    return [str(dataset), "--out", str(out), "--epochs", "3", "--image-size", "8", "--batch-size", "5",
            "--lr", "0.01", "--seed", "11", "--schedule", "plateau", "--threads", "1"]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume")
    dataset = make_dataset(root / "data", train=5, validation=2)  # 15 training images: 3 batches an epoch
    out = root / "reference"
    assert train_main(_args(dataset, out)) == 0
    return dataset, microcnn.load_model(out).get_weights(), (out / "history.csv").read_text()


def _interrupt_at(monkeypatch, owner, name, at_call, after=False):
    original = getattr(owner, name)
    calls = {"n": 0}

    def wrapper(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == at_call and not after:
            raise KeyboardInterrupt
        result = original(*args, **kwargs)
        if calls["n"] == at_call:
            raise KeyboardInterrupt  # after the call returned (its generator state has advanced)
        return result

    monkeypatch.setattr(owner, name, wrapper)


POINTS = {
    "before_a_batch_step": (_training.Tracker, "on_train_batch_begin", 5, False),  # batch drawn, step not applied
    "after_a_batch_step": (_training.Tracker, "on_train_batch_end", 4, False),
    "inside_a_forward_pass": (Sequential, "_forward", 2, False),
    "in_validation": (Sequential, "_forward", 4, False),  # epoch 1's three steps, then its validation
    "after_augmenting_a_batch": (ImageAugmenter, "__call__", 6, True),
}


@pytest.mark.parametrize("point", sorted(POINTS))
def test_interrupt_then_resume_is_bit_identical(uninterrupted, tmp_path, monkeypatch, capsys, point):
    dataset, reference_weights, reference_history = uninterrupted
    out = tmp_path / "m"
    with monkeypatch.context() as patch:
        _interrupt_at(patch, *POINTS[point])
        assert train_main(_args(dataset, out)) == 130
    assert "--resume" in capsys.readouterr().err
    assert train_main([str(dataset), "--out", str(out), "--resume", "--threads", "1"]) == 0
    for got, expected in zip(microcnn.load_model(out).get_weights(), reference_weights):
        np.testing.assert_array_equal(got, expected)
    assert (out / "history.csv").read_text() == reference_history


def test_interrupted_again_before_the_resumed_epoch_continues(uninterrupted, tmp_path, monkeypatch, capsys):
    dataset, reference_weights, reference_history = uninterrupted
    out = tmp_path / "m"
    with monkeypatch.context() as patch:
        _interrupt_at(patch, *POINTS["after_a_batch_step"])
        assert train_main(_args(dataset, out)) == 130
    with monkeypatch.context() as patch:
        _interrupt_at(patch, _training.Tracker, "on_epoch_begin", 1)  # before the resumed epoch's first batch
        assert train_main([str(dataset), "--out", str(out), "--resume", "--threads", "1"]) == 130
    assert train_main([str(dataset), "--out", str(out), "--resume", "--threads", "1"]) == 0
    capsys.readouterr()
    for got, expected in zip(microcnn.load_model(out).get_weights(), reference_weights):
        np.testing.assert_array_equal(got, expected)
    assert (out / "history.csv").read_text() == reference_history
