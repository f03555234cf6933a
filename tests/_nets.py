"""Small networks and data shared by the model-level tests."""

import numpy as np

import microcnn
from microcnn import layers


def seed_network(input_shape=(150, 150, 3), classes=3, dropout=0.5):
    """The seed project's network, layer for layer."""
    return microcnn.Sequential([
        layers.Conv2D(32, (3, 3), padding="same", input_shape=input_shape),
        layers.Activation("relu"),
        layers.MaxPooling2D(pool_size=(2, 2)),
        layers.Conv2D(64, (2, 2), padding="same", activation="relu"),
        layers.MaxPooling2D(pool_size=(2, 2)),
        layers.Flatten(),
        layers.Dense(256, activation="relu"),
        layers.Dropout(dropout),
        layers.Dense(classes, activation="softmax"),
    ])


def tiny_network(input_shape=(8, 8, 2), classes=3, dropout=0.0, head="dense_softmax"):
    """Every layer type on a tiny input; `head` picks how the softmax is expressed."""
    net = [
        layers.Input(input_shape),
        layers.Conv2D(3, 3, padding="same", activation="relu"),
        layers.MaxPooling2D(2),
        layers.Conv2D(4, (2, 2), strides=(1, 1), padding="same"),
        layers.ReLU(),
        layers.Conv2D(4, 2, strides=2, padding="valid"),
        layers.Flatten(),
        layers.Dense(6, activation="relu"),
        layers.Dropout(dropout),
    ]
    if head == "dense_softmax":
        net += [layers.Dense(classes, activation="softmax")]
    elif head == "softmax_layer":
        net += [layers.Dense(classes), layers.Softmax()]
    elif head == "unfused":  # the softmax is not the last layer, so the loss works on probabilities
        net += [layers.Dense(classes, activation="softmax"), layers.Dropout(0.0)]
    return microcnn.Sequential(net)


def blobs(n=96, shape=(8, 8, 2), classes=3, seed=0):
    """A separable problem: class c has a bright patch in region c."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % classes
    x = rng.normal(0.0, 0.3, (n, *shape)).astype(np.float32)
    width = shape[1] // classes
    for c in range(classes):
        x[y == c, :, c * width:(c + 1) * width, :] += 1.5
    return x, y


def one_hot(y, classes):
    return np.eye(classes, dtype=np.float32)[y]


def fit_fused_and_unfused_dense_update(make_model, input_shape, batch=16):
    """Two models from make_model(), one with the fused Dense+Adam update and one without (what an allreduce over
    processes needs), each fitted one epoch on the same batches; -> (fused, unfused) after checking that their
    weights are the same bits."""
    rng = np.random.default_rng(2)
    x, labels = rng.random((batch, *input_shape), dtype=np.float32), rng.integers(0, 3, batch)
    fused, unfused = make_model(), make_model()
    unfused.fuse_dense_update = False
    for model in (fused, unfused):
        model.fit(x, labels, batch_size=batch // 2, epochs=1, shuffle=False, verbose=0)
    for got, want in zip(fused.get_weights(), unfused.get_weights()):
        np.testing.assert_array_equal(got, want)
    return fused, unfused


def small_seed_net(channels=3, size=20, classes=4, head="softmax"):
    """The seed network's shape at a small size (Conv 8 and 16 with pools, Dense 32, Dropout), seeded and
    compiled; head: the last Dense's activation (None: linear)."""
    microcnn.set_seed(1)
    model = microcnn.Sequential([
        layers.Input((size, size, channels)),
        layers.Conv2D(8, 3, padding="same", activation="relu"), layers.MaxPooling2D(2),
        layers.Conv2D(16, 2, padding="same", activation="relu"), layers.MaxPooling2D(2),
        layers.Flatten(), layers.Dense(32, activation="relu"), layers.Dropout(0.5),
        layers.Dense(classes, activation=head),
    ])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model
