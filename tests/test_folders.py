"""image_dataset_from_directory: batches scaled as prediction scales them, for 8-bit and 16-bit folders."""

import numpy as np
import pytest
from PIL import Image

import microcnn


def _folder(root, high_depth):
    rng = np.random.default_rng(0)
    for k, name in enumerate(["alpha", "beta"]):
        d = root / name
        d.mkdir(parents=True)
        for i in range(5):
            if high_depth:
                pixels = (rng.random((12, 12)) * 3000 + 100 + 2000 * k).astype(np.uint16)
            else:
                pixels = (rng.random((12, 12)) * 100 + 100 * k).astype(np.uint8)
            Image.fromarray(pixels).save(d / f"{i}.png")
    return root


@pytest.mark.parametrize("high_depth", [False, True], ids=["8-bit", "16-bit"])
def test_batches_are_scaled_like_prediction_and_train(tmp_path, high_depth):
    root = _folder(tmp_path / "data", high_depth)
    train, val = microcnn.image_dataset_from_directory(root, image_size=12, batch_size=4, validation_split=0.4)
    assert train.class_names == val.class_names == ["alpha", "beta"]
    assert len(train) == 2 and len(val) == 1  # 3 + 3 training images, 2 + 2 validation images
    x, y = next(iter(train))
    assert x.dtype == np.float32 and x.shape[1:] == (12, 12, 1) and y.dtype == np.int32
    assert -0.05 <= x.min() and x.max() <= 1.05 and x.max() > 0.2  # 16-bit: by the 0.1-99.9 percentile range
    paths = sorted(str(p) for p in root.rglob("*.png"))
    expected, _, _ = microcnn.preprocess_for_prediction(paths, train.preprocessing)
    every = np.concatenate([xb for xb, _ in train] + [xb for xb, _ in val])
    np.testing.assert_allclose(np.sort(every.ravel()), np.sort(expected.ravel()), rtol=1e-6)
    model = microcnn.Sequential([microcnn.layers.Input((12, 12, 1)), microcnn.layers.Flatten(),
                                 microcnn.layers.Dense(2, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(train, validation_data=val, epochs=2, verbose=0)
    assert len(history.history["val_accuracy"]) == 2


def test_subset_and_bad_arguments(tmp_path):
    root = _folder(tmp_path / "data", False)
    only = microcnn.image_dataset_from_directory(root, image_size=12, validation_split=0.4, subset="validation")
    assert sum(len(yb) for _, yb in only) == 4
    with pytest.raises(ValueError, match="subset"):
        microcnn.image_dataset_from_directory(root, subset="train")
