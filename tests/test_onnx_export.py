"""ONNX export checked by ONNX Runtime: its probabilities must equal microcnn's within 1e-5."""

import json
import os
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="ONNX export needs the onnx package (pip install 'microcnn[onnx]')")
ort = pytest.importorskip("onnxruntime", reason="the export is checked with onnxruntime")

import microcnn
from microcnn.cli.export import main as export_main
from microcnn.layers import (
    Activation,
    BatchNormalization,
    Conv2D,
    Dense,
    Dropout,
    Flatten,
    GlobalAveragePooling2D,
    Input,
    MaxPooling2D,
    ReLU,
    Softmax,
)
from microcnn.onnx_export import build_graph

TOLERANCE = 1e-5


def randomise_batchnorm(model, seed=0):
    """Moving statistics and affine weights far from the initial 0/1, so a wrong mapping shows."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, BatchNormalization):
            c = layer._weights["moving_mean"].shape[0]
            values = {"gamma": rng.uniform(0.5, 1.5, c), "beta": rng.normal(0, 0.3, c),
                      "moving_mean": rng.normal(0, 0.3, c), "moving_variance": rng.uniform(0.2, 2.0, c)}
            layer.set_weights([values[name] for name in layer.weight_names])
    return model


def run_onnx(path, x, layout="NHWC"):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feed = x if layout == "NHWC" else np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    return session.run(None, {"input": feed})[0]


def assert_same(model, tmp_path, n=3, seed=1, **options):
    x = np.random.default_rng(seed).random((n, *model.input_shape[1:]), dtype=np.float32)
    path = tmp_path / "m.onnx"
    model.export(path, format="onnx", **options)
    got = run_onnx(path, x, options.get("input_layout", "NHWC"))
    expected = model.predict(x, batch_size=n)
    assert got.shape == expected.shape
    assert np.max(np.abs(got - expected)) <= TOLERANCE
    return onnx.load(str(path))


@pytest.mark.parametrize("arch, shape", [("seed", (20, 14, 3)), ("small", (16, 12, 1)), ("small-flat", (12, 16, 3))])
def test_presets_match_onnxruntime(arch, shape, tmp_path):
    microcnn.set_seed(3)
    model = randomise_batchnorm(microcnn.build_model(arch, shape, 4))
    proto = assert_same(model, tmp_path)
    ops = {node.op_type for node in proto.graph.node}
    assert "Dropout" not in ops
    if arch != "seed":
        assert "BatchNormalization" not in ops  # conv (no activation) + batch norm folded into one Conv
    assert_same(model, tmp_path, fold_batchnorm=False)


def odd_model(channels, kernel, stride, padding, pool_padding="valid"):
    return microcnn.Sequential([
        Input((11, 7, channels)),
        Conv2D(5, kernel, strides=stride, padding=padding, activation="relu"),
        Conv2D(6, (4, 2), padding="same", use_bias=False),
        BatchNormalization(),
        ReLU(),
        MaxPooling2D((3, 2), strides=(2, 1), padding=pool_padding),
        Conv2D(3, (2, 2), strides=(2, 3), padding="same", activation="relu"),
        Flatten(),
        Dropout(0.3),
        Dense(7, use_bias=False),
        BatchNormalization(),
        Activation("relu"),
        Dense(3),
        Softmax(),
    ])


@pytest.mark.parametrize("channels, kernel, stride, padding, pool_padding", [
    (1, (2, 2), 1, "same", "valid"),
    (4, (4, 4), 2, "same", "same"),
    (3, (3, 2), (2, 3), "valid", "same"),
    (1, (1, 1), 3, "valid", "valid"),
])
def test_odd_shapes_match_onnxruntime(channels, kernel, stride, padding, pool_padding, tmp_path):
    microcnn.set_seed(5)
    model = randomise_batchnorm(odd_model(channels, kernel, stride, padding, pool_padding), seed=channels)
    assert_same(model, tmp_path)
    assert_same(model, tmp_path, input_layout="NCHW", batch=2, n=2)


def test_global_pool_keepdims_and_softmax_layers(tmp_path):
    microcnn.set_seed(7)
    model = microcnn.Sequential([
        Input((9, 10, 2)),
        BatchNormalization(),  # first, with nothing to fold into
        Conv2D(8, (3, 3), padding="same", activation="relu"),
        GlobalAveragePooling2D(keepdims=True),
        Flatten(),
        Dense(5, activation="relu"),
        BatchNormalization(),  # after an activation: kept as a node
        Dense(3, activation="softmax"),
    ])
    proto = assert_same(randomise_batchnorm(model), tmp_path)
    assert sum(node.op_type == "BatchNormalization" for node in proto.graph.node) == 2


def test_metadata_describes_the_file(tmp_path):
    microcnn.set_seed(1)
    model = microcnn.build_model("seed", (8, 8, 1), 3)
    preprocessing = {"version": 1, "image_size": [8, 8], "channels": 1, "color": "grayscale",
                     "resample": "bilinear", "high_depth_range": [0, 4095]}
    model.metadata = {"class_names": ["a", "b", "c"], "preprocessing": preprocessing}
    ood = {"method": "mahalanobis-l2", "threshold": -3.5, "accept": 0.95}
    proto = model.export(tmp_path / "m.onnx", ood=ood)
    props = {p.key: p.value for p in onnx.load(str(tmp_path / "m.onnx")).metadata_props}
    assert json.loads(props["class_names"]) == ["a", "b", "c"]
    assert json.loads(props["preprocessing"]) == preprocessing
    assert json.loads(props["ood"]) == ood
    assert props["input_layout"] == "NHWC"
    assert "pixel / 255" in props["preprocessing_rule"] and "(pixel - 0) / (4095 - 0)" in props["preprocessing_rule"]
    assert [o.name for o in proto.graph.output] == ["probabilities"]
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in dims] == ["batch", 8, 8, 1]
    assert proto.opset_import[0].version == 17


def test_unknown_layer_and_bad_options_are_named():
    config = {"name": "m", "input_shape": [4, 4, 1],
              "layers": [{"class_name": "Upsample2D", "config": {"name": "up"}}]}
    with pytest.raises(ValueError, match=r"layer 'up' \(Upsample2D\): no ONNX mapping"):
        build_graph(config, {})
    with pytest.raises(ValueError, match="opset: expected an integer from 13"):
        build_graph(config, {}, opset=9)
    with pytest.raises(ValueError, match="batch: expected 'dynamic' or a positive integer, got 0"):
        build_graph(config, {}, batch=0)
    model = microcnn.build_model("seed", (8, 8, 1), 2)
    with pytest.raises(ValueError, match="format: expected 'onnx'"):
        model.export("m.tflite", format="tflite")


def trained_folder(tmp_path):
    microcnn.set_seed(2)
    model = randomise_batchnorm(microcnn.build_model("small", (10, 12, 3), 3))
    model.save(tmp_path / "model", metadata={"class_names": ["x", "y", "z"], "preprocessing": {
        "version": 1, "image_size": [10, 12], "channels": 3, "color": "rgb", "resample": "bilinear",
        "high_depth_range": None}})
    return model


class Detector:
    """Stands for the open-set detector a loaded model carries as `model.ood`."""

    def __init__(self, config):
        self.config = config

    def get_config(self):
        return self.config


def test_cli_exports_and_checks(tmp_path, capsys, monkeypatch):
    ood = {"method": "energy", "threshold": 1.25, "accept": 0.9}
    model = trained_folder(tmp_path)
    load_model = microcnn.load_model

    def load_with_detector(path, compile=True):
        loaded = load_model(path, compile=compile)
        loaded.ood = Detector(ood)
        return loaded

    monkeypatch.setattr(microcnn, "load_model", load_with_detector)
    out = tmp_path / "m.onnx"
    assert export_main([str(tmp_path / "model"), str(out), "--batch", "2", "--opset", "15"]) == 0
    stdout = capsys.readouterr().out
    assert "output \"probabilities\" (2, 3)" in stdout
    assert "Classes: x, y, z" in stdout
    assert "Open-set detector recorded: energy, threshold 1.25" in stdout
    assert "Checked with ONNX Runtime" in stdout
    proto = onnx.load(str(out))
    assert proto.opset_import[0].version == 15
    assert json.loads({p.key: p.value for p in proto.metadata_props}["ood"]) == ood
    x = np.random.default_rng(4).random((2, 10, 12, 3), dtype=np.float32)
    assert np.max(np.abs(run_onnx(out, x) - model.predict(x))) <= TOLERANCE


def test_cli_errors(tmp_path, capsys):
    assert export_main([str(tmp_path / "missing"), str(tmp_path / "m.onnx")]) == 1
    assert "missing: no such model folder" in capsys.readouterr().err
    trained_folder(tmp_path)
    assert export_main([str(tmp_path / "model"), str(tmp_path / "m.onnx"), "--batch", "zero"]) == 2
    assert "--batch: expected 'dynamic' or a positive integer, got 'zero'" in capsys.readouterr().err
    assert export_main([str(tmp_path / "model"), str(tmp_path / "m.onnx"), "--opset", "7"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "opset: expected an integer from 13" in err
    assert not (tmp_path / "m.onnx").exists()
    assert export_main([str(tmp_path / "model"), str(tmp_path / "nowhere" / "m.onnx")]) == 1
    assert f"nowhere/m.onnx: the folder {tmp_path / 'nowhere'} does not exist" in capsys.readouterr().err


def test_keras_model_through_onnx_matches_keras(tmp_path):
    """Both directions against an outside reference: a real Keras file, imported, exported, run by ONNX
    Runtime, gives the probabilities Keras itself predicted."""
    pytest.importorskip("h5py", reason="reading Keras files needs h5py")
    fixtures = Path(__file__).parent / "fixtures" / "keras"
    reference = np.load(fixtures / "reference.npz")
    model = microcnn.load_keras_model(fixtures / "keras3.keras")
    model.export(tmp_path / "keras3.onnx")
    got = run_onnx(tmp_path / "keras3.onnx", reference["x"])
    assert np.max(np.abs(got - reference["keras3"])) <= TOLERANCE


def test_written_file_has_ordinary_permissions(tmp_path):
    model = microcnn.build_model("seed", (8, 8, 1), 2)
    model.export(tmp_path / "m.onnx")
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(tmp_path / "m.onnx").st_mode & 0o777 == 0o666 & ~umask
    assert [p.name for p in tmp_path.iterdir()] == ["m.onnx"]  # no temporary file left


def test_onnx_reference_evaluator_agrees(tmp_path):
    """A second, independent reading of the graph: onnx's own operator-by-operator reference implementation."""
    from onnx.reference import ReferenceEvaluator

    microcnn.set_seed(9)
    model = randomise_batchnorm(odd_model(4, (4, 4), 2, "same", "same"), seed=4)
    model.export(tmp_path / "m.onnx", fold_batchnorm=False)
    x = np.random.default_rng(2).random((2, *model.input_shape[1:]), dtype=np.float32)
    (got,) = ReferenceEvaluator(str(tmp_path / "m.onnx")).run(None, {"input": x})
    assert np.max(np.abs(got - model.predict(x))) <= TOLERANCE
