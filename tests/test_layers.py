"""Layer contract: output shape, parameter count, config round-trip, values against NumPy, argument checks."""

import numpy as np
import pytest
from _helpers import assert_config_round_trips
from reference_numpy import conv2d_forward, maxpool2d_forward, softmax_forward

import microcnn
from microcnn import initializers, layers

RNG = np.random.default_rng(0)

# (layer factory, input shape without batch, expected output shape without batch, expected parameter count)
CASES = [
    (lambda: layers.Conv2D(5, 3), (9, 7, 2), (7, 5, 5), 3 * 3 * 2 * 5 + 5),
    (lambda: layers.Conv2D(5, (3, 2), strides=2, padding="same", use_bias=False), (9, 7, 2), (5, 4, 5), 3 * 2 * 2 * 5),
    (lambda: layers.Conv2D(4, 2, padding="same", activation="relu"), (6, 6, 3), (6, 6, 4), 2 * 2 * 3 * 4 + 4),
    (lambda: layers.MaxPooling2D(2), (9, 7, 3), (4, 3, 3), 0),
    (lambda: layers.MaxPool2D((3, 2), strides=(1, 2), padding="same"), (5, 5, 2), (5, 3, 2), 0),
    (lambda: layers.Dense(7, activation="relu"), (11,), (7,), 11 * 7 + 7),
    (lambda: layers.Dense(3, activation="softmax", use_bias=False), (4,), (3,), 12),
    (lambda: layers.Flatten(), (3, 4, 5), (60,), 0),
    (lambda: layers.Dropout(0.3, seed=1), (6,), (6,), 0),
    (lambda: layers.ReLU(), (2, 3), (2, 3), 0),
    (lambda: layers.Activation("softmax"), (5,), (5,), 0),
    (lambda: layers.Softmax(), (5,), (5,), 0),
]


@pytest.mark.parametrize("make, in_shape, out_shape, params", CASES)
def test_layer_contract(make, in_shape, out_shape, params, tmp_path):
    layer = make()
    assert layer.compute_output_shape((None, *in_shape)) == (None, *out_shape)
    x = RNG.normal(size=(2, *in_shape)).astype(np.float32)
    y = layer(x)
    assert y.shape == (2, *out_shape) and y.dtype == np.float32
    assert layer.count_params() == params == sum(w.size for w in layer.get_weights())

    assert_config_round_trips(layer)

    # save/reload through a model gives identical predictions
    model = microcnn.Sequential([layers.Input(in_shape), layer])
    model.save(tmp_path / "m")
    again = microcnn.load_model(tmp_path / "m")
    np.testing.assert_array_equal(again.predict(x), model.predict(x))


def test_keras_style_names():
    layers.clear_session()
    names = [layers.Conv2D(1, 1).name, layers.Conv2D(1, 1).name, layers.MaxPooling2D().name,
             layers.ReLU().name, layers.Dense(1, name="head").name, layers.Dense(1).name]
    assert names == ["conv2d", "conv2d_1", "max_pooling2d", "re_lu", "head", "dense"]


@pytest.mark.parametrize("make, argument", [
    (lambda: layers.Conv2D(0, 3), "filters"),
    (lambda: layers.Conv2D(2.5, 3), "filters"),
    (lambda: layers.Conv2D(4, (3, 0)), "kernel_size"),
    (lambda: layers.Conv2D(4, "3"), "kernel_size"),
    (lambda: layers.Conv2D(4, 3, strides=0), "strides"),
    (lambda: layers.Conv2D(4, 3, padding="full"), "padding"),
    (lambda: layers.Conv2D(4, 3, activation="tanh"), "activation"),
    (lambda: layers.Conv2D(4, 3, activation=max), "activation"),
    (lambda: layers.Conv2D(4, 3, use_bias="yes"), "use_bias"),
    (lambda: layers.Conv2D(4, 3, kernel_initializer="lecun"), "kernel_initializer"),
    (lambda: layers.Conv2D(4, 3, data_format="channels_first"), "data_format"),
    (lambda: layers.MaxPooling2D(0), "pool_size"),
    (lambda: layers.MaxPooling2D(2, strides=(1, 2, 3)), "strides"),
    (lambda: layers.Dense(-1), "units"),
    (lambda: layers.Dense(3, bias_initializer="random"), "bias_initializer"),
    (lambda: layers.Dropout(1.0), "rate"),
    (lambda: layers.Dropout("half"), "rate"),
    (lambda: layers.Dropout(0.5, seed=-1), "seed"),
    (lambda: layers.Activation("gelu"), "activation"),
    (lambda: layers.Input((0, 3)), "shape"),
    (lambda: layers.Dense(3, name=""), "name"),
    (lambda: layers.Dense(3, input_shape=(-1,)), "input_shape"),
])
def test_constructor_validation(make, argument):
    with pytest.raises((ValueError, TypeError), match=argument):
        make()


def test_unknown_argument_is_a_type_error():
    with pytest.raises(TypeError, match="kernel_regularizer"):
        layers.Conv2D(4, 3, kernel_regularizer="l2")


def test_build_errors_name_the_layer():
    with pytest.raises(ValueError, match="Flatten"):
        microcnn.Sequential([layers.Input((4, 4, 3)), layers.Dense(2, name="d")])
    with pytest.raises(ValueError, match="does not fit"):
        microcnn.Sequential([layers.Input((2, 2, 1)), layers.Conv2D(1, 3)])


@pytest.mark.parametrize("strides, padding, kernel", [((1, 1), "same", (3, 3)), ((2, 1), "valid", (3, 2)),
                                                       ((2, 2), "same", (2, 2)), ((1, 1), "same", (2, 2))])
def test_conv2d_matches_numpy(strides, padding, kernel):
    layer = layers.Conv2D(4, kernel, strides=strides, padding=padding, bias_initializer="he_uniform")
    x = RNG.normal(size=(3, 7, 6, 2)).astype(np.float32)
    y = layer(x)
    kernel_w, bias = layer.get_weights()
    np.testing.assert_allclose(y, conv2d_forward(x, kernel_w, bias, *strides, padding), rtol=1e-5, atol=1e-5)


def test_relu_and_softmax_activations_match_numpy():
    x = RNG.normal(size=(4, 5)).astype(np.float32)
    dense = layers.Dense(3, activation="relu")
    y = dense(x)
    kernel, bias = dense.get_weights()
    np.testing.assert_allclose(y, np.maximum(x @ kernel + bias, 0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(layers.Softmax()(x), softmax_forward(x), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(layers.ReLU()(x), np.maximum(x, 0))


def test_maxpool_and_flatten_match_numpy():
    x = RNG.normal(size=(2, 7, 5, 3)).astype(np.float32)
    np.testing.assert_array_equal(layers.MaxPooling2D(2)(x), maxpool2d_forward(x, 2, 2, 2, 2)[0])
    np.testing.assert_array_equal(layers.MaxPooling2D(3, strides=2, padding="same")(x),
                                  maxpool2d_forward(x, 3, 3, 2, 2, "same")[0])
    # Flatten keeps NHWC (Keras channels_last) order: channel index fastest
    flat = layers.Flatten()(x)
    assert flat[1, 3 * 5 * 3 + 2 * 3 + 1] == x[1, 3, 2, 1]


def test_dropout_training_and_inference():
    layer = layers.Dropout(0.25, seed=7)
    x = np.ones((64, 128), np.float32)
    np.testing.assert_array_equal(layer(x), x)  # inference: identity
    y = layer.forward(x, training=True)
    kept = y != 0
    assert 0.70 < kept.mean() < 0.80
    np.testing.assert_allclose(y[kept], 1 / 0.75, rtol=1e-6)
    dx = layer.backward(np.full_like(x, 2.0))
    np.testing.assert_array_equal(dx != 0, kept)  # the same mask on the way back
    np.testing.assert_array_equal(layer.forward(x, training=True), y)  # same step, same mask
    layer.commit_step()
    y2 = layer.forward(x, training=True)
    assert not np.array_equal(y2 != 0, kept)  # a new mask each completed step


def test_inference_forward_keeps_nothing():
    for layer in (layers.Conv2D(2, 2, activation="relu"), layers.MaxPooling2D(), layers.Dense(2)):
        x = RNG.normal(size=(2, 4, 4, 3) if not isinstance(layer, layers.Dense) else (2, 4)).astype(np.float32)
        layer(x)
        assert layer._cache is None
        layer.forward(x, training=True)
        assert layer._cache is not None


def test_set_weights_checks_count_and_shapes():
    layer = layers.Dense(3)
    layer(np.zeros((1, 4), np.float32))
    with pytest.raises(ValueError, match="expected 2 arrays"):
        layer.set_weights([np.zeros((4, 3))])
    with pytest.raises(ValueError, match="kernel"):
        layer.set_weights([np.zeros((3, 4)), np.zeros(3)])
    kernel = RNG.normal(size=(4, 3))
    layer.set_weights([kernel, np.arange(3)])
    np.testing.assert_allclose(layer.get_weights()[0], kernel.astype(np.float32))
    np.testing.assert_array_equal(layer.get_weights()[1], [0, 1, 2])


def test_trainable_false_moves_weights_to_non_trainable():
    layer = layers.Dense(2, trainable=False)
    layer(np.zeros((1, 3), np.float32))
    assert layer.trainable_weights == [] and len(layer.non_trainable_weights) == 2


@pytest.mark.parametrize("name", ["glorot_uniform", "glorot_normal", "he_uniform", "he_normal"])
def test_initializer_statistics_and_seeding(name):
    shape = (3, 3, 16, 32)
    fan_in, fan_out = 3 * 3 * 16, 3 * 3 * 32
    expected_std = {"glorot_uniform": np.sqrt(2 / (fan_in + fan_out)), "glorot_normal": np.sqrt(2 / (fan_in + fan_out)),
                    "he_uniform": np.sqrt(2 / fan_in), "he_normal": np.sqrt(2 / fan_in)}[name]
    init = initializers.get(name)
    w = init(shape)
    assert w.shape == shape and w.dtype == np.float32
    assert abs(w.std() / expected_std - 1) < 0.05
    if name.endswith("uniform"):
        assert np.abs(w).max() <= np.sqrt(3) * expected_std * (1 + 1e-6)
    else:
        assert np.abs(w).max() <= 2 * expected_std / 0.87962566103423978 * (1 + 1e-6)  # truncated at 2 sigma
    seeded = type(init)(seed=5)
    np.testing.assert_array_equal(seeded(shape), seeded(shape))
    microcnn.set_seed(11)
    a = init(shape)
    microcnn.set_seed(11)
    np.testing.assert_array_equal(init(shape), a)


def test_constant_initializers_and_serialisation():
    np.testing.assert_array_equal(initializers.get("zeros")((2, 3)), np.zeros((2, 3)))
    np.testing.assert_array_equal(initializers.get("ones")((4,)), np.ones(4))
    assert initializers.serialize(initializers.HeNormal()) == "he_normal"
    spec = initializers.serialize(initializers.HeNormal(seed=3))
    assert spec == {"class_name": "HeNormal", "config": {"seed": 3}}
    np.testing.assert_array_equal(initializers.get(spec)((5, 5)), initializers.HeNormal(seed=3)((5, 5)))
