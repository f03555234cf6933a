"""Test-time augmentation (microcnn/tta.py, model.predict(tta=True), microcnn-predict --tta)."""

import numpy as np
from PIL import Image

import microcnn
from microcnn import layers as L
from microcnn.cli.predict import main as predict_main
from microcnn.tta import dihedral_views


def conv_model(size=8, channels=2, invariant=False):
    """invariant: 1x1 convolutions and a global average pool, so any permutation of the pixels (every
    rotation and flip among them) leaves the output unchanged; else a flattening model that is not."""
    microcnn.set_seed(0)
    if invariant:
        body = [L.Conv2D(6, 1, activation="relu"), L.GlobalAveragePooling2D()]
    else:
        body = [L.Conv2D(6, 3, padding="same", activation="relu"), L.Flatten()]
    model = microcnn.Sequential([L.InputLayer((size, size, channels)), *body, L.Dense(3, activation="softmax")])
    model.compile(loss="sparse_categorical_crossentropy")
    return model


def test_views_are_the_dihedral_group():
    x = np.arange(2 * 3 * 3, dtype=np.float32).reshape(2, 3, 3, 1)
    views = dihedral_views(x)
    keys = {v[0, :, :, 0].tobytes() for v in views}
    assert len(views) == 8 and len(keys) == 8 and np.array_equal(views[0], x)
    assert len(dihedral_views(np.zeros((1, 3, 4, 1), np.float32))) == 4  # non-square: flips only


def test_tta_prediction_is_invariant_to_rotations_and_flips():
    model = conv_model()
    x = np.random.default_rng(0).random((5, 8, 8, 2)).astype(np.float32)
    plain = model.predict(x)
    assert not np.allclose(plain, model.predict(np.rot90(x, 1, axes=(1, 2)).copy()), atol=1e-4)  # not invariant
    averaged = model.predict(x, tta=True)
    np.testing.assert_allclose(averaged.sum(axis=1), 1.0, rtol=1e-5)
    for view in dihedral_views(x)[1:]:
        np.testing.assert_allclose(model.predict(view, tta=True), averaged, atol=1e-6)


def test_tta_on_a_rotation_invariant_model_changes_nothing():
    model = conv_model(invariant=True)
    x = np.random.default_rng(1).random((4, 8, 8, 2)).astype(np.float32)
    np.testing.assert_allclose(model.predict(x, tta=True), model.predict(x), atol=1e-6)


def test_cli_tta_is_invariant_on_a_rotation_invariant_model(tmp_path, capsys):
    model = conv_model(size=8, channels=1, invariant=True)
    preprocessing = {"version": 2, "image_size": [8, 8], "channels": 1, "color": "auto", "resample": "bilinear",
                     "high_depth_range": None, "channel_ranges": None}
    model.save(tmp_path / "model", metadata={"class_names": ["a", "b", "c"], "preprocessing": preprocessing})
    a = np.random.default_rng(2).integers(0, 255, (8, 8)).astype(np.uint8)
    for name, pixels in (("a.png", a), ("a_rot.png", np.rot90(a)), ("a_flip.png", a[::-1])):
        Image.fromarray(np.ascontiguousarray(pixels)).save(tmp_path / name)
    args = [str(tmp_path / n) for n in ("a.png", "a_rot.png", "a_flip.png")]
    assert predict_main(args + ["--model", str(tmp_path / "model"), "--tta", "--format", "csv", "--top-k", "3"]) == 0
    rows = [line.split(",")[1:] for line in capsys.readouterr().out.splitlines()[1:]]
    assert len(rows) == 3 and rows[0] == rows[1] == rows[2]
