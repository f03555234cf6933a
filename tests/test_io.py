"""Model directories: round trip, resume, validation of tampered files, atomic saves."""

import json
import os

import numpy as np
import pytest
from _nets import blobs, tiny_network
from safetensors import safe_open
from safetensors.numpy import load_file, save_file

import microcnn
from microcnn import layers, modelfile, optimizers


def trained(seed=0, optimizer="adam", steps=2):
    microcnn.set_seed(seed)
    model = tiny_network(dropout=0.25)
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    x, y = blobs(16, seed=seed)
    for i in range(steps):
        model.train_on_batch(x[i * 8:(i + 1) * 8], y[i * 8:(i + 1) * 8])
    return model


def test_round_trip(tmp_path):
    model = trained()
    meta = {"class_names": ["a", "b", "c"], "preprocessing": {"rescale": 1 / 255, "size": [8, 8]}}
    model.save(tmp_path / "m", metadata=meta)
    assert sorted(os.listdir(tmp_path / "m")) == ["config.json", "optimizer.safetensors", "weights.safetensors"]
    assert model.metadata == meta
    names = list(load_file(tmp_path / "m" / "weights.safetensors"))
    first = model.layers[0].name
    assert f"layers.0.{first}.kernel" in names and f"layers.0.{first}.bias" in names
    assert set(names) == set(model.named_weights())

    loaded = microcnn.load_model(tmp_path / "m")
    x, _ = blobs(5, seed=9)
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
    assert loaded.metadata == meta and loaded.name == model.name
    assert [type(layer) for layer in loaded.layers] == [type(layer) for layer in model.layers]
    assert [layer.get_config() for layer in loaded.layers] == [layer.get_config() for layer in model.layers]
    assert loaded.optimizer.get_config() == model.optimizer.get_config() and loaded.optimizer.iterations == 2
    assert loaded.metrics_names == ["loss", "accuracy"] and loaded.loss.name == "sparse_categorical_crossentropy"
    assert not microcnn.load_model(tmp_path / "m", compile=False).compiled


@pytest.mark.parametrize("optimizer", [optimizers.Adam(3e-3), optimizers.SGD(0.05, momentum=0.9, nesterov=True)])
def test_resume_continues_exactly(tmp_path, optimizer):
    config = optimizers.serialize(optimizer)
    x, y = blobs(16, seed=3)  # the data trained() used
    continuous = trained(seed=3, optimizer=optimizers.deserialize(config), steps=2)
    resumed = trained(seed=3, optimizer=optimizers.deserialize(config), steps=1)
    resumed.save(tmp_path / "m")
    microcnn.set_seed(99)  # the restored dropout counter, not the global generator, decides the next mask
    resumed = microcnn.load_model(tmp_path / "m")
    resumed.train_on_batch(x[8:], y[8:])
    assert all(np.array_equal(u, v) for u, v in zip(resumed.get_weights(), continuous.get_weights()))


def test_learning_rate_schedule_round_trips(tmp_path):
    from microcnn import schedules

    model = trained(optimizer=optimizers.Adam(schedules.CosineDecay(0.01, decay_steps=50)))
    model.save(tmp_path / "m")
    loaded = microcnn.load_model(tmp_path / "m")
    assert type(loaded.optimizer.learning_rate) is schedules.CosineDecay
    assert loaded.optimizer.get_config() == model.optimizer.get_config()
    assert loaded.optimizer.current_learning_rate() == model.optimizer.current_learning_rate() < 0.01


def test_without_optimizer_and_overwrite(tmp_path):
    model = trained()
    model.save(tmp_path / "m")
    (tmp_path / "m" / "history.csv").write_text("epoch,loss\n")  # a file of the user's, kept
    model.save(tmp_path / "m", include_optimizer=False)
    assert sorted(os.listdir(tmp_path / "m")) == ["config.json", "history.csv", "weights.safetensors"]
    loaded = microcnn.load_model(tmp_path / "m")
    assert loaded.compiled and loaded.optimizer.iterations == 0
    with pytest.raises(FileExistsError, match="overwrite"):
        model.save(tmp_path / "m", overwrite=False)


def test_metadata_must_be_json(tmp_path):
    model = trained()
    with pytest.raises(TypeError, match="metadata"):
        model.save(tmp_path / "m", metadata={"x": np.zeros(2)})
    with pytest.raises(TypeError, match="metadata"):
        model.save(tmp_path / "m", metadata={"x": float("nan")})
    assert not os.path.exists(tmp_path / "m" / "config.json")


def _edit_config(path, edit):
    config = json.loads((path / "config.json").read_text())
    edit(config)
    (path / "config.json").write_text(json.dumps(config))


def _rewrite_weights(path, edit):
    tensors = load_file(path / "weights.safetensors")
    with safe_open(path / "weights.safetensors", framework="np") as f:
        metadata = f.metadata()
    edit(tensors)
    save_file(tensors, path / "weights.safetensors", metadata=metadata)


def _truncate(path, name, keep=0.5):
    data = (path / name).read_bytes()
    (path / name).write_bytes(data[:int(len(data) * keep)])


TAMPERING = {
    "missing config": (lambda p: os.remove(p / "config.json"), FileNotFoundError, "config.json"),
    "missing weights": (lambda p: os.remove(p / "weights.safetensors"), FileNotFoundError, "weights.safetensors"),
    "missing optimizer": (lambda p: os.remove(p / "optimizer.safetensors"), FileNotFoundError, "optimizer.safetensors"),
    "bad json": (lambda p: (p / "config.json").write_text("{'not': json"), ValueError, "config.json.*JSON"),
    "not an object": (lambda p: (p / "config.json").write_text("[1, 2]"), ValueError, "config.json"),
    "wrong format": (lambda p: _edit_config(p, lambda c: c.update(format="keras")), ValueError, "config.json.*format"),
    "newer version": (lambda p: _edit_config(p, lambda c: c.update(format_version=99)), ValueError,
                      "config.json.*newer"),
    "unknown layer": (lambda p: _edit_config(p, lambda c: c["model"]["config"]["layers"][1].update(class_name="Magic")),
                      ValueError, "config.json.*layer 1.*Magic"),
    "bad layer value": (lambda p: _edit_config(p, lambda c: c["model"]["config"]["layers"][0]["config"].update(filters=-3)),
                        ValueError, "config.json.*layer 0.*filters"),
    "unknown argument": (lambda p: _edit_config(p, lambda c: c["model"]["config"]["layers"][0]["config"].update(evil=1)),
                         ValueError, "config.json.*layer 0.*evil"),
    "bad input shape": (lambda p: _edit_config(p, lambda c: c["model"]["config"].update(input_shape=[8, "8", 2])),
                        ValueError, "config.json.*input_shape"),
    "bad optimizer": (lambda p: _edit_config(p, lambda c: c["compile"]["optimizer"].update(class_name="RMSprop")),
                      ValueError, "config.json.*optimizer"),
    "shape mismatch": (lambda p: _edit_config(p, lambda c: c["model"]["config"]["layers"][6]["config"].update(units=7)),
                       ValueError, "weights.safetensors.*shape"),
    "truncated weights": (lambda p: _truncate(p, "weights.safetensors"), ValueError, "weights.safetensors.*truncated"),
    "tiny weights": (lambda p: _truncate(p, "weights.safetensors", 0.0005), ValueError, "weights.safetensors"),
    "garbage weights": (lambda p: (p / "weights.safetensors").write_bytes(b"\x10" + b"\x00" * 7 + b"not json!" * 3),
                        ValueError, "weights.safetensors"),
    "missing tensor": (lambda p: _rewrite_weights(p, lambda t: t.pop(min(t))),
                       ValueError, "weights.safetensors.*missing"),
    "extra tensor": (lambda p: _rewrite_weights(p, lambda t: t.update(extra=np.zeros(3, np.float32))), ValueError,
                     "weights.safetensors.*unexpected.*extra"),
    "wrong dtype": (lambda p: _rewrite_weights(p, lambda t: t.update({k: v.astype(np.float64) for k, v in t.items()})),
                    ValueError, "weights.safetensors.*dtype"),
    "truncated optimizer": (lambda p: _truncate(p, "optimizer.safetensors", 0.9), ValueError, "optimizer.safetensors"),
}


@pytest.mark.parametrize("case", list(TAMPERING))
def test_tampered_directories_are_refused(tmp_path, case):
    tamper, error, pattern = TAMPERING[case]
    path = tmp_path / "m"
    trained().save(path)
    tamper(path)
    with pytest.raises(error, match=pattern):
        microcnn.load_model(path)


def test_files_from_two_saves_are_refused(tmp_path):
    trained(seed=1).save(tmp_path / "a")
    trained(seed=2).save(tmp_path / "b")
    os.replace(tmp_path / "b" / "weights.safetensors", tmp_path / "a" / "weights.safetensors")
    with pytest.raises(ValueError, match="weights.safetensors.*different save"):
        microcnn.load_model(tmp_path / "a")


def test_missing_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        microcnn.load_model(tmp_path / "nowhere")
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError, match="file"):
        microcnn.load_model(tmp_path / "file")


def _same_predictions(a, b):
    x, _ = blobs(4, seed=5)
    return np.array_equal(a.predict(x), b.predict(x))


def _fails_at_second_call(real, message, half_written=False):
    """`real(path, ...)` that raises OSError(message) at its second call, after writing half the data."""
    calls = []

    def wrapper(*args):
        calls.append(args)
        if len(calls) == 2:
            if half_written:
                real(args[0], args[1][: len(args[1]) // 2])
            raise OSError(message)
        return real(*args)

    return wrapper


def test_crash_before_commit_keeps_the_previous_model(tmp_path, monkeypatch):
    path = tmp_path / "m"
    old, new = trained(seed=1), trained(seed=2)
    old.save(path)
    monkeypatch.setattr(modelfile, "write_synced", _fails_at_second_call(modelfile.write_synced, "disk full",
                                                                         half_written=True))
    with pytest.raises(OSError, match="disk full"):
        new.save(path)
    monkeypatch.undo()
    assert _same_predictions(microcnn.load_model(path), old)
    assert sorted(os.listdir(path)) == ["config.json", "optimizer.safetensors", "weights.safetensors"]


def test_crash_while_moving_files_into_place_gives_the_new_model(tmp_path, monkeypatch):
    path = tmp_path / "m"
    old, new, newest = trained(seed=1), trained(seed=2), trained(seed=3)
    old.save(path)
    monkeypatch.setattr(modelfile.os, "replace", _fails_at_second_call(os.replace, "power cut"))
    with pytest.raises(OSError, match="power cut"):
        new.save(path)
    monkeypatch.undo()
    assert os.path.isdir(path / modelfile.PENDING)  # committed, half moved: the weights file is already the new one
    assert _same_predictions(microcnn.load_model(path), new)
    newest.save(path)  # finishes the interrupted save first, then writes its own
    assert _same_predictions(microcnn.load_model(path), newest)
    assert sorted(os.listdir(path)) == ["config.json", "optimizer.safetensors", "weights.safetensors"]


def test_a_dead_staging_directory_is_ignored_then_removed(tmp_path):
    path = tmp_path / "m"
    model = trained()
    model.save(path)
    stale = path / f"{modelfile.STAGING_PREFIX}{2**22 + 12345}-junk"
    stale.mkdir()
    (stale / "config.json").write_text("{ half")
    assert _same_predictions(microcnn.load_model(path), model)
    model.save(path)
    assert not stale.exists()


def test_input_layer_config_kept(tmp_path):
    model = microcnn.Sequential([layers.Input((3,)), layers.Dense(2, kernel_initializer="he_normal")])
    model.save(tmp_path / "m", include_optimizer=True)  # not compiled: no optimizer file
    loaded = microcnn.load_model(tmp_path / "m")
    assert loaded.input_shape == (None, 3) and not loaded.compiled
    assert not os.path.exists(tmp_path / "m" / "optimizer.safetensors")


def test_save_weights_and_load_weights(tmp_path):
    model = trained(seed=1)
    model.save_weights(tmp_path / "w.safetensors")
    other = trained(seed=2)
    assert not _same_predictions(other, model)
    other.load_weights(tmp_path / "w.safetensors")
    assert _same_predictions(other, model)
    model.save(tmp_path / "m")
    third = trained(seed=3)
    third.load_weights(tmp_path / "m")  # a model directory works too
    assert _same_predictions(third, model)
    assert sorted(os.listdir(tmp_path)) == ["m", "w.safetensors"]  # no temporary file left
    with pytest.raises(FileExistsError):
        model.save_weights(tmp_path / "w.safetensors", overwrite=False)
    smaller = microcnn.Sequential([layers.Input((8, 8, 2)), layers.Flatten(), layers.Dense(3)])
    with pytest.raises(ValueError, match="w.safetensors.*missing"):
        smaller.load_weights(tmp_path / "w.safetensors")


def test_keras_2_generator_names(tmp_path):
    x, y = blobs(16)
    model = tiny_network()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    batches = [(x[:8], y[:8]), (x[8:], y[8:])]
    history = model.fit_generator(batches, steps_per_epoch=2, epochs=2, verbose=0, validation_data=batches)
    assert len(history.history["val_loss"]) == 2
    assert model.evaluate_generator(batches) == pytest.approx(model.evaluate(x, y, batch_size=8))
    np.testing.assert_array_equal(model.predict_generator([x[:8], x[8:]]), model.predict(x, batch_size=8))


def test_loading_draws_nothing_from_the_global_generator(tmp_path):
    trained().save(tmp_path / "m")
    microcnn.set_seed(5)
    expected = microcnn.initializers.get("glorot_uniform")((3, 4))
    microcnn.set_seed(5)
    microcnn.load_model(tmp_path / "m")
    np.testing.assert_array_equal(microcnn.initializers.get("glorot_uniform")((3, 4)), expected)
