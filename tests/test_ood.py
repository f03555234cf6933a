"""The open-set detector (microcnn/ood.py) through the model API: calibration, rejection of noise, storage."""

import json

import numpy as np
import pytest

import microcnn
from microcnn import ood
from microcnn.layers import Conv2D, Dense, Flatten, Input, MaxPooling2D


def stripes(n, rng):
    """3 classes of 8x8 images: horizontal stripes, vertical stripes, a bright centre; plus mild noise."""
    y = rng.integers(0, 3, n)
    x = np.zeros((n, 8, 8, 1), np.float32)
    x[y == 0, ::2, :, 0] = 1.0
    x[y == 1, :, ::2, 0] = 1.0
    x[y == 2, 2:6, 2:6, 0] = 1.0
    x += rng.normal(0.0, 0.1, x.shape).astype(np.float32)
    return np.clip(x, 0.0, 1.0), y.astype(np.int32)


@pytest.fixture(scope="module")
def trained():
    microcnn.set_seed(1)
    rng = np.random.default_rng(0)
    model = microcnn.Sequential([Input((8, 8, 1)), Conv2D(8, (3, 3), padding="same", activation="relu"),
                                 MaxPooling2D((2, 2)), Flatten(), Dense(16, activation="relu"),
                                 Dense(3, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    x, y = stripes(600, rng)
    model.fit(x, y, epochs=4, batch_size=32, verbose=0)
    x_val, _ = stripes(1000, rng)
    x_test, y_test = stripes(1000, rng)
    return model, (x, y), x_val, (x_test, y_test)


def test_auroc_and_fpr_match_scikit_learn():
    metrics = pytest.importorskip("sklearn.metrics", reason="scikit-learn is the AUROC reference")
    rng = np.random.default_rng(0)
    known, unknown = rng.normal(1.0, 1.0, 300), rng.normal(0.0, 1.0, 200)
    unknown[:50] = np.round(unknown[:50], 1)  # ties
    known[:50] = np.round(known[:50], 1)
    labels = np.r_[np.ones(300), np.zeros(200)]
    scores = np.r_[known, unknown]
    assert ood.auroc(known, unknown) == pytest.approx(metrics.roc_auc_score(labels, scores), abs=1e-12)
    fpr, tpr, _ = metrics.roc_curve(labels, scores, drop_intermediate=False)
    assert ood.fpr_at_tpr(known, unknown) == pytest.approx(fpr[np.searchsorted(tpr, 0.95)], abs=1e-12)


@pytest.mark.parametrize("method", ood.METHODS)
def test_calibration_holds_on_held_out_known_data_and_noise_is_rejected(trained, method):
    model, (x, y), x_val, (x_test, _) = trained
    detector = model.fit_ood(x, y, validation_data=x_val, method=method, accept=0.9)
    assert detector.method == method and model.ood is detector
    probs, scores, known = model.predict_ood(x_test)
    np.testing.assert_allclose(probs, model.predict(x_test), rtol=1e-6, atol=1e-7)  # same forward pass
    assert abs(known.mean() - 0.9) < 0.05  # 1000 validation + 1000 test images: sd of the gap ~0.013
    assert known.sum() == (scores >= detector.threshold).sum()
    assert model.predict_ood(x_test, accept=0.5)[2].mean() == pytest.approx(0.5, abs=0.06)
    noise = np.random.default_rng(5).random((200, 8, 8, 1), dtype=np.float32)
    if method in ("mahalanobis-l2", "mahalanobis", "knn"):  # the feature-space methods: the project's choice
        assert model.predict_ood(noise)[2].mean() < 0.05
    assert model.ood_score(noise).mean() < scores.mean()


def test_features_are_the_input_of_the_final_dense_layer(trained):
    model, (x, _), _, _ = trained
    outputs, features = model.predict_with_features(x[:50], batch_size=16)
    hidden = model.layers[-1]
    assert features.shape == (50, 16) and np.all(features >= 0)  # after Dense(16, relu)
    np.testing.assert_allclose(outputs, hidden.forward(features), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(model.features(x[:50], batch_size=50), features)


def test_detector_survives_save_and_load(trained, tmp_path):
    model, (x, y), x_val, (x_test, _) = trained
    model.fit_ood(x, y, validation_data=x_val, accept=0.95)
    model.save(tmp_path / "m")
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["ood"]["method"] == ood.DEFAULT_METHOD and config["ood"]["file"] == "ood.safetensors"
    assert "ood.safetensors" in config["files"] and len(config["ood"]["quantiles"]) == 201
    loaded = microcnn.load_model(tmp_path / "m")
    assert loaded.ood.threshold == pytest.approx(model.ood.threshold)
    np.testing.assert_allclose(loaded.ood_score(x_test), model.ood_score(x_test), rtol=1e-6)
    # a later save of a model without a detector removes the stale file
    loaded.ood = None
    loaded.save(tmp_path / "m")
    assert not (tmp_path / "m" / "ood.safetensors").exists() and microcnn.load_model(tmp_path / "m").ood is None


def test_tampered_or_missing_detector_file_is_refused_naming_it(trained, tmp_path):
    model, (x, y), x_val, _ = trained
    model.fit_ood(x, y, validation_data=x_val, method="knn")
    path = tmp_path / "m" / "ood.safetensors"
    model.save(tmp_path / "m")
    data = bytearray(path.read_bytes())
    path.write_bytes(bytes(data[:len(data) // 2]))  # truncated
    with pytest.raises(ValueError, match="ood.safetensors"):
        microcnn.load_model(tmp_path / "m")
    from safetensors.numpy import save

    header_meta = {"format": "microcnn.model", "content": "ood", "save_id": "another-save"}
    path.write_bytes(save({"bank": model.ood.tensors["bank"]}, metadata=header_meta))  # from another save
    with pytest.raises(ValueError, match="ood.safetensors.*different save"):
        microcnn.load_model(tmp_path / "m")
    save_id = json.loads((tmp_path / "m" / "config.json").read_text())["save_id"]
    bank = model.ood.tensors["bank"].copy()
    bank[0, 0] = np.nan
    path.write_bytes(save({"bank": bank}, metadata={**header_meta, "save_id": save_id}))  # edited values
    with pytest.raises(ValueError, match="ood.safetensors.*non-finite"):
        microcnn.load_model(tmp_path / "m")
    bank = model.ood.tensors["bank"].copy()
    bank[0, 0] += 0.25
    path.write_bytes(save({"bank": bank}, metadata={**header_meta, "save_id": save_id}))  # a value edited
    with pytest.raises(ValueError, match="ood.safetensors.*SHA-256"):
        microcnn.load_model(tmp_path / "m")
    path.unlink()
    with pytest.raises(FileNotFoundError, match="ood.safetensors"):
        microcnn.load_model(tmp_path / "m")


def test_edited_detector_settings_are_refused_naming_config(trained, tmp_path):
    model, (x, y), x_val, _ = trained
    model.fit_ood(x, y, validation_data=x_val)
    model.save(tmp_path / "m")
    config_path = tmp_path / "m" / "config.json"
    config = json.loads(config_path.read_text())
    config["ood"]["quantiles"] = config["ood"]["quantiles"][::-1]
    config_path.write_text(json.dumps(config))
    with pytest.raises(ValueError, match="config.json.*non-decreasing"):
        microcnn.load_model(tmp_path / "m")
    del config["ood"]
    config_path.write_text(json.dumps(config))
    with pytest.raises(ValueError, match="config.json"):  # the file list still names the detector file
        microcnn.load_model(tmp_path / "m")


def test_a_model_saved_without_a_detector_still_loads_and_predicts(trained, tmp_path):
    model, _, _, (x_test, _) = trained
    model.ood = None
    model.save(tmp_path / "old")
    config = json.loads((tmp_path / "old" / "config.json").read_text())
    assert "ood" not in config and config["files"] == ["weights.safetensors", "optimizer.safetensors"]
    loaded = microcnn.load_model(tmp_path / "old")
    assert loaded.ood is None
    np.testing.assert_array_equal(loaded.predict(x_test), model.predict(x_test))
    with pytest.raises(RuntimeError, match="fit_ood"):
        loaded.predict_ood(x_test)


def test_training_again_drops_the_detector_of_the_old_weights(trained):
    model, (x, y), x_val, _ = trained
    model.fit_ood(x, y, validation_data=x_val)
    model.fit(x[:64], y[:64], epochs=1, verbose=0)
    assert model.ood is None


def test_wide_features_are_sketched_and_threshold_is_monotone(monkeypatch):
    monkeypatch.setattr(ood, "MAX_DIRECT_DIM", 200)  # the rule at a size a test can afford
    monkeypatch.setattr(ood, "SKETCH_DIM", 64)
    rng = np.random.default_rng(0)
    features = rng.random((300, 3000), dtype=np.float32)
    labels = rng.integers(0, 2, 300)
    logits = rng.normal(size=(300, 2)).astype(np.float32)
    detector = ood.OODDetector("mahalanobis").fit(features, logits, labels)
    assert detector.sketch_dim == 64 and detector.tensors["whiten"].shape == (64, 64)
    held_out = rng.random((500, 3000), dtype=np.float32)
    detector.calibrate(detector.score(held_out, logits[:1].repeat(500, 0)), accept=0.8)
    shifted = held_out * 3.0
    assert detector.is_known(detector.score(shifted, logits[:1].repeat(500, 0))).mean() < 0.05
    thresholds = [detector.threshold_for(a) for a in (0.5, 0.8, 0.9, 0.99)]
    assert thresholds == sorted(thresholds, reverse=True)
    with pytest.raises(ValueError, match="accept"):
        detector.threshold_for(1.5)
