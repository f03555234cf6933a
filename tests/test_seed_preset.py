"""The "seed" preset is the Keras network microcnn started from."""

import pytest

from microcnn.layers import Conv2D, Dense, Dropout, Flatten, MaxPooling2D
from microcnn.presets import build_model


def seed_params(h, w, c, n):
    """Layer formulas: conv 3x3 (c->32), conv 2x2 (32->64), two 2x2 pools, dense 256, dense n."""
    flat = (h // 2 // 2) * (w // 2 // 2) * 64
    return (3 * 3 * c * 32 + 32) + (2 * 2 * 32 * 64 + 64) + (flat * 256 + 256) + (256 * n + n)


def test_seed_matches_keras_parameter_count():
    assert build_model("seed", (150, 150, 3), 3).count_params() == 22_439_875  # Keras's model.summary()


@pytest.mark.parametrize("shape, classes", [((150, 150, 1), 3), ((28, 28, 1), 10), ((30, 22, 3), 2)])
def test_seed_layers_and_parameter_count(shape, classes):
    model = build_model("seed", shape, classes)
    assert model.count_params() == seed_params(*shape, classes)
    assert [type(layer) for layer in model.layers] == [Conv2D, MaxPooling2D, Conv2D, MaxPooling2D, Flatten, Dense,
                                                       Dropout, Dense]
    conv1, conv2 = model.layers[0], model.layers[2]
    assert conv1.get_config()["padding"] == "same" and conv2.get_config()["kernel_size"] in ((2, 2), [2, 2])
    assert model.layers[6].get_config()["rate"] == 0.5
    assert model.layers[-1].get_config()["activation"] == "softmax"
    assert model.output_shape == (None, classes)


@pytest.mark.parametrize("kwargs, match", [
    ({"arch": "resnet"}, "arch"), ({"input_shape": (150, 150)}, "input_shape"),
    ({"input_shape": (0, 150, 3)}, "input_shape"), ({"num_classes": 1}, "num_classes"),
])
def test_build_model_rejects_bad_arguments(kwargs, match):
    args = {"arch": "seed", "input_shape": (16, 16, 1), "num_classes": 3, **kwargs}
    with pytest.raises(ValueError, match=match):
        build_model(**args)
