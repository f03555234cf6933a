"""microcnn-predict --precision bf16: the same classes as float32, probabilities within bf16 rounding."""

import json

import pytest
from test_cli import make_dataset, train_args

from microcnn.cli.predict import main as predict_main
from microcnn.cli.train import main as train_main


def test_predict_precision_bf16_matches_f32(tmp_path, capsys):
    data = make_dataset(tmp_path / "data")
    out = tmp_path / "m"
    assert train_main(train_args(data, out, epochs=2)) == 0
    capsys.readouterr()
    images = [str(p) for p in sorted((data / "validation").rglob("*.png"))]
    results = {}
    for precision in ("f32", "bf16"):
        assert predict_main([*images, "--model", str(out), "--format", "json", "--precision", precision]) == 0
        results[precision] = json.loads(capsys.readouterr().out)
    for a, b in zip(results["f32"], results["bf16"]):
        assert a["path"] == b["path"] and a["class"] == b["class"]
        assert b["probability"] == pytest.approx(a["probability"], abs=1e-2)


def test_predict_precision_rejects_unknown(capsys):
    assert predict_main(["x.png", "--precision", "fp8"]) == 2
    assert "--precision" in capsys.readouterr().err
