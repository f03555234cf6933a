"""microcnn-train / microcnn-predict with microscope images: multi-channel z-stacks (--channels,
--z-projection), --augment presets and their settings, --image-size auto."""

import json

import numpy as np
import pytest
from PIL import Image

import microcnn
from microcnn.cli.predict import main as predict_main
from microcnn.cli.train import main as train_main

tifffile = pytest.importorskip("tifffile", reason="TIFF reading needs tifffile")


def write_stacks(root, per_class=4, size=8):
    """Two classes of ImageJ hyperstacks (Z=3, C=3, 16-bit): class b is bright in channel 2."""
    rng = np.random.default_rng(0)
    for split, n in (("train", per_class), ("validation", 2)):
        for k, name in enumerate(("a", "b")):
            (root / split / name).mkdir(parents=True)
            for i in range(n):
                a = rng.integers(0, 300, (3, 3, size, size)).astype(np.uint16)
                a[:, 2] += np.uint16(3000 * k)
                tifffile.imwrite(root / split / name / f"{i}.tif", a, imagej=True, metadata={"axes": "ZCYX"})
    return root


def args(dataset, out, *extra):
    return [str(dataset), "--out", str(out), "--epochs", "2", "--batch-size", "4", "--lr", "0.01", "--seed", "1",
            *extra]


def test_multichannel_z_stacks_train_and_predict(tmp_path, capsys):
    data = write_stacks(tmp_path / "data")
    out = tmp_path / "model"
    assert train_main(args(data, out, "--no-augment")) == 1  # z-stacks without a projection: all unreadable
    assert "--z-projection max or mean" in capsys.readouterr().err
    assert train_main(args(data, out, "--z-projection", "max", "--channels", "2,0", "--augment", "microscopy",
                           "--aug-rotation", "5")) == 0
    text = capsys.readouterr().out
    assert "Image size: auto -> 8x8 (median of 8 training images)" in text
    assert "2 channels (file channels 2,0), z-stack max projection" in text
    assert "microscopy augmentation (8 flips/rotations, rotation +-5 deg" in text
    meta = microcnn.load_model(out).metadata
    pre = meta["preprocessing"]
    assert pre["channels"] == 2 and pre["channel_select"] == [2, 0] and pre["z_projection"] == "max"
    assert len(pre["channel_ranges"]) == 2 and pre["channel_ranges"][0][1] > 3000 > pre["channel_ranges"][1][1]
    assert meta["training"]["augment"]["rotation"] == 5.0 and meta["training"]["augment"]["dihedral"] is True
    assert predict_main([str(data / "validation"), "--model", str(out), "--format", "json"]) == 0
    results = json.loads(capsys.readouterr().out)
    assert len(results) == 4 and {r["class"] for r in results} <= {"a", "b"}
    tifffile.imwrite(tmp_path / "two.tif", np.zeros((2, 8, 8), np.uint16))  # a 2-channel image, no z-stack
    assert predict_main([str(data / "validation"), str(tmp_path / "two.tif"), "--model", str(out), "--tta"]) == 1
    captured = capsys.readouterr()
    assert len(captured.out.splitlines()) == 4  # the others are still predicted
    assert "two.tif: has 2 channel(s) (0 to 1); channel(s) 2 were asked for (--channels)" in captured.err


@pytest.mark.parametrize("argv,message", [
    (["--augment", "seed", "--no-augment"], "--no-augment and --augment seed contradict"),
    (["--no-augment", "--aug-rotation", "5"], "--no-augment turns augmentation off"),
    (["--aug-zoom", "1.5"], "augmentation: config[\"zoom\"]"),
    (["--aug-contrast", "-1"], "--aug-contrast: expected a number >= 0"),
    (["--channels", "0,0"], "--channels: expected distinct channel numbers"),
    (["--z-projection", "median"], "--z-projection: invalid choice"),
    (["--image-size", "big"], "--image-size: expected SIZE or HEIGHTxWIDTH"),
])
def test_bad_options_are_usage_errors(tmp_path, capsys, argv, message):
    (tmp_path / "data").mkdir()
    assert train_main([str(tmp_path / "data"), "--out", str(tmp_path / "m"), *argv]) == 2
    assert message in capsys.readouterr().err


def test_bundled_layout_trains_at_its_own_size_with_the_seed_preset(tmp_path, capsys):
    for split, n in (("train", 4), ("validation", 2)):
        for k, name in enumerate(("x", "y")):
            d = tmp_path / "data" / split / name
            d.mkdir(parents=True)
            for i in range(n):
                Image.fromarray(np.full((28, 28), 60 + 120 * k + i, np.uint8)).save(d / f"{i}.png")
    out = tmp_path / "model"
    assert train_main([str(tmp_path / "data"), "--out", str(out), "--epochs", "1", "--seed", "0"]) == 0
    text = capsys.readouterr().out
    assert "Image size: auto -> 28x28 (median of 8 training images)" in text
    assert "seed augmentation (horizontal flip, shear 0.2 deg, zoom 0.8-1.2)" in text
    assert microcnn.load_model(out).input_shape[1:] == (28, 28, 1)
