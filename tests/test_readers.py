"""read_image (microcnn/readers.py) on every path: tifffile (multi-page, ImageJ and OME axes, z-stacks, C > 3,
8/16/32-bit, float, Orientation), 16-bit colour PNG through pypng, Pillow's formats and the fallback for
TIFF codecs tifffile cannot decode; and multi-channel datasets end to end through FolderDataset."""

import numpy as np
import pytest
from PIL import Image

from microcnn import images
from microcnn.data import DatasetError, FolderDataset, preprocess_for_prediction
from microcnn.readers import ImageDecodeError, read_header, read_image, read_size

tifffile = pytest.importorskip("tifffile", reason="TIFF reading needs tifffile")
png = pytest.importorskip("png", reason="16-bit colour PNG reading needs pypng")


def rand(shape, dtype, seed=0, high=None):
    rng = np.random.default_rng(seed)
    if np.issubdtype(dtype, np.floating):
        return rng.normal(0, 100, shape).astype(dtype)
    return rng.integers(0, high or np.iinfo(dtype).max, shape, endpoint=True).astype(dtype)


def test_plain_multi_page_tiff_reads_every_page_as_a_channel(tmp_path):
    pages = rand((4, 9, 7), np.uint16)
    Image.fromarray(pages[0]).save(tmp_path / "pil.tif", save_all=True,
                                   append_images=[Image.fromarray(p) for p in pages[1:]])
    with tifffile.TiffWriter(tmp_path / "series.tif") as w:  # one series per page
        for page in pages:
            w.write(page, contiguous=False)
    for name in ("pil.tif", "series.tif"):
        pixels, info = read_image(tmp_path / name)
        assert pixels.dtype == np.uint16 and pixels.shape == (9, 7, 4), name
        np.testing.assert_array_equal(pixels, pages.transpose(1, 2, 0))
        assert info.reader == "tifffile" and info.mode == "I;16" and not info.rgb


@pytest.mark.parametrize("flavour", ["imagej", "ome"])
def test_hyperstack_axes_from_metadata_and_z_projection(tmp_path, flavour):
    stack = rand((5, 3, 10, 12), np.uint16, high=4095)  # Z C Y X
    path = tmp_path / f"{flavour}.tif"
    tifffile.imwrite(path, stack, metadata={"axes": "ZCYX"}, **{flavour: True})
    with pytest.raises(ImageDecodeError, match="z-stack of 5 slices.*--z-projection"):
        read_image(path)
    top, info = read_image(path, z_projection="max")
    assert info.axes == "ZCYX" and top.dtype == np.uint16
    np.testing.assert_array_equal(top, stack.max(axis=0).transpose(1, 2, 0))
    mean, _ = read_image(path, z_projection="mean")
    assert mean.dtype == np.float32  # the fraction of the mean is kept
    np.testing.assert_allclose(mean, stack.mean(axis=0).transpose(1, 2, 0), rtol=1e-6)
    picked, _ = read_image(path, channels=[2, 0], z_projection="max")
    np.testing.assert_array_equal(picked, top[:, :, [2, 0]])
    with pytest.raises(ImageDecodeError, match=r"has 3 channel\(s\).*channel\(s\) 3 were asked for"):
        read_image(path, channels=[3], z_projection="max")


def test_ome_four_channels_and_time_series_refused(tmp_path):
    four = rand((4, 8, 8), np.uint8)
    tifffile.imwrite(tmp_path / "c4.ome.tif", four, ome=True, metadata={"axes": "CYX"})
    pixels, info = read_image(tmp_path / "c4.ome.tif")
    assert pixels.shape == (8, 8, 4) and pixels.dtype == np.uint8 and info.axes == "CYX"
    np.testing.assert_array_equal(pixels, four.transpose(1, 2, 0))
    tifffile.imwrite(tmp_path / "t.ome.tif", rand((3, 8, 8), np.uint8), ome=True, metadata={"axes": "TYX"})
    with pytest.raises(ImageDecodeError, match="3 time points"):
        read_image(tmp_path / "t.ome.tif")


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int32, np.float32, np.float64])
def test_tiff_depths_are_kept(tmp_path, dtype):
    a = rand((6, 5), dtype)
    tifffile.imwrite(tmp_path / "a.tif", a)
    pixels, _ = read_image(tmp_path / "a.tif")
    expected = a if dtype in (np.uint8, np.uint16) else a.astype(np.float32)
    assert pixels.dtype == expected.dtype and pixels.shape == (6, 5, 1)
    np.testing.assert_array_equal(pixels[:, :, 0], expected)


def test_float_tiff_non_finite_values_become_zero(tmp_path):
    a = np.array([[1.5, np.nan], [np.inf, -2.0]], np.float32)
    tifffile.imwrite(tmp_path / "f.tif", a)
    pixels, info = read_image(tmp_path / "f.tif")
    assert info.mode == "F"
    np.testing.assert_array_equal(pixels[:, :, 0], [[1.5, 0.0], [0.0, -2.0]])


def test_16bit_rgb_tiff_keeps_full_depth(tmp_path):
    a = rand((7, 9, 3), np.uint16)
    tifffile.imwrite(tmp_path / "rgb.tif", a, photometric="rgb")
    pixels, info = read_image(tmp_path / "rgb.tif")
    assert pixels.dtype == np.uint16 and info.rgb
    np.testing.assert_array_equal(pixels, a)
    decoded = images.decode(tmp_path / "rgb.tif", (7, 9))
    assert decoded.high_depth and decoded.channels == 3
    np.testing.assert_allclose(decoded.pixels, a.astype(np.float32), rtol=1e-6)  # same size: no resampling


@pytest.mark.parametrize("planes,alpha", [(3, False), (3, True), (1, True)])
def test_16bit_colour_and_grey_alpha_png_keep_full_depth(tmp_path, planes, alpha):
    a = rand((6, 5, planes + alpha), np.uint16)
    path = tmp_path / "a.png"
    with open(path, "wb") as f:
        png.Writer(5, 6, greyscale=planes == 1, alpha=alpha, bitdepth=16).write(f, a.reshape(6, -1))
    pixels, info = read_image(path)
    assert info.reader == "pypng" and pixels.dtype == np.uint16
    np.testing.assert_array_equal(pixels, a[:, :, :planes])  # alpha dropped, every bit kept


def test_16bit_tiff_alpha_is_dropped_and_16bit_ppm_kept(tmp_path):
    grey_alpha = rand((5, 6, 2), np.uint16)
    tifffile.imwrite(tmp_path / "ga.tif", grey_alpha, photometric="minisblack", extrasamples=["unassalpha"])
    rgba = rand((5, 6, 4), np.uint16)
    tifffile.imwrite(tmp_path / "rgba.tif", rgba, photometric="rgb", extrasamples=["assocalpha"])
    np.testing.assert_array_equal(read_image(tmp_path / "ga.tif")[0], grey_alpha[:, :, :1])
    pixels, info = read_image(tmp_path / "rgba.tif")
    np.testing.assert_array_equal(pixels, rgba[:, :, :3])
    assert info.rgb
    ppm = rand((4, 5, 3), np.uint16)
    (tmp_path / "a.ppm").write_bytes(b"P6\n# camera\n5 4\n65535\n" + ppm.astype(">u2").tobytes())
    pixels, info = read_image(tmp_path / "a.ppm")
    assert pixels.dtype == np.uint16 and info.rgb
    np.testing.assert_array_equal(pixels, ppm)


def test_pillow_formats_and_16bit_grey_png(tmp_path):
    rgb = rand((6, 5, 3), np.uint8)
    Image.fromarray(rgb).save(tmp_path / "a.png")
    pixels, info = read_image(tmp_path / "a.png")
    assert info.reader == "pillow" and pixels.dtype == np.uint8
    np.testing.assert_array_equal(pixels, rgb)
    grey16 = rand((6, 5), np.uint16)
    Image.fromarray(grey16).save(tmp_path / "g.png")
    pixels, info = read_image(tmp_path / "g.png")
    assert pixels.dtype == np.uint16 and info.mode == "I;16"
    np.testing.assert_array_equal(pixels[:, :, 0], grey16)


def test_orientation_tag_is_applied(tmp_path):
    a = rand((4, 6), np.uint16)
    tifffile.imwrite(tmp_path / "o.tif", a, extratags=[(274, "H", 1, 6, True)])
    pixels, _ = read_image(tmp_path / "o.tif")
    np.testing.assert_array_equal(pixels[:, :, 0], np.rot90(a, -1))  # 6: rotate 90 degrees clockwise


def test_tiff_codec_without_imagecodecs(tmp_path):
    grey = rand((9, 8), np.uint8)
    Image.fromarray(grey).save(tmp_path / "lzw.tif", compression="tiff_lzw")
    pixels, _ = read_image(tmp_path / "lzw.tif")  # tifffile needs imagecodecs for LZW; Pillow keeps 8 bits
    np.testing.assert_array_equal(pixels[:, :, 0], grey)
    try:
        import imagecodecs  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("imagecodecs is installed: every codec is read by tifffile")
    rgb16 = rand((5, 4, 3), np.uint16)
    tifffile.imwrite(tmp_path / "deflate.tif", rgb16, photometric="rgb", compression="zlib")  # zlib is built in
    np.testing.assert_array_equal(read_image(tmp_path / "deflate.tif")[0], rgb16)
    path = tmp_path / "lzw16.tif"
    path.write_bytes((tmp_path / "deflate.tif").read_bytes().replace(b"\x03\x01\x03\x00\x01\x00\x00\x00\x08\x00",
                                                                     b"\x03\x01\x03\x00\x01\x00\x00\x00\x05\x00"))
    with pytest.raises(ImageDecodeError, match="needs the imagecodecs package"):
        read_image(path)


def test_a_stack_too_large_for_memory_is_refused_before_reading(tmp_path, monkeypatch):
    tifffile.imwrite(tmp_path / "z.tif", rand((6, 10, 10), np.uint8), imagej=True, metadata={"axes": "ZYX"})
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 120)  # 100 pixels per plane pass, 600 values do not
    with pytest.raises(ImageDecodeError, match=r"TIFF holds 600 values \(axes ZYX"):
        read_image(tmp_path / "z.tif", z_projection="max")


def test_a_fifo_is_refused_without_blocking(tmp_path):
    import os

    if not hasattr(os, "mkfifo"):
        pytest.skip("no FIFOs on this system")
    os.mkfifo(tmp_path / "pipe.tif")
    with pytest.raises(ImageDecodeError, match="not a regular file"):
        read_image(tmp_path / "pipe.tif")
    assert read_size(tmp_path / "pipe.tif") is None


def test_read_size_from_headers(tmp_path):
    tifffile.imwrite(tmp_path / "a.tif", rand((3, 10, 12), np.uint16), imagej=True, metadata={"axes": "CYX"})
    Image.fromarray(rand((7, 5), np.uint8)).save(tmp_path / "b.png")
    (tmp_path / "c.png").write_bytes(b"not an image")
    assert read_size(tmp_path / "a.tif") == (10, 12)
    assert read_size(tmp_path / "b.png") == (7, 5)
    assert read_size(tmp_path / "c.png") is None
    assert read_header(tmp_path / "a.tif") == {"bits": 16, "channels": 3, "height": 10, "width": 12}
    with open(tmp_path / "d.png", "wb") as f:
        png.Writer(4, 3, greyscale=False, bitdepth=16).write(f, rand((3, 12), np.uint16))
    assert read_header(tmp_path / "d.png") == {"bits": 16, "channels": 3, "height": 3, "width": 4}


def write_fluorescence(root, per_class=3, size=12):
    """Two classes of 4-channel 16-bit OME-TIFFs; class b is bright in channel 2. Channel 0 is ~100x dimmer
    than channel 1, so per-channel scaling matters."""
    rng = np.random.default_rng(1)
    for split in ("train", "val"):
        for k, name in enumerate(("a", "b")):
            (root / split / name).mkdir(parents=True)
            for i in range(per_class):
                a = rng.integers(0, 40, (4, size, size)).astype(np.uint16)
                a[1] *= 100
                a[2] += np.uint16(2000 * k)
                tifffile.imwrite(root / split / name / f"{i}.ome.tif", a, ome=True, metadata={"axes": "CYX"})
    return root


def test_four_channel_dataset_scales_each_channel_and_predicts_the_same(tmp_path):
    root = write_fluorescence(tmp_path / "ds")
    ds = FolderDataset(root, image_size=(12, 12))
    assert ds.input_shape == (12, 12, 4) and ds.x_train.dtype == np.float32
    ranges = ds.preprocessing["channel_ranges"]
    assert len(ranges) == 4 and ranges[1][1] > 50 * ranges[0][1]
    for c in range(4):  # every channel scaled to about [0, 1] by its own percentiles
        assert -0.05 < ds.x_train[..., c].min() and ds.x_train[..., c].max() < 1.05
    paths = sorted((root / "val").rglob("*.tif"))
    x, ok, failed = preprocess_for_prediction(paths, ds.preprocessing)
    assert failed == [] and len(ok) == 6
    np.testing.assert_array_equal(np.sort(x.reshape(6, -1), axis=0), np.sort(ds.x_val.reshape(6, -1), axis=0))
    two = FolderDataset(root, image_size=(12, 12), channels=[2, 0])
    assert two.input_shape == (12, 12, 2) and two.preprocessing["channel_select"] == [2, 0]
    np.testing.assert_allclose(two.x_train[..., 1], ds.x_train[..., 0], rtol=1e-6, atol=1e-6)
    with pytest.raises(DatasetError, match="--color rgb applies to 1- and 3-channel images"):
        FolderDataset(root, image_size=(12, 12), color="rgb")


def test_mixed_channel_counts_are_an_error_naming_files(tmp_path):
    root = write_fluorescence(tmp_path / "ds", per_class=2)
    tifffile.imwrite(root / "train" / "a" / "two.tif", rand((2, 12, 12), np.uint16))
    with pytest.raises(DatasetError, match=r"different channel counts \(2 in .*two.tif, 4 in"):
        FolderDataset(root, image_size=(12, 12))


def test_auto_image_size_is_the_median_capped(tmp_path):
    for k, name in enumerate(("a", "b")):
        for split, sizes in (("train", [(20, 30), (28, 28), (40, 60)]), ("val", [(100, 100)])):
            d = tmp_path / "small" / split / name
            d.mkdir(parents=True)
            for i, (h, w) in enumerate(sizes):
                Image.fromarray(rand((h, w), np.uint8, seed=i + k)).save(d / f"{i}.png")
    ds = FolderDataset(tmp_path / "small")
    assert ds.image_size == (28, 30) and ds.image_size_reason == "median of 6 training images"
    for name in ("a", "b"):
        d = tmp_path / "large" / name
        d.mkdir(parents=True)
        for i in range(2):
            Image.fromarray(rand((300, 600), np.uint8, seed=i)).save(d / f"{i}.png")
    ds = FolderDataset(tmp_path / "large", validation_split=0.5)
    assert ds.image_size == (75, 150) and "at most 150" in ds.image_size_reason


def test_bad_channel_ranges_in_a_model_are_refused_by_name():
    pixels = np.ones((2, 2, 2), np.float32)
    np.testing.assert_allclose(images.scale_high_depth(pixels, "I;16", {"channel_ranges": [[0, 2], [0, 4]]}),
                               np.broadcast_to([0.5, 0.25], (2, 2, 2)))
    for bad in ([[0, 1], [5, 2]], [[0, 1]], [[0, float("nan")], [0, 1]]):
        with pytest.raises(ValueError, match="preprocessing.channel_ranges: expected 2 finite"):
            images.scale_high_depth(pixels, "I;16", {"channel_ranges": bad})
