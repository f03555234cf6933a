"""BatchNormalization and GlobalAveragePooling2D: layer contract, Keras 3 semantics vs NumPy, gradients
through a model vs finite differences, freezing, save/reload."""

import numpy as np
import pytest
from _helpers import assert_config_round_trips

import microcnn
from microcnn import layers

RNG = np.random.default_rng(0)


@pytest.mark.parametrize(
    "make, in_shape, out_shape, params",
    [
        (lambda: layers.BatchNormalization(), (5, 4, 3), (5, 4, 3), 4 * 3),
        (lambda: layers.BatchNormalization(center=False, scale=False), (7,), (7,), 2 * 7),
        (lambda: layers.BatchNormalization(scale=False, momentum=0.9, epsilon=1e-5), (2, 2, 6), (2, 2, 6), 18),
        (lambda: layers.GlobalAveragePooling2D(), (5, 4, 3), (3,), 0),
        (lambda: layers.GlobalAveragePooling2D(keepdims=True), (5, 4, 3), (1, 1, 3), 0),
    ],
)
def test_layer_contract(make, in_shape, out_shape, params, tmp_path):
    layer = make()
    assert layer.compute_output_shape((None, *in_shape)) == (None, *out_shape)
    x = RNG.normal(size=(4, *in_shape)).astype(np.float32)
    model = microcnn.Sequential([layers.Input(in_shape), layer])
    # Non-default moving statistics, so the reload has something to preserve.
    model.set_weights([RNG.uniform(0.5, 2.0, w.shape).astype(np.float32) for w in model.get_weights()])
    y = model.predict(x)
    assert y.shape == (4, *out_shape) and y.dtype == np.float32
    assert layer.count_params() == params == sum(w.size for w in layer.get_weights())

    assert_config_round_trips(layer)

    model.save(tmp_path / "m")
    again = microcnn.load_model(tmp_path / "m")
    np.testing.assert_array_equal(again.predict(x), y)
    for a, b in zip(again.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_batchnorm_weights_are_in_keras_order_and_split_by_trainability():
    bn = layers.BatchNormalization()
    bn.ensure_built((None, 3, 3, 4))
    assert bn.weight_names == ["gamma", "beta", "moving_mean", "moving_variance"]
    assert bn.trainable_weight_names == ["gamma", "beta"]
    assert bn.non_trainable_weight_names == ["moving_mean", "moving_variance"]
    gamma, beta, mean, var = bn.get_weights()
    np.testing.assert_array_equal(gamma, np.ones(4))
    np.testing.assert_array_equal(beta, np.zeros(4))
    np.testing.assert_array_equal(mean, np.zeros(4))
    np.testing.assert_array_equal(var, np.ones(4))
    only_beta = layers.BatchNormalization(scale=False)
    only_beta.ensure_built((None, 4))
    assert only_beta.weight_names == ["beta", "moving_mean", "moving_variance"]


def test_batchnorm_training_and_inference_follow_keras():
    bn = layers.BatchNormalization(momentum=0.9, epsilon=1e-3)
    bn.ensure_built((None, 3, 3, 2))
    gamma = np.array([1.5, -0.5], np.float32)
    beta = np.array([0.1, 0.2], np.float32)
    mm0 = np.array([0.3, -0.2], np.float32)
    mv0 = np.array([2.0, 0.5], np.float32)
    bn.set_weights([gamma, beta, mm0, mv0])
    x = RNG.normal(1.0, 2.0, (5, 3, 3, 2)).astype(np.float32)
    x64 = x.astype(np.float64)

    # Training: normalise with the batch statistics (biased variance), update the moving ones with it.
    y = bn.forward(x, training=True)
    mean, var = x64.mean(axis=(0, 1, 2)), x64.var(axis=(0, 1, 2))
    np.testing.assert_allclose(y, (x64 - mean) / np.sqrt(var + 1e-3) * gamma + beta, rtol=1e-5, atol=1e-5)
    _, _, mm, mv = bn.get_weights()
    np.testing.assert_allclose(mm, 0.9 * mm0 + 0.1 * mean, rtol=1e-6)
    np.testing.assert_allclose(mv, 0.9 * mv0 + 0.1 * var, rtol=1e-6)
    bn.clear_cache()

    # Inference: the moving statistics; nothing changes.
    y = bn.forward(x, training=False)
    np.testing.assert_allclose(y, (x64 - mm) / np.sqrt(mv.astype(np.float64) + 1e-3) * gamma + beta, rtol=1e-5,
                               atol=1e-5)
    np.testing.assert_array_equal(bn.get_weights()[2], mm)


def test_frozen_batchnorm_runs_in_inference_mode_even_while_training():
    # Keras 3's fine-tuning rule: trainable=False means inference mode, moving statistics untouched.
    model = microcnn.Sequential([layers.Input((4,)), layers.BatchNormalization(trainable=False),
                                 layers.Dense(2, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    bn = model.layers[0]
    assert bn.trainable_weight_names == [] and len(bn.non_trainable_weight_names) == 4
    before = bn.get_weights()
    x = RNG.normal(3.0, 1.0, (16, 4)).astype(np.float32)
    model.fit(x, np.arange(16) % 2, epochs=2, batch_size=8, verbose=0, shuffle=False)
    for a, b in zip(bn.get_weights(), before):
        np.testing.assert_array_equal(a, b)


def _numeric_grads(model, x, y, arrays, eps=1e-2):
    """Central differences of the training-mode loss with respect to each array (float64 result)."""
    grads = []
    for arr in arrays:
        g = np.zeros(arr.shape)
        for i in np.ndindex(arr.shape):
            old = arr[i]
            arr[i] = old + eps
            up = model._gradients(x, y)[0]
            arr[i] = old - eps
            down = model._gradients(x, y)[0]
            arr[i] = old
            g[i] = (up - down) / (2 * eps)
        grads.append(g)
    return grads


def test_gradients_through_batchnorm_and_global_pooling_match_finite_differences():
    microcnn.set_seed(3)
    model = microcnn.Sequential([
        layers.Input((4, 4, 2)),
        layers.Conv2D(3, 3, padding="same", use_bias=False),
        layers.BatchNormalization(),
        # Smooth (a ReLU kink inside a finite difference would spoil it) and non-linear (after a linear map
        # the next BatchNormalization would cancel beta, leaving a zero gradient to compare).
        layers.Softmax(),
        layers.GlobalAveragePooling2D(),
        layers.BatchNormalization(center=False),
        layers.Dense(3, activation="softmax"),
    ])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    weights = model.get_weights()
    weights[1] = np.array([1.2, 0.8, 1.1], np.float32)  # gamma away from 1
    weights[2] = np.array([0.3, -0.2, 0.5], np.float32)
    model.set_weights(weights)
    x = RNG.normal(size=(6, 4, 4, 2)).astype(np.float32)
    y = np.array([0, 1, 2, 0, 1, 2])
    # Moving statistics change on every training-mode forward but do not affect the training loss.
    _, grads = model._gradients(x, y)
    named = model.named_weights()
    keys = [k for k in grads if "moving" not in k]
    numeric = _numeric_grads(model, x, y, [named[k] for k in keys])
    assert set(keys) == {k for k in named if "moving" not in k} and len(keys) == 6
    for key, num in zip(keys, numeric):
        np.testing.assert_allclose(grads[key], num, rtol=2e-2, atol=2e-3 * np.abs(num).max(), err_msg=key)


def test_a_batchnorm_network_learns():
    microcnn.set_seed(0)
    rng = np.random.default_rng(1)
    y = np.arange(120) % 3
    x = rng.normal(0.0, 0.3, (120, 6, 6, 1)).astype(np.float32)
    for c in range(3):
        x[y == c, :, 2 * c:2 * c + 2, :] += 1.0
    model = microcnn.Sequential([
        layers.Input((6, 6, 1)),
        layers.Conv2D(4, 3, padding="same", use_bias=False),
        # Few steps: a fast-moving average so inference statistics catch up (Keras's 0.99 would not).
        layers.BatchNormalization(momentum=0.8),
        layers.ReLU(),
        layers.GlobalAveragePooling2D(),
        layers.Dense(3, activation="softmax"),
    ])
    model.compile(optimizer=microcnn.optimizers.Adam(0.05), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    history = model.fit(x, y, epochs=15, batch_size=20, verbose=0)
    assert history.history["loss"][-1] < 0.5 * history.history["loss"][0]
    assert model.evaluate(x, y, verbose=0, return_dict=True)["accuracy"] > 0.9


@pytest.mark.parametrize(
    "make, exc, argument",
    [
        (lambda: layers.BatchNormalization(momentum=1.5), ValueError, "momentum"),
        (lambda: layers.BatchNormalization(epsilon=0), ValueError, "epsilon"),
        (lambda: layers.BatchNormalization(center="yes"), TypeError, "center"),
        (lambda: layers.BatchNormalization(axis=1.0), TypeError, "axis"),
        (lambda: layers.GlobalAveragePooling2D(data_format="channels_first"), ValueError, "data_format"),
        (lambda: layers.GlobalAveragePooling2D(keepdims=1), TypeError, "keepdims"),
    ],
)
def test_constructor_validation(make, exc, argument):
    with pytest.raises(exc, match=argument):
        make()


def test_build_errors():
    with pytest.raises(ValueError, match="axis"):
        microcnn.Sequential([layers.Input((4, 4, 3)), layers.BatchNormalization(axis=1)])
    with pytest.raises(ValueError, match="rank 4"):
        microcnn.Sequential([layers.Input((8,)), layers.GlobalAveragePooling2D()])
