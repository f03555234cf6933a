"""Named architectures for `microcnn-train --arch`: `build_model(arch, input_shape, num_classes)`.

A preset is a function (input_shape, num_classes) -> uncompiled Sequential, registered under a name with
`@register_preset("name", "one-line description")`. "seed" is the network of the Keras project microcnn
started from.
"""

_PRESETS = {}


def register_preset(name, description=""):
    """Decorator: makes `fn(input_shape, num_classes)` available as `build_model(name, ...)`."""

    def wrap(fn):
        if name in _PRESETS:
            raise ValueError(f"arch: a preset named {name!r} is already registered")
        _PRESETS[name] = (fn, description)
        return fn

    return wrap


def available_presets():
    """{name: description} of every registered preset, sorted by name."""
    return {name: _PRESETS[name][1] for name in sorted(_PRESETS)}


def build_model(arch="seed", input_shape=(150, 150, 3), num_classes=2):
    """A fresh, uncompiled model of the named architecture."""
    if arch not in _PRESETS:
        raise ValueError(f"arch: expected one of {', '.join(sorted(_PRESETS))}, got {arch!r}")
    if (not isinstance(input_shape, (tuple, list)) or len(input_shape) != 3
            or not all(isinstance(v, int) and v > 0 for v in input_shape)):
        raise ValueError(f"input_shape: expected (height, width, channels) positive integers, got {input_shape!r}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes: expected an integer >= 2, got {num_classes!r}")
    return _PRESETS[arch][0](tuple(input_shape), num_classes)


@register_preset("seed", "Conv32 3x3, pool, Conv64 2x2, pool, Dense 256, Dropout 0.5 (the Keras seed net)")
def seed_network(input_shape, num_classes):
    from .layers import Conv2D, Dense, Dropout, Flatten, Input, MaxPooling2D
    from .model import Sequential

    return Sequential([
        Input(input_shape),
        Conv2D(32, (3, 3), padding="same", activation="relu"),
        MaxPooling2D((2, 2)),
        Conv2D(64, (2, 2), padding="same", activation="relu"),
        MaxPooling2D((2, 2)),
        Flatten(),
        Dense(256, activation="relu"),
        Dropout(0.5),
        Dense(num_classes, activation="softmax"),
    ], name="seed")


def _conv_bn_relu(filters):
    """Conv 3x3 (no bias: the BatchNormalization's beta is the shift) -> BatchNormalization -> ReLU.

    momentum 0.9 rather than Keras's 0.99: the moving statistics used at inference must settle within the
    few hundred steps a small dataset gives (0.99 keeps ~70% of the initial 0/1 after 36 steps, 0.9 ~2%)."""
    from .layers import BatchNormalization, Conv2D, ReLU

    return [Conv2D(filters, (3, 3), padding="same", use_bias=False), BatchNormalization(momentum=0.9), ReLU()]


@register_preset("small", "Conv32-BN, pool, 2x Conv64-BN, pool, 2x Conv128-BN, global average pool, Dropout, "
                          "Dense (any image size)")
def small_network(input_shape, num_classes):
    from .layers import Dense, Dropout, GlobalAveragePooling2D, Input, MaxPooling2D
    from .model import Sequential

    return Sequential([
        Input(input_shape),
        *_conv_bn_relu(32),
        MaxPooling2D((2, 2)),
        *_conv_bn_relu(64),
        *_conv_bn_relu(64),
        MaxPooling2D((2, 2)),
        *_conv_bn_relu(128),
        *_conv_bn_relu(128),
        GlobalAveragePooling2D(),
        Dropout(0.1),
        Dense(num_classes, activation="softmax"),
    ], name="small")


@register_preset("small-flat", "Conv32-BN, pool, Dropout, 2x Conv64-BN, pool, Dropout, Conv128-BN, Flatten, "
                               "Dropout, Dense (the strongest on Fashion-MNIST within 10 minutes)")
def small_flat_network(input_shape, num_classes):
    """`small` with a flattened head instead of global average pooling, one 128-filter conv instead of two, and
    dropout after each pooling. About 30% fewer FLOPs than `small`; the head keeps where each feature is,
    which helps on centred objects (Fashion-MNIST), but its parameter count grows with the image size."""
    from .layers import Dense, Dropout, Flatten, Input, MaxPooling2D
    from .model import Sequential

    return Sequential([
        Input(input_shape),
        *_conv_bn_relu(32),
        MaxPooling2D((2, 2)),
        Dropout(0.1),
        *_conv_bn_relu(64),
        *_conv_bn_relu(64),
        MaxPooling2D((2, 2)),
        Dropout(0.2),
        *_conv_bn_relu(128),
        Flatten(),
        Dropout(0.4),
        Dense(num_classes, activation="softmax"),
    ], name="small_flat")
