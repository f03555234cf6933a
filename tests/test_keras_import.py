"""Keras files written by TensorFlow 2.21 (Keras 3.15 and tf_keras 2.21) imported without TensorFlow: the
imported models must reproduce the probabilities Keras itself predicted (tests/fixtures/keras/README.md)."""

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

h5py = pytest.importorskip("h5py", reason="reading Keras files needs h5py (pip install 'microcnn[keras]')")

import microcnn
from microcnn.cli.import_model import main as import_main
from microcnn.cli.predict import main as predict_main
from microcnn.keras_import import KerasImportError, load_keras_model

FIXTURES = Path(__file__).parent / "fixtures" / "keras"
REFERENCE = np.load(FIXTURES / "reference.npz")
TOLERANCE = 1e-5


def assert_reproduces(model, which):
    got = model.predict(REFERENCE["x"], batch_size=16)
    assert np.max(np.abs(got - REFERENCE[which])) <= TOLERANCE


@pytest.mark.parametrize("name, which", [("keras2_modelo.h5", "keras2"), ("keras3.keras", "keras3"),
                                         ("keras3_legacy.h5", "keras3")])
def test_full_model_files(name, which):
    model = load_keras_model(FIXTURES / name)
    assert [type(layer).__name__ for layer in model.layers] == [
        "Conv2D", "MaxPooling2D", "Conv2D", "MaxPooling2D", "Flatten", "Dense", "Dropout", "Dense"]
    assert model.input_shape == (None, 16, 16, 3)
    assert_reproduces(model, which)


@pytest.mark.parametrize("weights, which", [("keras2_pesos.h5", "keras2"), ("keras3.weights.h5", "keras3")])
def test_weights_into_a_preset(weights, which):
    model = load_keras_model(microcnn.build_model("seed", (16, 16, 3), 3), weights=FIXTURES / weights)
    assert_reproduces(model, which)


def test_weights_into_a_keras_architecture(tmp_path):
    with h5py.File(FIXTURES / "keras2_modelo.h5", "r") as f:
        (tmp_path / "keras2.json").write_text(f.attrs["model_config"])
    with zipfile.ZipFile(FIXTURES / "keras3.keras") as z:
        (tmp_path / "keras3.json").write_bytes(z.read("config.json"))
    assert_reproduces(load_keras_model(tmp_path / "keras2.json", weights=FIXTURES / "keras2_pesos.h5"), "keras2")
    assert_reproduces(load_keras_model(tmp_path / "keras3.json", weights=FIXTURES / "keras3.weights.h5"), "keras3")
    # A full model file's weights replaced by another file's: the keras2 weights in the keras3 architecture.
    assert_reproduces(load_keras_model(FIXTURES / "keras3.keras", weights=FIXTURES / "keras2_pesos.h5"), "keras2")
    with pytest.raises(KerasImportError, match="keras2.json: holds only the architecture"):
        load_keras_model(tmp_path / "keras2.json")


def keras2_functional_config(branch=False):
    """The Keras 2 fixture's Sequential rewritten as the Functional config Keras 2 writes for the same chain."""
    with h5py.File(FIXTURES / "keras2_modelo.h5", "r") as f:
        sequential = json.loads(f.attrs["model_config"])["config"]["layers"]
    layers, previous = [], None
    for spec in sequential:
        name = spec["config"]["name"]
        inbound = [] if previous is None else [[[previous, 0, 0, {}]]]
        layers.append({**spec, "name": name, "inbound_nodes": inbound})
        previous = name
    if branch:
        layers[3]["inbound_nodes"] = [[[layers[1]["name"], 0, 0, {}]]]
    return {"class_name": "Functional", "config": {"name": "model", "layers": layers,
                                                   "input_layers": [[layers[0]["name"], 0, 0]],
                                                   "output_layers": [[previous, 0, 0]]}}


def test_functional_chain(tmp_path):
    (tmp_path / "chain.json").write_text(json.dumps(keras2_functional_config()))
    assert_reproduces(load_keras_model(tmp_path / "chain.json", weights=FIXTURES / "keras2_pesos.h5"), "keras2")
    (tmp_path / "branch.json").write_text(json.dumps(keras2_functional_config(branch=True)))
    with pytest.raises(KerasImportError,
                       match=r"layer 'conv2d_1' takes \['conv2d'\], not the layer before it .*one chain of layers"):
        load_keras_model(tmp_path / "branch.json", weights=FIXTURES / "keras2_pesos.h5")


def test_keras3_functional_chain(tmp_path):
    """Keras 3 writes a Functional model's links as keras tensors carrying keras_history."""
    def functional(layers):
        previous = None
        for spec in layers:
            history = [] if previous is None else [{"args": [{"class_name": "__keras_tensor__", "config": {
                "shape": None, "dtype": "float32", "keras_history": [previous, 0, 0]}}], "kwargs": {}}]
            spec["inbound_nodes"] = history
            previous = spec["config"]["name"]

    path = keras3_with(tmp_path, functional)
    with zipfile.ZipFile(path) as z:
        config = json.loads(z.read("config.json"))
    config["class_name"] = "Functional"
    (tmp_path / "functional.json").write_text(json.dumps(config))
    assert_reproduces(load_keras_model(tmp_path / "functional.json", weights=FIXTURES / "keras3.weights.h5"),
                      "keras3")


def keras3_with(tmp_path, edit, edit_weights=None, name="edited.keras"):
    """A copy of the Keras 3 fixture whose config.json went through `edit(layers)` and, when given, whose
    weights file went through `edit_weights(h5py.File)` (opened read-write in memory)."""
    import io

    path = tmp_path / name
    with zipfile.ZipFile(FIXTURES / "keras3.keras") as src, zipfile.ZipFile(path, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename == "config.json":
                config = json.loads(data)
                edit(config["config"]["layers"])
                data = json.dumps(config).encode()
            elif info.filename == "model.weights.h5" and edit_weights is not None:
                buffer = io.BytesIO(data)
                with h5py.File(buffer, "r+") as f:
                    edit_weights(f)
                data = buffer.getvalue()
            dst.writestr(info, data)
    return path


def test_unsupported_layers_and_options_are_named(tmp_path):
    rescaling = {"module": "keras.layers", "class_name": "Rescaling", "config": {"name": "rescaling", "scale": 0.5}}
    path = keras3_with(tmp_path, lambda layers: layers.insert(1, rescaling))
    with pytest.raises(KerasImportError, match=r"edited.keras: layer 'rescaling' \(Rescaling\) is not supported"):
        load_keras_model(path)
    path = keras3_with(tmp_path, lambda layers: layers[-1]["config"].update(activation="sigmoid"))
    with pytest.raises(KerasImportError, match=r"layer 'dense_1' \(Dense\): activation 'sigmoid' is not supported"):
        load_keras_model(path)
    path = keras3_with(tmp_path, lambda layers: layers[1]["config"].update(dilation_rate=[2, 2]))
    with pytest.raises(KerasImportError, match=r"layer 'conv2d' \(Conv2D\): dilation_rate=\[2, 2\] is not supported"):
        load_keras_model(path)


def test_mismatched_weights_are_named():
    with pytest.raises(KerasImportError, match=r"keras2_pesos.h5: layer 'dense_\d+' \(Dense\): the weights at "
                                                r"'dense_1' have shapes \[\(256, 3\), \(3,\)\], this model needs "
                                                r"\[\(256, 4\), \(4,\)\]"):
        load_keras_model(microcnn.build_model("seed", (16, 16, 3), 4), weights=FIXTURES / "keras2_pesos.h5")
    with pytest.raises(KerasImportError, match="holds weights for 4 layers .* this model has 11 layers with weights"):
        load_keras_model(microcnn.build_model("small", (16, 16, 3), 3), weights=FIXTURES / "keras2_pesos.h5")
    with pytest.raises(KerasImportError, match=r"keras3.weights.h5: layer '\w+' \(Conv2D\): the weights at "
                                                r"'layers/conv2d/vars' have shapes \[\(3, 3, 3, 32\), \(32,\)\]"):
        load_keras_model(microcnn.build_model("small", (16, 16, 3), 3), weights=FIXTURES / "keras3.weights.h5")
    with pytest.raises(KerasImportError, match="keras2_pesos.h5: holds only weights"):
        load_keras_model(FIXTURES / "keras2_pesos.h5")


def save_images(directory, x):
    directory.mkdir()
    for i, image in enumerate(x):
        Image.fromarray(np.round(image * 255).astype(np.uint8)).save(directory / f"img{i:02d}.png")
    return np.round(x * 255).astype(np.float32) / np.float32(255)


def test_cli_import_then_predict(tmp_path, capsys):
    out = tmp_path / "model"
    assert import_main([str(FIXTURES / "keras2_modelo.h5"), "--classes", "ant,bee,cat", "--out", str(out)]) == 0
    stdout = capsys.readouterr().out
    assert "Keras 2.21.0 HDF5 full model" in stdout and "classes ant, bee, cat; images 16x16 RGB" in stdout
    x = save_images(tmp_path / "images", REFERENCE["x"][:4])
    assert predict_main([str(tmp_path / "images"), "--model", str(out), "--format", "json"]) == 0
    results = json.loads(capsys.readouterr().out)
    expected = load_keras_model(FIXTURES / "keras2_modelo.h5").predict(x)
    for result, p in zip(results, expected):
        assert result["class"] == ["ant", "bee", "cat"][int(np.argmax(p))]
        assert abs(result["probability"] - float(np.max(p))) <= TOLERANCE
    meta = microcnn.load_model(out).metadata
    assert meta["preprocessing"]["image_size"] == [16, 16] and meta["preprocessing"]["channels"] == 3


def test_cli_weights_with_a_preset_and_rescale(tmp_path, capsys):
    out = tmp_path / "model"
    assert import_main([str(FIXTURES / "keras3.weights.h5"), "--arch", "seed", "--image-size", "16x16",
                        "--classes", "a,b,c", "--out", str(out)]) == 0
    assert_reproduces(microcnn.load_model(out), "keras3")
    # A Keras model fed raw 0-255 pixels (rescale 1): the folder takes pixel / 255 and predicts the same.
    assert import_main([str(FIXTURES / "keras3.keras"), "--classes", "a,b,c", "--out", str(tmp_path / "raw"),
                        "--rescale", "1"]) == 0
    assert "Input scale 1 folded into layer 'conv2d'" in capsys.readouterr().out
    x = REFERENCE["x"]
    raw = load_keras_model(FIXTURES / "keras3.keras").predict(x * np.float32(255))
    assert np.max(np.abs(microcnn.load_model(tmp_path / "raw").predict(x) - raw)) <= 1e-4


def test_cli_errors(tmp_path, capsys):
    def fails(*argv):
        status = import_main([*argv, "--out", str(tmp_path / "m")])
        err = capsys.readouterr().err
        assert err.count("\n") == 1, err
        return status, err

    status, err = fails(str(FIXTURES / "keras2_modelo.h5"), "--classes", "a,b")
    assert status == 1 and "the model has 3 outputs" in err and "got 2 class names" in err
    status, err = fails(str(FIXTURES / "keras2_pesos.h5"), "--classes", "a,b,c")
    assert status == 1 and "keras2_pesos.h5: holds only weights" in err and "--arch PRESET" in err
    status, err = fails(str(FIXTURES / "keras2_pesos.h5"), "--classes", "a,b,c", "--arch", "seed")
    assert status == 2 and "needs --image-size" in err
    status, err = fails(str(FIXTURES / "keras3.keras"), "--classes", "a,b,c", "--rescale", "-1")
    assert status == 2 and "--rescale: expected a positive number" in err
    status, err = fails(str(FIXTURES / "keras2_modelo.h5"), "--classes", "a,b,c", "--image-size", "32x32")
    assert status == 1 and "layer 'dense' (Dense): the weights at 'dense' have shapes [(1024, 256)" in err
    assert "this model needs [(4096, 256), (256,)]" in err
    (tmp_path / "half.h5").write_bytes((FIXTURES / "keras2_modelo.h5").read_bytes()[:100000])
    status, err = fails(str(tmp_path / "half.h5"), "--classes", "a,b,c")
    assert status == 1 and f"{tmp_path / 'half.h5'}: cannot read it (Unable to" in err
    status, err = fails(str(tmp_path / "nothing.h5"), "--classes", "a,b,c")
    assert status == 1 and "nothing.h5: no such file" in err
    assert not (tmp_path / "m").exists()


def test_damaged_and_foreign_files_are_named(tmp_path):
    data = (FIXTURES / "keras2_modelo.h5").read_bytes()
    cases = {
        "truncated.h5": data[:len(data) // 2],
        "random.h5": np.random.default_rng(0).bytes(4096),
        "empty.h5": b"",
        "list.json": b"[1, 2, 3]",
        "notes.keras": b"PK\x03\x04 not really a zip",
    }
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(KerasImportError, match=f"^{tmp_path / name}: "):
            load_keras_model(tmp_path / name)
    with zipfile.ZipFile(tmp_path / "bare.keras", "w") as z:
        z.writestr("config.json", "{}")
    with pytest.raises(KerasImportError, match="bare.keras: not a Keras 3 .keras file"):
        load_keras_model(tmp_path / "bare.keras")
    path = keras3_with(tmp_path, lambda layers: layers[1]["config"].pop("filters"))
    with pytest.raises(KerasImportError, match=r"layer 'conv2d' \(Conv2D\): malformed config \(KeyError: 'filters'\)"):
        load_keras_model(path)
    with pytest.raises(KerasImportError, match="truncated.h5: "):
        load_keras_model(microcnn.build_model("seed", (16, 16, 3), 3), weights=tmp_path / "truncated.h5")
    with pytest.raises(FileNotFoundError, match="missing.h5: no such file"):
        load_keras_model(microcnn.build_model("seed", (16, 16, 3), 3), weights=tmp_path / "missing.h5")


def write_keras_weights(model, path, keras3):
    """Weights laid out as Keras writes them (Keras 3: layers/<class>_<n>/vars/<i>; Keras 2: layer_names and
    weight_names), for architectures the real fixtures do not cover (batch norm, global pooling, no bias)."""
    counts = {}
    with h5py.File(path, "w") as f:
        if not keras3:
            f.attrs["layer_names"] = [layer.name.encode() for layer in model.layers]
            f.attrs["keras_version"] = b"2.21.0"
        for layer in model.layers:
            kind = {"Conv2D": "conv2d", "BatchNormalization": "batch_normalization", "Dense": "dense"}.get(
                type(layer).__name__, type(layer).__name__.lower())
            n = counts[kind] = counts.get(kind, -1) + 1
            if keras3:
                group = f.create_group(f"layers/{kind if n == 0 else f'{kind}_{n}'}/vars")
                for i, value in enumerate(layer.get_weights()):
                    group[str(i)] = value
            else:
                group = f.create_group(layer.name)
                names = [f"{layer.name}/{w}:0" for w in layer.weight_names]
                group.attrs["weight_names"] = [name.encode() for name in names]
                for name, value in zip(names, layer.get_weights()):
                    group[name] = value


@pytest.mark.parametrize("keras3", [True, False])
def test_batchnorm_preset_weights_round_trip(keras3, tmp_path):
    microcnn.set_seed(4)
    source = microcnn.build_model("small", (12, 12, 1), 3)
    rng = np.random.default_rng(1)
    source.set_weights([rng.normal(0.5, 0.2, w.shape).astype(np.float32) for w in source.get_weights()])
    write_keras_weights(source, tmp_path / "w.h5", keras3)
    target = load_keras_model(microcnn.build_model("small", (12, 12, 1), 3), weights=tmp_path / "w.h5")
    for a, b in zip(source.get_weights(), target.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_binary_sigmoid_output_becomes_two_class_softmax(tmp_path):
    """Keras binary classifiers end in Dense(1, sigmoid): imported as Dense(2, softmax) with logits (0, z),
    whose second probability is sigmoid(z) exactly."""
    kept = {}

    def one_unit(f):
        group = f["layers/dense_1/vars"]
        kept["kernel"], kept["bias"] = group["0"][:, :1], group["1"][:1]
        del group["0"], group["1"]
        group["0"], group["1"] = kept["kernel"], kept["bias"]

    path = keras3_with(tmp_path, lambda layers: layers[-1]["config"].update(units=1, activation="sigmoid"),
                       one_unit, "binary.keras")
    kernel, bias = kept["kernel"], kept["bias"]
    model = load_keras_model(path)
    assert model.output_shape == (None, 2) and model.layers[-1].activation == "softmax"
    features = load_keras_model(FIXTURES / "keras3.keras")
    features.pop()
    z = features.predict(REFERENCE["x"]) @ kernel.astype(np.float64) + bias
    p = model.predict(REFERENCE["x"])
    np.testing.assert_allclose(p[:, 1], 1 / (1 + np.exp(-z[:, 0])), atol=1e-6)
    np.testing.assert_allclose(p.sum(axis=1), 1, atol=1e-6)


def test_global_pooling_model_at_another_image_size(tmp_path):
    """A model without Flatten takes any image size: --image-size / input_shape rebuilds it at that size."""

    def gap(layers):
        assert layers[5]["class_name"] == "Flatten"
        layers[5].update(class_name="GlobalAveragePooling2D")

    def first_channels(f):
        kernel = f["layers/dense/vars/0"][:64]
        del f["layers/dense/vars/0"], f["layers/flatten"]
        f["layers/dense/vars/0"] = kernel
        f.create_group("layers/global_average_pooling2d/vars")

    path = keras3_with(tmp_path, gap, first_channels, "gap.keras")
    small = load_keras_model(path)
    large = load_keras_model(path, input_shape=(40, 24))
    assert small.input_shape == (None, 16, 16, 3) and large.input_shape == (None, 40, 24, 3)
    for a, b in zip(small.get_weights(), large.get_weights()):
        np.testing.assert_array_equal(a, b)
    x = np.random.default_rng(0).random((2, 40, 24, 3), dtype=np.float32)
    assert large.predict(x).shape == (2, 3)
