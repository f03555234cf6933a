"""microcnn-train's detector and microcnn-predict's unknown answer, end to end on tiny generated datasets."""

import json

import numpy as np
import pytest
from _helpers import interrupt_at_epoch
from PIL import Image
from test_cli import make_dataset, read_csv, train_args

import microcnn
from microcnn.cli import _report, _training
from microcnn.cli.predict import main as predict_main
from microcnn.cli.train import main as train_main


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("open_set")
    dataset = make_dataset(root / "data", train=10, validation=10)
    out = root / "model"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_report, "save_plots", lambda *args: [])  # plots are tested elsewhere and take seconds
        assert train_main(train_args(dataset, out, epochs=8)) == 0
    noise = root / "noise.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(noise)
    return dataset, out, noise


def test_train_fits_and_stores_the_detector(trained):
    _, out, _ = trained
    model = microcnn.load_model(out)
    assert model.ood is not None and model.ood.method == microcnn.ood.DEFAULT_METHOD
    assert model.ood.accept == 0.95
    config = json.loads((out / "config.json").read_text())
    assert config["ood"]["file"] == "ood.safetensors" and (out / "ood.safetensors").is_file()
    profile = config["metadata"]["input_profile"]
    assert profile["bits"] == [8] and profile["channels"] == [1] and profile["height"] == [8, 8]


def test_predict_says_unknown_for_noise_in_every_format(trained, capsys):
    dataset, out, noise = trained
    known = min((dataset / "validation" / "apple").glob("*.png"))
    capsys.readouterr()
    assert predict_main([str(known), str(noise), "--model", str(out)]) == 0
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert lines[0].startswith(f"{known}: apple (")
    assert lines[1].startswith(f"{noise}: unknown (nearest: ") and lines[1].endswith(")")
    assert f"{noise}: unlike the training images: colour (training images: grayscale)" in captured.err

    assert predict_main([str(known), str(noise), "--model", str(out), "--format", "json"]) == 0
    results = json.loads(capsys.readouterr().out)
    assert [r["known"] for r in results] == [True, False]
    assert results[0]["score"] > results[1]["score"]
    assert results[1]["class"] in ("apple", "mango", "zebra") and 0 < results[1]["probability"] <= 1

    assert predict_main([str(known), str(noise), "--model", str(out), "--format", "csv", "--top-k", "2"]) == 0
    rows = read_csv(capsys.readouterr().out)
    assert rows[0] == ["path", "class", "probability", "class_2", "probability_2", "known", "score"]
    assert [r[5] for r in rows[1:]] == ["true", "false"]
    assert float(rows[1][6]) == pytest.approx(results[0]["score"], rel=1e-5)


def test_no_unknown_gives_the_old_output_and_accept_moves_the_threshold(trained, capsys):
    dataset, out, noise = trained
    capsys.readouterr()
    assert predict_main([str(noise), "--model", str(out), "--no-unknown", "--format", "csv"]) == 0
    assert read_csv(capsys.readouterr().out)[0] == ["path", "class", "probability"]
    val = str(dataset / "validation")
    counts = {}
    for accept in ("0.5", "0.99"):
        assert predict_main([val, "--model", str(out), "--format", "json", "--accept", accept]) == 0
        counts[accept] = sum(r["known"] for r in json.loads(capsys.readouterr().out))
    assert counts["0.99"] == 30 and 13 <= counts["0.5"] <= 17  # the 30 validation images calibrated it
    assert predict_main([val, "--model", str(out), "--accept", "1.5"]) == 2


def test_a_model_without_detector_predicts_as_before_with_one_note(trained, tmp_path, capsys):
    dataset, out, noise = trained
    model = microcnn.load_model(out)
    model.ood = None
    model.save(tmp_path / "old")
    capsys.readouterr()
    assert predict_main([str(dataset / "validation"), str(noise), "--model", str(tmp_path / "old")]) == 0
    captured = capsys.readouterr()
    assert len(captured.out.splitlines()) == 31 and "unknown" not in captured.out
    notes = [line for line in captured.err.splitlines() if "cannot answer unknown" in line]
    assert len(notes) == 1 and str(tmp_path / "old") in notes[0]


def test_size_and_depth_differences_are_warned_once_per_file(trained, tmp_path, capsys):
    _, out, _ = trained
    big = tmp_path / "big.png"
    Image.fromarray(np.full((64, 80), 128, np.uint8)).save(big)
    deep = tmp_path / "deep.png"
    Image.fromarray(np.full((8, 8), 30000, np.uint16)).save(deep)
    capsys.readouterr()
    assert predict_main([str(big), str(deep), "--model", str(out)]) == 0
    err = capsys.readouterr().err.splitlines()
    assert sum(str(big) in line for line in err) == 1 and any("80x64 pixels (training images: 8x8)" in e for e in err)
    assert sum(str(deep) in line for line in err) == 1 and any("16-bit pixels (training images: 8-bit)" in e
                                                               for e in err)


def test_resume_after_ctrl_c_still_fits_the_detector(tmp_path, monkeypatch, capsys):
    dataset = make_dataset(tmp_path / "data")
    out = tmp_path / "m"
    monkeypatch.setattr(_report, "save_plots", lambda *args: [])  # plots are tested elsewhere and take seconds
    original = interrupt_at_epoch(monkeypatch, 2)
    assert train_main(train_args(dataset, out, "--accept", "0.9", "--ood-method", "knn", epochs=3)) == 130
    monkeypatch.setattr(_training.Tracker, "on_epoch_begin", original)
    assert train_main([str(dataset), "--out", str(out), "--resume"]) == 0
    assert "Open-set detector: knn, accepting 90%" in capsys.readouterr().out
    model = microcnn.load_model(out)
    assert model.ood.method == "knn" and model.ood.accept == 0.9
