"""Architecture presets: registry, parameter counts from the layer formulas, any input size, one training step."""

import numpy as np
import pytest

import microcnn
from microcnn.layers import BatchNormalization, Conv2D, Dense, GlobalAveragePooling2D
from microcnn.presets import available_presets, build_model


def expected_small_params(channels, classes):
    """Conv 3x3 without bias + BatchNormalization (4 per channel) for 32, 64, 64, 128, 128 filters; Dense head."""
    total, cin = 0, channels
    for filters in (32, 64, 64, 128, 128):
        total += 3 * 3 * cin * filters + 4 * filters
        cin = filters
    return total + 128 * classes + classes


def test_registry_lists_seed_and_small():
    presets = available_presets()
    assert {"seed", "small"} <= set(presets)
    assert all(isinstance(d, str) and d for d in presets.values())
    with pytest.raises(ValueError, match="arch"):
        build_model("huge", (28, 28, 1), 10)


@pytest.mark.parametrize("shape, classes", [((28, 28, 1), 10), ((150, 150, 3), 3), ((30, 22, 3), 2)])
def test_small_parameter_count_and_any_input_size(shape, classes):
    model = build_model("small", shape, classes)
    assert model.count_params() == expected_small_params(shape[-1], classes)
    assert model.output_shape == (None, classes)
    # Global average pooling: the parameter count does not grow with the image.
    kinds = [type(layer) for layer in model.layers]
    assert kinds.count(Conv2D) == 5 and kinds.count(BatchNormalization) == 5
    assert GlobalAveragePooling2D in kinds and kinds[-1] is Dense
    non_trainable = sum(w.size for w in model.non_trainable_weights)
    assert non_trainable == 2 * (32 + 64 + 64 + 128 + 128)  # the moving statistics


def test_small_trains_and_reloads(tmp_path):
    microcnn.set_seed(0)
    rng = np.random.default_rng(0)
    x = rng.random((16, 12, 12, 1), dtype=np.float32)
    y = np.arange(16) % 2
    x[y == 1, :6] += 1.0  # class 1: bright top half
    model = build_model("small", (12, 12, 1), 2)
    model.compile(optimizer=microcnn.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    history = model.fit(x, y, epochs=4, batch_size=8, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    model.save(tmp_path / "small")
    again = microcnn.load_model(tmp_path / "small")
    np.testing.assert_array_equal(again.predict(x), model.predict(x))


def expected_small_flat_params(shape, classes):
    """Conv 3x3 without bias + BatchNormalization for 32, 64, 64, 128 filters; Dense over the (H/4, W/4, 128)
    map (two valid 2x2 poolings floor the size)."""
    total, cin = 0, shape[-1]
    for filters in (32, 64, 64, 128):
        total += 3 * 3 * cin * filters + 4 * filters
        cin = filters
    features = (shape[0] // 2 // 2) * (shape[1] // 2 // 2) * 128
    return total + features * classes + classes


@pytest.mark.parametrize("shape, classes", [((28, 28, 1), 10), ((150, 150, 3), 3), ((30, 22, 3), 2)])
def test_small_flat_parameter_count(shape, classes):
    model = build_model("small-flat", shape, classes)
    assert model.count_params() == expected_small_flat_params(shape, classes)
    assert model.output_shape == (None, classes)
    kinds = [type(layer) for layer in model.layers]
    assert kinds.count(Conv2D) == 4 and kinds.count(BatchNormalization) == 4 and kinds[-1] is Dense
    assert "small-flat" in available_presets()


def test_small_flat_learns_and_reloads(tmp_path):
    microcnn.set_seed(0)
    rng = np.random.default_rng(1)
    x = rng.random((32, 12, 12, 1), dtype=np.float32)
    y = np.arange(32) % 2
    x[y == 1, :, :6] += 1.0  # class 1: bright left half
    model = build_model("small-flat", (12, 12, 1), 2)
    model.compile(optimizer=microcnn.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    history = model.fit(x, y, epochs=6, batch_size=8, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert model.evaluate(x, y, verbose=0)[1] >= 0.9
    model.save(tmp_path / "m")
    again = microcnn.load_model(tmp_path / "m")
    np.testing.assert_array_equal(again.predict(x), model.predict(x))
