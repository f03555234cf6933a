"""The "multilayer" open-set detector (microcnn/ood.py, microcnn/_ood_layers.py): images that resemble nothing
the network was trained on -- noise, flat, colour-inverted -- are called unknown, known ones accepted."""

import os

import numpy as np
import pytest

import microcnn
from microcnn import _ood_layers, ood
from microcnn.data import FolderDataset
from microcnn.layers import Conv2D, Dense, Flatten, Input, MaxPooling2D

DATASET = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "dataset")


@pytest.fixture(scope="module")
def bundled():
    """A small network trained briefly on the bundled 3-class Fashion-MNIST sample (360 training images)."""
    microcnn.set_seed(3)
    ds = FolderDataset(DATASET, image_size=(28, 28))
    x, x_val = ds.x_train.astype(np.float32) / 255.0, ds.x_val.astype(np.float32) / 255.0
    model = microcnn.Sequential([Input((28, 28, 1)), Conv2D(8, (3, 3), activation="relu"), MaxPooling2D((2, 2)),
                                 Conv2D(16, (3, 3), activation="relu"), MaxPooling2D((2, 2)), Flatten(),
                                 Dense(32, activation="relu"), Dense(3, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, ds.y_train, epochs=6, batch_size=32, verbose=0)
    return model, (x, ds.y_train), (x_val, ds.y_val)


def unknown_sets(n=200):
    rng = np.random.default_rng(0)
    return {"uniform noise": rng.random((n, 28, 28, 1), dtype=np.float32),
            "gaussian noise": np.clip(0.5 + 0.2 * rng.standard_normal((n, 28, 28, 1)), 0, 1).astype(np.float32),
            "flat": np.broadcast_to(rng.random((n, 1, 1, 1), dtype=np.float32), (n, 28, 28, 1)).copy()}


def test_noise_flat_and_inverted_images_are_unknown_and_known_ones_accepted(bundled):
    model, (x, y), (x_val, _) = bundled
    half = len(x_val) // 2  # calibrate on one half of the validation images, check on the other
    detector = model.fit_ood(x, y, validation_data=x_val[:half], method="multilayer", accept=0.95)
    assert detector.method == "multilayer" and len(detector.layer_dims) == 2  # two convolution blocks
    probs, _, known = model.predict_ood(x_val[half:])
    np.testing.assert_allclose(probs, model.predict(x_val[half:]), rtol=1e-6, atol=1e-7)  # same forward pass
    assert 0.85 <= known.mean() <= 1.0  # ~90 held-out images: the fraction has a standard deviation ~0.03
    for name, images in {**unknown_sets(), "inverted": 1.0 - x_val}.items():
        assert model.predict_ood(images)[2].mean() <= 0.1, name


def test_multilayer_detector_round_trips_through_the_model_file(bundled, tmp_path):
    model, (x, y), (x_val, _) = bundled
    model.fit_ood(x, y, validation_data=x_val, method="multilayer")
    noise = unknown_sets(20)["uniform noise"]
    model.save(tmp_path / "m")
    loaded = microcnn.load_model(tmp_path / "m")
    assert loaded.ood.method == "multilayer" and loaded.ood.layer_dims == model.ood.layer_dims
    np.testing.assert_allclose(loaded.ood_score(noise), model.ood_score(noise), rtol=1e-6)


def test_ledoit_wolf_intensity_matches_scikit_learn():
    covariance = pytest.importorskip("sklearn.covariance", reason="scikit-learn is the Ledoit-Wolf reference")
    rng = np.random.default_rng(1)
    x = rng.standard_normal((60, 20)) @ rng.standard_normal((20, 20))
    x -= x.mean(axis=0)
    _, expected = covariance.ledoit_wolf(x, assume_centered=True)
    assert _ood_layers.ledoit_wolf(x) == pytest.approx(expected, rel=1e-4)
    assert ood.METHODS[0] == "multilayer"
