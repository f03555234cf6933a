"""NaN and Inf never pass silently: training stops with a clear error and keeps the last good model, loading
refuses non-finite tensors, extreme float images give finite inputs, predict never prints a NaN probability."""

import numpy as np
import pytest
from PIL import Image
from safetensors import safe_open
from safetensors.numpy import load_file, save_file
from test_cli import make_dataset, train_args

import microcnn
from microcnn.cli import _training
from microcnn.cli.predict import main as predict_main
from microcnn.cli.train import main as train_main
from microcnn.images import high_depth_range, scale_high_depth


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("nan") / "data", train=4, validation=2)


def test_a_huge_learning_rate_stops_with_an_error_and_saves_nothing(dataset, tmp_path, capsys):
    out = tmp_path / "m"
    assert train_main([*train_args(dataset, out, epochs=3), "--lr", "1e30"]) == 1
    err = capsys.readouterr().err
    assert "became nan" in err and "training stopped" in err and "--lr" in err and "Traceback" not in err
    assert not (out / "config.json").exists()


def test_non_finite_in_a_later_epoch_keeps_the_last_good_model(dataset, tmp_path, capsys, monkeypatch):
    original = _training.Tracker.on_epoch_begin

    def poison(self, epoch, logs=None):
        if epoch == 2:
            for w in self.model.named_weights().values():
                w[...] = np.nan
        return original(self, epoch, logs)

    monkeypatch.setattr(_training.Tracker, "on_epoch_begin", poison)
    out = tmp_path / "m"
    for extra, kept in (([], "validation"), (["--validation-split", "0.3"], None)):
        args = train_args(dataset, out, "--overwrite", *extra, epochs=4)
        if kept is None:  # no validation images: the last finite epoch is kept
            flat = tmp_path / "flat"
            for f in (dataset / "train").rglob("*.png"):
                (flat / f.parent.name).mkdir(parents=True, exist_ok=True)
                (flat / f.parent.name / f.name).write_bytes(f.read_bytes())
            args[0] = str(flat)
        assert train_main(args) == 1
        err = capsys.readouterr().err
        assert "epoch 3" in err and "kept the model of the last good epoch" in err
        model = microcnn.load_model(out)
        assert all(np.isfinite(w).all() for w in model.get_weights())
        assert model.metadata["training"]["epochs_completed"] == 2


def _saved_model(tmp_path):
    model = microcnn.Sequential([microcnn.layers.Dense(3, activation="softmax", input_shape=(4,))])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(np.ones((4, 4), np.float32), np.array([0, 1, 2, 0]), verbose=0)
    model.save(tmp_path / "m")
    return tmp_path / "m"


@pytest.mark.parametrize("file, value", [("weights.safetensors", np.nan), ("weights.safetensors", np.inf),
                                         ("optimizer.safetensors", np.nan)])
def test_loading_refuses_non_finite_tensors_naming_file_and_tensor(tmp_path, file, value):
    path = _saved_model(tmp_path) / file
    tensors = load_file(path)
    name = next(k for k, v in tensors.items() if v.dtype == np.float32)
    tensors[name].reshape(-1)[0] = value
    with safe_open(path, "np") as f:
        metadata = f.metadata()
    save_file(tensors, path, metadata=metadata)
    with pytest.raises(ValueError, match=rf"{file}: tensor '{name}' holds 1 non-finite value"):
        microcnn.load_model(path.parent)


def test_float_images_near_the_float32_limit_scale_to_finite_inputs():
    pixels = np.array([[3.0e38], [-3.0e38], [1.0], [0.5]], np.float32).reshape(2, 2, 1)
    low, high = high_depth_range([pixels])
    scaled = scale_high_depth(pixels, "F", {"high_depth_range": [low, high]})
    assert np.isfinite(scaled).all() and scaled.dtype == np.float32
    extreme = scale_high_depth(pixels, "F", {"high_depth_range": [0.0, 1.0]})
    assert np.isfinite(extreme).all() and extreme.max() == np.float32(1e4)


def test_predict_reports_non_finite_scores_instead_of_printing_nan(dataset, tmp_path, capsys, monkeypatch):
    out = tmp_path / "m"
    assert train_main(train_args(dataset, out, epochs=1)) == 0
    image = tmp_path / "x.png"
    Image.fromarray(np.full((8, 8), 100, np.uint8)).save(image)
    capsys.readouterr()
    monkeypatch.setattr(microcnn.Sequential, "predict", lambda self, x, **kw: np.full((len(x), 3), np.nan, "f4"))
    monkeypatch.setattr(microcnn.Sequential, "predict_ood", lambda self, x, **kw: (
        np.full((len(x), 3), np.nan, "f4"), np.full(len(x), np.nan), np.zeros(len(x), bool)))
    assert predict_main([str(image), "--model", str(out)]) == 1
    captured = capsys.readouterr()
    assert "nan" not in captured.out and "x.png: the model gave non-finite scores" in captured.err
