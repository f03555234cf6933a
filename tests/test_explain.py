"""Grad-CAM: the gradient against finite differences, inference mode (dropout off, batch-norm statistics
untouched), and the saliency test: when the class is decided by a small bright patch at a random place, the
heatmap's maximum falls inside the patch."""

import numpy as np
import pytest

import microcnn
from microcnn import layers
from microcnn._gradcam import feature_map_and_gradient
from microcnn.explain import grad_cam, last_conv_index, overlay

SIZE, PATCH = 16, 4


def patch_images(n, seed):
    """Dim noise with one bright 4x4 patch at a random place: filled (class 0) or a ring (class 1)."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.0, 0.3, (n, SIZE, SIZE, 1)).astype(np.float32)
    y = rng.integers(0, 2, n).astype(np.int32)
    corners = rng.integers(0, SIZE - PATCH + 1, (n, 2))
    for i, (r, c) in enumerate(corners):
        x[i, r:r + PATCH, c:c + PATCH, 0] = 1.0
        if y[i] == 1:
            x[i, r + 1:r + PATCH - 1, c + 1:c + PATCH - 1, 0] = 0.1
    return x, y, corners


def patch_model():
    return microcnn.Sequential([
        layers.Input((SIZE, SIZE, 1)),
        layers.Conv2D(8, (3, 3), padding="same", activation="relu"),
        layers.Conv2D(8, (3, 3), padding="same", activation="relu"),
        layers.GlobalAveragePooling2D(),
        layers.Dropout(0.2),
        layers.Dense(2, activation="softmax"),
    ])


def test_heatmap_maximum_falls_inside_the_patch():
    microcnn.set_seed(1)
    x, y, _ = patch_images(600, seed=0)
    model = patch_model()
    model.compile(optimizer=microcnn.optimizers.Adam(learning_rate=0.01),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, batch_size=32, epochs=12, verbose=0)
    x_test, y_test, corners = patch_images(100, seed=1)
    heatmaps, classes, probabilities = grad_cam(model, x_test)
    assert heatmaps.shape == (100, SIZE, SIZE) and heatmaps.dtype == np.float32
    np.testing.assert_array_equal(classes, np.argmax(model.predict(x_test), axis=1))
    np.testing.assert_allclose(probabilities, model.predict(x_test), atol=1e-5)
    accuracy = float(np.mean(classes == y_test))
    assert accuracy >= 0.9, f"the tiny model did not learn the patches (accuracy {accuracy:.2f})"
    for method in ("gradcam", "hirescam"):
        if method != "gradcam":
            heatmaps, _, _ = grad_cam(model, x_test, method=method)
        inside = []
        for heatmap, (r, c) in zip(heatmaps, corners):
            peak_r, peak_c = np.unravel_index(np.argmax(heatmap), heatmap.shape)
            inside.append(r <= peak_r < r + PATCH and c <= peak_c < c + PATCH)
            assert heatmap.max() == pytest.approx(1.0) and heatmap.min() >= 0
        assert np.mean(inside) >= 0.8, f"{method}: maximum inside the patch for only {np.mean(inside):.2f}"


def _head_logits(model, index, feature):
    """The layers after `index` in inference mode, the last softmax left out: the class scores."""
    h = feature
    rest = model.layers[index + 1:]
    for i, layer in enumerate(rest):
        h = layer.forward(h, logits=True) if i == len(rest) - 1 else layer.forward(h)
    return h.astype(np.float64)


@pytest.mark.parametrize("with_batchnorm", [False, True])
def test_gradient_matches_finite_differences_in_inference_mode(with_batchnorm):
    microcnn.set_seed(2)
    if with_batchnorm:
        block = [layers.Conv2D(6, (3, 3), padding="same", use_bias=False), layers.BatchNormalization(),
                 layers.ReLU()]
    else:
        block = [layers.Conv2D(6, (3, 3), padding="same", activation="relu")]
    model = microcnn.Sequential([layers.Input((8, 8, 2)), layers.Conv2D(4, (3, 3), activation="relu"), *block,
                                 layers.MaxPooling2D((2, 2)), layers.Flatten(), layers.Dropout(0.5),
                                 layers.Dense(5, activation="relu"), layers.Dense(3, activation="softmax")])
    if with_batchnorm:
        bn = model.layers[2]
        bn.set_weights([np.full(6, 1.3, np.float32), np.full(6, 0.1, np.float32),
                        np.linspace(-0.2, 0.2, 6).astype(np.float32),
                        np.linspace(0.5, 2, 6).astype(np.float32)])
    before = [w.copy() for w in model.get_weights()]
    x = np.random.default_rng(3).normal(size=(2, 8, 8, 2)).astype(np.float32)
    index = last_conv_index(model)
    assert index == (3 if with_batchnorm else 1)  # past BatchNormalization and ReLU
    feature, grad, classes, _ = feature_map_and_gradient(model, x, index, classes=[0, 2])
    for got, expected in zip(model.get_weights(), before):
        np.testing.assert_array_equal(got, expected)  # nothing updated (batch-norm moving statistics)
    eps = 1e-2
    maxima, others = [], []
    for n, i, j, k in np.ndindex(*feature.shape):
        window = feature[n, i - i % 2:i - i % 2 + 2, j - j % 2:j - j % 2 + 2, k].ravel().tolist()
        window.remove(feature[n, i, j, k])
        margin = feature[n, i, j, k] - max(window)
        if margin > 3 * eps:
            maxima.append((n, i, j, k))
        elif margin < -3 * eps:  # not a max-pooling tie within eps, where the finite difference is one-sided
            others.append((n, i, j, k))
    rng = np.random.default_rng(4)
    picked = [maxima[p] for p in rng.choice(len(maxima), 10, replace=False)]
    picked += [others[p] for p in rng.choice(len(others), 4, replace=False)]
    nonzero = 0
    for n, i, j, k in picked:
        plus, minus = feature.copy(), feature.copy()
        plus[n, i, j, k] += eps
        minus[n, i, j, k] -= eps
        numeric = (_head_logits(model, index, plus)[n, classes[n]]
                   - _head_logits(model, index, minus)[n, classes[n]]) / (2 * eps)
        assert grad[n, i, j, k] == pytest.approx(numeric, abs=2e-3), (n, i, j, k)
        nonzero += abs(numeric) > 1e-2
    assert nonzero >= 4  # not only the zeros of the pooled-away positions


def test_arguments_and_overlay():
    model = patch_model()
    with pytest.raises(ValueError, match="layer: expected a layer name or index"):
        grad_cam(model, np.zeros((1, SIZE, SIZE, 1), np.float32), layer="nope")
    with pytest.raises(ValueError, match="4-D"):
        grad_cam(model, np.zeros((1, SIZE, SIZE, 1), np.float32), layer=-1)
    with pytest.raises(ValueError, match="method: expected one of gradcam, hirescam"):
        grad_cam(model, np.zeros((1, SIZE, SIZE, 1), np.float32), method="cam")
    with pytest.raises(ValueError, match="class_index"):
        grad_cam(model, np.zeros((1, SIZE, SIZE, 1), np.float32), class_index=5)
    heat, classes, _ = grad_cam(model, np.zeros((2, SIZE, SIZE, 1), np.float32), class_index=1, layer=0)
    assert heat.shape == (2, SIZE, SIZE) and classes.tolist() == [1, 1]
    image = overlay(np.zeros((SIZE, SIZE, 1), np.float32), np.eye(SIZE, dtype=np.float32))
    assert image.dtype == np.uint8 and image.shape == (224, 224, 3)
