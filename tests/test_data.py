"""Folder scanning, decoding and batching (microcnn/data.py, microcnn/images.py) on tiny generated folders."""

import os
import sys

import numpy as np
import pytest
from PIL import Image

from microcnn.augment import ImageAugmenter
from microcnn.data import BatchIterator, DatasetError, FolderDataset, preprocess_for_prediction, scan

SIZE = 8


def gray_image(value, size=SIZE):
    rng = np.random.default_rng(value)
    return np.clip(value + rng.integers(-20, 20, (size, size)), 0, 255).astype(np.uint8)


def write_class_folders(root, classes=("b_cells", "a_cells"), per_class=4, ext=".png"):
    for k, name in enumerate(classes):
        d = root / name
        d.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            Image.fromarray(gray_image(40 + 80 * k + i)).save(d / f"img{i}{ext}")
    return root


def test_train_validation_layout(tmp_path):
    write_class_folders(tmp_path / "train", per_class=3)
    write_class_folders(tmp_path / "val", per_class=2)
    names, splits, junk = scan(tmp_path)
    assert names == ["a_cells", "b_cells"]
    assert [lbl for _, lbl in splits["train"]] == [0, 0, 0, 1, 1, 1]
    assert [lbl for _, lbl in splits["validation"]] == [0, 0, 1, 1]
    assert all(p.parent.name == names[lbl] for p, lbl in splits["train"] + splits["validation"])
    assert junk == []


def test_class_folder_layout_is_split_stratified_and_seeded(tmp_path):
    write_class_folders(tmp_path, classes=("x", "y", "z"), per_class=10)
    _, s1, _ = scan(tmp_path, validation_split=0.3, seed=5)
    _, s2, _ = scan(tmp_path, validation_split=0.3, seed=5)
    _, s3, _ = scan(tmp_path, validation_split=0.3, seed=6)
    assert s1 == s2 and s1 != s3
    for label in range(3):
        assert sum(lbl == label for _, lbl in s1["validation"]) == 3
        assert sum(lbl == label for _, lbl in s1["train"]) == 7
    every = sorted(p for p, _ in s1["train"] + s1["validation"])
    assert every == sorted(tmp_path.glob("*/*.png"))
    _, default, _ = scan(tmp_path)  # class folders alone: 20 % held out by default
    assert len(default["validation"]) == 6


def test_junk_files_are_skipped_and_named(tmp_path, monkeypatch):
    root = write_class_folders(tmp_path / "train", per_class=2)
    write_class_folders(tmp_path / "validation", per_class=1)
    a = root / "a_cells"
    (a / "notes.txt").write_text("exposure 20 ms")
    (a / "truncated.png").write_bytes((a / "img0.png").read_bytes()[:60])
    (a / "empty.tif").write_bytes(b"")
    (a / "fake.JPG").write_text("not really a jpeg")
    Image.fromarray(np.zeros((40, 40), np.uint8)).save(a / "bomb.png")  # 1600 px: over the limit set below
    Image.fromarray(np.zeros((30, 30), np.uint8)).save(a / "big.png")  # 900 px: bomb warning level
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 700)
    # Silently ignored: hidden files and folders, OS droppings.
    (a / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (a / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0")
    (a / "._img0.png").write_bytes(b"\0\5\26\7")
    (a / ".ipynb_checkpoints").mkdir()
    Image.fromarray(gray_image(3)).save(a / ".ipynb_checkpoints" / "copy.png")
    ds = FolderDataset(tmp_path, image_size=SIZE)
    assert ds.report.non_images == [a / "notes.txt"]
    failed = dict(ds.report.failed)
    assert set(failed) == {a / "truncated.png", a / "empty.tif", a / "fake.JPG", a / "bomb.png", a / "big.png"}
    assert "decompression" in failed[a / "bomb.png"] and "MAX_IMAGE_PIXELS" in failed[a / "big.png"]
    assert ds.report.counts == {"train": [2, 2], "validation": [1, 1]}
    assert len(ds.x_train) == 4
    text = ds.report.summary(tmp_path)
    for name in ("notes.txt", "truncated.png", "empty.tif", "fake.JPG", "bomb.png"):
        assert name in text
    for hidden in (".DS_Store", "Thumbs.db", "._img0", "ipynb", "copy.png"):
        assert hidden not in text


def test_extensions_match_case_insensitively_and_common_formats_load(tmp_path):
    for cls, k in (("one", 0), ("two", 1)):
        d = tmp_path / "train" / cls
        d.mkdir(parents=True)
        img = Image.fromarray(gray_image(50 + 100 * k))
        img.save(d / "a.PNG")
        img.save(d / "b.Tif")
        img.save(d / "c.bmp")
        img.convert("RGB").save(d / "d.webp", lossless=True)
        img.convert("P").save(d / "e.gif")
        img.save(d / "f.JPEG", quality=95)
    write_class_folders(tmp_path / "validation", classes=("one", "two"), per_class=1)
    ds = FolderDataset(tmp_path, image_size=SIZE)
    assert ds.report.failed == [] and ds.report.non_images == []
    assert ds.report.counts["train"] == [6, 6]
    assert ds.x_train.shape == (12, SIZE, SIZE, 1)  # gray GIF/WebP (identical RGB channels) stay gray
    lossless = ds.x_train[:5, :, :, 0]  # a, b, c, d, e of class "one": lossless formats agree exactly
    assert all(np.array_equal(lossless[0], im) for im in lossless)


def test_16bit_tiff_is_scaled_by_its_real_range_not_clipped(tmp_path):
    rng = np.random.default_rng(0)
    raw = {}
    for cls, top in (("dim", 4095), ("bright", 60000)):
        d = tmp_path / "train" / cls
        d.mkdir(parents=True)
        for i in range(2):
            a = rng.integers(0, top, (SIZE, SIZE)).astype(np.uint16)
            Image.fromarray(a).save(d / f"{i}.tif")
            raw[(cls, i)] = a
    write_class_folders(tmp_path / "validation", classes=("bright", "dim"), per_class=1)
    ds = FolderDataset(tmp_path, image_size=SIZE)
    assert ds.x_train.dtype == np.float32
    values = np.concatenate([a.ravel() for a in raw.values()]).astype(np.float64)
    low, high = np.percentile(values, [0.1, 99.9])
    np.testing.assert_allclose(ds.preprocessing["high_depth_range"], [low, high], rtol=1e-6)
    expected = (raw[("dim", 1)] - low) / (high - low)  # sorted classes: bright=0, dim=1; dim/1 is last
    np.testing.assert_allclose(ds.x_train[3, :, :, 0], expected, rtol=1e-5, atol=1e-6)
    assert len(np.unique(ds.x_train[2:])) > 50  # a 12-bit image keeps its levels
    assert ds.x_train.max() > 1.0  # beyond the 99.9th percentile: not clipped
    # 8-bit validation images in the same model are scaled by 1/255.
    np.testing.assert_allclose(ds.x_val[0, :, :, 0], gray_image(40) / 255.0, rtol=1e-6)
    x, ok, failed = preprocess_for_prediction([tmp_path / "train/dim/1.tif"], ds.preprocessing)
    assert len(ok) == 1 and failed == []
    np.testing.assert_array_equal(x[0], ds.x_train[3])


def test_float_tiff(tmp_path):
    rng = np.random.default_rng(1)
    for cls, offset in (("neg", -1.0), ("pos", 2.0)):
        d = tmp_path / cls
        d.mkdir()
        for i in range(3):
            Image.fromarray((offset + rng.standard_normal((SIZE, SIZE))).astype(np.float32)).save(d / f"{i}.tiff")
    ds = FolderDataset(tmp_path, image_size=SIZE, validation_split=0.34, seed=0)
    assert ds.x_train.dtype == np.float32 and ds.input_shape == (SIZE, SIZE, 1)
    low, high = ds.preprocessing["high_depth_range"]
    assert low < -1 and high > 2.5
    assert ds.x_train.min() < 0.05 and ds.x_train.max() > 0.95


def test_exif_orientation_is_applied(tmp_path):
    a = np.zeros((SIZE, SIZE), np.uint8)
    a[:2, :4] = 255  # a bright bar at the top left
    for cls in ("p", "q"):
        (tmp_path / cls).mkdir()
        exif = Image.Exif()
        exif[0x0112] = 6  # "rotate 90 CW to display"
        Image.fromarray(a).save(tmp_path / cls / "rot.png", exif=exif)
        Image.fromarray(a).save(tmp_path / cls / "plain.png")
    x, _, _ = preprocess_for_prediction([tmp_path / "p/rot.png", tmp_path / "p/plain.png"],
                                         {"image_size": [SIZE, SIZE], "channels": 1})
    np.testing.assert_array_equal(x[1, :, :, 0], a / np.float32(255))
    np.testing.assert_array_equal(x[0, :, :, 0], np.rot90(a, k=-1) / np.float32(255))


def test_color_auto_grayscale_and_rgb(tmp_path):
    write_class_folders(tmp_path / "train", per_class=2)
    write_class_folders(tmp_path / "validation", per_class=1)
    assert FolderDataset(tmp_path, image_size=SIZE).input_shape == (SIZE, SIZE, 1)
    rgb = FolderDataset(tmp_path, image_size=SIZE, color="rgb")
    assert rgb.input_shape == (SIZE, SIZE, 3)
    np.testing.assert_array_equal(rgb.x_train[..., 0], rgb.x_train[..., 2])
    colour = np.random.default_rng(2).integers(0, 256, (SIZE, SIZE, 3)).astype(np.uint8)
    Image.fromarray(colour).save(tmp_path / "train" / "a_cells" / "colour.png")
    auto = FolderDataset(tmp_path, image_size=SIZE)
    assert auto.input_shape == (SIZE, SIZE, 3)
    np.testing.assert_array_equal(auto.x_train[0], colour)  # sorted: a_cells/colour.png is first
    gray = FolderDataset(tmp_path, image_size=SIZE, color="grayscale")
    luma = colour.astype(np.float64) @ [0.299, 0.587, 0.114]
    assert np.abs(gray.x_train[0, :, :, 0].astype(np.float64) - luma).max() <= 0.5 + 1e-3
    with pytest.raises(ValueError, match="color"):
        FolderDataset(tmp_path, image_size=SIZE, color="cmyk")


def test_resize_to_height_width(tmp_path):
    write_class_folders(tmp_path, per_class=3)
    ds = FolderDataset(tmp_path, image_size=(6, 4), validation_split=0.34)
    expected = np.asarray(Image.open(sorted((tmp_path / "a_cells").glob("*.png"))[1]).resize((4, 6),
                          Image.Resampling.BILINEAR))
    assert ds.x_train.shape[1:] == (6, 4, 1)
    assert any(np.array_equal(x[:, :, 0], expected) for x in ds.x_train)
    for bad in (0, (3,), "big", (4.5, 4)):
        with pytest.raises(ValueError, match="image_size"):
            FolderDataset(tmp_path, image_size=bad)


@pytest.mark.parametrize("case", ["empty_class", "one_class", "missing_validation", "unknown_val_class",
                                  "val_without_train", "all_unreadable", "not_a_dir"])
def test_dataset_errors_name_the_folder(tmp_path, case):
    train = write_class_folders(tmp_path / "train", per_class=2)
    write_class_folders(tmp_path / "validation", per_class=1)
    expect = str(tmp_path)
    if case == "empty_class":
        (train / "c_empty").mkdir()
        (train / "c_empty" / "readme.txt").write_text("x")
        expect = str(train / "c_empty")
    elif case == "one_class":
        for p in (train / "b_cells").iterdir():
            p.unlink()
        (train / "b_cells").rmdir()
        expect = str(train)
    elif case == "missing_validation":
        for p in (tmp_path / "validation").rglob("*.png"):
            p.unlink()
        for d in (tmp_path / "validation").iterdir():
            d.rmdir()
        (tmp_path / "validation").rmdir()
    elif case == "unknown_val_class":
        write_class_folders(tmp_path / "validation", classes=("zebra",), per_class=1)
        expect = "zebra"
    elif case == "val_without_train":
        (tmp_path / "train").rename(tmp_path / "training")
    elif case == "all_unreadable":
        for p in (train / "a_cells").iterdir():
            p.write_bytes(b"")
        expect = "a_cells"
    else:
        tmp_path = tmp_path / "nope"
        expect = "nope"
    with pytest.raises(DatasetError, match=expect.replace("\\", "\\\\")):
        FolderDataset(tmp_path, image_size=SIZE)


def test_prediction_preprocessing_repeats_training_exactly(tmp_path):
    write_class_folders(tmp_path / "train", per_class=2)
    write_class_folders(tmp_path / "validation", per_class=1)
    ds = FolderDataset(tmp_path, image_size=5, color="rgb")
    paths = [p for p, _ in scan(tmp_path)[1]["train"]]
    (tmp_path / "broken.png").write_bytes(b"\x89PNG")
    x, ok, failed = preprocess_for_prediction([paths[0], tmp_path / "broken.png", paths[3]], ds.preprocessing)
    assert ok == [paths[0], paths[3]] and [p for p, _ in failed] == [tmp_path / "broken.png"]
    batch = next(iter(ds.batches("train", batch_size=4, shuffle=False)))[0]
    np.testing.assert_array_equal(x, batch[[0, 3]])


def test_batch_iterator_epochs(tmp_path):
    x = np.arange(10 * 2 * 2 * 1, dtype=np.uint8).reshape(10, 2, 2, 1)
    y = np.arange(10, dtype=np.int32)
    it = BatchIterator(x, y, batch_size=4, shuffle=True, seed=3)
    assert len(it) == 3
    epochs = [[(xb, yb) for xb, yb in it] for _ in range(2)]
    for epoch in epochs:
        assert [len(yb) for _, yb in epoch] == [4, 4, 2]
        labels = np.concatenate([yb for _, yb in epoch])
        assert sorted(labels.tolist()) == list(range(10))
        for xb, yb in epoch:
            assert xb.dtype == np.float32 and yb.dtype == np.int32
            np.testing.assert_array_equal(xb, x[yb].astype(np.float32) / np.float32(255))
    assert not all(np.array_equal(a[1], b[1]) for a, b in zip(epochs[0], epochs[1]))
    again = [yb for _, yb in BatchIterator(x, y, batch_size=4, shuffle=True, seed=3)]
    assert all(np.array_equal(a[1], b) for a, b in zip(epochs[0], again))
    aug = BatchIterator(x, y, batch_size=4, augmenter=ImageAugmenter(seed=0), seed=3)
    state = aug.get_state()
    first = [xb for xb, _ in aug]
    aug.set_state(state)
    np.testing.assert_array_equal(np.concatenate(first), np.concatenate([xb for xb, _ in aug]))
    with pytest.raises(ValueError, match="batch_size"):
        BatchIterator(x, y, batch_size=0)
    with pytest.raises(ValueError, match="y: expected 10"):
        BatchIterator(x, y[:3])


@pytest.mark.skipif(not hasattr(os, "symlink") or sys.platform == "win32", reason="needs symbolic links")
def test_symlinked_class_folder_and_link_loop(tmp_path):
    elsewhere = write_class_folders(tmp_path / "elsewhere", classes=("linked",), per_class=2)
    root = write_class_folders(tmp_path / "data", classes=("plain",), per_class=2)
    os.symlink(elsewhere / "linked", root / "linked")
    os.symlink(root, root / "plain" / "loop")  # a link back up the tree
    names, splits, _ = scan(root, validation_split=0.5)
    assert names == ["linked", "plain"]
    paths = [p for p, _ in splits["train"] + splits["validation"]]
    assert len(paths) == 4 and not any("loop" in str(p) for p in paths)


def test_large_jpeg_decoded_at_reduced_scale_consistently(tmp_path):
    yy, xx = np.mgrid[0:240, 0:320]
    smooth = (127 + 100 * np.sin(xx / 25.0) * np.cos(yy / 30.0)).astype(np.uint8)
    for cls in ("p", "q"):
        (tmp_path / cls).mkdir()
        for i in range(2):
            Image.fromarray(smooth).save(tmp_path / cls / f"{i}.jpg", quality=95)
    ds = FolderDataset(tmp_path, image_size=(24, 32), validation_split=0.5)
    x, _, _ = preprocess_for_prediction([tmp_path / "p" / "0.jpg"], ds.preprocessing)
    np.testing.assert_array_equal(x[0], ds.batches("train", 4, shuffle=False).x[0] / np.float32(255))
    full = np.asarray(Image.open(tmp_path / "p" / "0.jpg").convert("L").resize((32, 24), Image.Resampling.BILINEAR))
    assert np.abs(x[0, :, :, 0] * 255 - full).mean() < 3.0  # the reduced-scale decode is a faithful thumbnail


def test_the_log_line_names_only_the_scaling_rules_the_files_use():
    from microcnn.images import describe

    pre = {"image_size": [8, 8], "channels": 1, "high_depth_range": [133.6, 2961.0]}
    assert describe(pre, any_8bit=False) == "8x8, grayscale, (x - 133.6) / (2961 - 133.6)"
    assert describe(pre) == "8x8, grayscale, 8-bit / 255, high-bit-depth (x - 133.6) / (2961 - 133.6)"
    assert describe({"image_size": [8, 8], "channels": 3}, any_8bit=True) == "8x8, RGB, 8-bit / 255"
