"""Reading one image file at full depth into an (H, W, C) array: `read_image(path, ...) -> (pixels, info)`.

- TIFF goes through tifffile: every page of the first series (of all series when they are alike), axes from OME-XML or ImageJ metadata when
  present (T time, Z depth, C channel, S samples, Y X plane). Channel-like axes (C, S, and an unlabelled
  page axis I/Q, as in a plain multi-page TIFF written one channel per page) become C; a Z axis longer than
  one needs `z_projection` ("max" or "mean"); any other axis longer than one (time points, angles) is
  refused. 8/16/32-bit integers and floats are kept. The TIFF Orientation tag is applied.
  A TIFF compressed with a codec tifffile cannot decode without the optional `imagecodecs` package (LZW,
  JPEG, ...) is read by Pillow when that keeps its depth (8-bit, single-channel 16-bit or float), else it is
  refused with the package to install.
- 16-bit colour and 16-bit grey+alpha PNG go through pypng, 16-bit colour PPM through NumPy (Pillow would
  reduce them to 8 bits).
- Everything else goes through Pillow: first frame, EXIF orientation applied, palettes expanded.
Alpha is dropped everywhere. The result is never reduced in depth silently: uint8, uint16 stay as they
are, every other type becomes float32 (non-finite values become 0).

This module reads bytes into arrays and knows nothing of models or datasets; images.py resizes and scales.
"""

import os
import stat

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

Z_PROJECTIONS = ("max", "mean")
_TIFF_SUFFIXES = (".tif", ".tiff")
_CHANNEL_AXES = "CSIQ"  # channel, samples (RGB), unlabelled page sequences
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Pillow's transpose for each TIFF/EXIF orientation value, as NumPy operations on (H, W, C).
_ORIENT = {
    2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1], 4: lambda a: a[::-1],
    5: lambda a: a.transpose(1, 0, 2), 6: lambda a: np.rot90(a, -1), 7: lambda a: a[::-1, ::-1].transpose(1, 0, 2),
    8: lambda a: np.rot90(a, 1),
}


class ImageDecodeError(Exception):
    """A file that has an image extension but cannot be decoded; the message says why."""


class ImageInfo:
    """What `read_image` found: `reader` (tifffile, pypng or pillow), `dtype` of the file's samples, its
    `axes` and `shape` (tifffile's letters; "YXS"/"YX" otherwise), `mode` (the Pillow-style name images.py
    scales by: L/RGB for 8-bit, I;16, I or F for high depth), `rgb` (the channels are red, green, blue)."""

    __slots__ = ("axes", "dtype", "mode", "reader", "rgb", "shape")

    def __init__(self, reader, dtype, axes, shape, mode, rgb):
        self.reader, self.dtype, self.axes, self.shape = reader, str(dtype), axes, tuple(shape)
        self.mode, self.rgb = mode, rgb

    def __repr__(self):
        return (f"ImageInfo(reader={self.reader!r}, dtype={self.dtype!r}, axes={self.axes!r}, "
                f"shape={self.shape}, mode={self.mode!r}, rgb={self.rgb})")


def read_image(path, channels=None, z_projection=None, target=None, reduce_above=16_000_000):
    """(pixels (H, W, C) uint8 | uint16 | float32, ImageInfo) of one file at full depth, at full resolution
    unless `target` is given. channels: indices to keep (in file order), or None for all. z_projection: None,
    "max" or "mean". target (H, W), the size the caller will resize to: a JPEG may be decoded at a reduced
    DCT scale that still covers it, and a Pillow image above `reduce_above` pixels is box-averaged by the
    largest integer factor that keeps it at least twice the target (float32 then), so that a huge image needs
    about its decoded size in memory. Raises ImageDecodeError naming the cause."""
    if z_projection not in (None,) + Z_PROJECTIONS:
        raise ValueError(f"z_projection: expected None, 'max' or 'mean', got {z_projection!r}")
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):  # a FIFO or device would block or never end
            raise ImageDecodeError("not a regular file (a FIFO, socket or device); skipped")
        with open(path, "rb") as f:
            head = f.read(512)  # one read decides the reader
        if str(path).lower().endswith(_TIFF_SUFFIXES) or _is_tiff(head):
            pixels, info = _read_tiff(path, z_projection)
        elif _png_16bit_colour(head):
            pixels, info = _read_png16(path)
        elif (header := _ppm16_header(head)) is not None:
            pixels, info = _read_ppm16(path, *header)
        else:
            pixels, info = _read_pillow(path, target, reduce_above)
    except ImageDecodeError:
        raise
    except Image.DecompressionBombError as e:
        raise ImageDecodeError(f"too large for Pillow's decompression-bomb limit ({e})") from None
    except UnidentifiedImageError:
        raise ImageDecodeError("not a readable image (unrecognised or empty file)") from None
    except (OSError, ValueError, SyntaxError, EOFError, IndexError, TypeError, KeyError, MemoryError,
            ZeroDivisionError, AssertionError, RuntimeError) as e:
        raise ImageDecodeError(f"could not decode: {e}") from None
    if channels is not None:
        pixels = select_channels(pixels, channels)
    return pixels, info


def select_channels(pixels, channels):
    """pixels[..., channels] with an error naming the channel count when an index is out of range."""
    have = pixels.shape[2]
    bad = [c for c in channels if not 0 <= c < have]
    if bad:
        raise ImageDecodeError(f"has {have} channel(s) (0 to {have - 1}); channel(s) "
                               f"{', '.join(map(str, bad))} were asked for (--channels)")
    return np.ascontiguousarray(pixels[:, :, list(channels)])


def _check_pixels(width, height):
    limit = Image.MAX_IMAGE_PIXELS
    if limit is not None and width * height > limit:
        raise ImageDecodeError(f"{width}x{height} is larger than Pillow's limit of {limit} pixels "
                               "(PIL.Image.MAX_IMAGE_PIXELS); skipped as a possible decompression bomb")


def _is_tiff(head):
    return head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")


def _png_16bit_colour(head):
    """True for a PNG of bit depth 16 with colour (type 2, 6) or grey+alpha (type 4)."""
    return (len(head) >= 29 and head[:8] == _PNG_SIGNATURE and head[12:16] == b"IHDR"
            and head[24] == 16 and head[25] in (2, 4, 6))


def _mode_for(dtype, channels):
    if dtype == np.uint8:
        return "RGB" if channels == 3 else "L"
    if dtype == np.uint16:
        return "I;16"
    if np.issubdtype(dtype, np.integer):
        return "I"
    return "F"


def _normalise_dtype(a):
    """uint8/uint16 as they are; other integers and floats as float32 with non-finite values set to 0."""
    if a.dtype in (np.uint8, np.uint16):
        return np.ascontiguousarray(a)
    if a.dtype == np.bool_:
        return np.ascontiguousarray(a.astype(np.uint8) * np.uint8(255))
    out = a.astype(np.float32)
    if not np.isfinite(out).all():
        out = np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0)
    return out


def _read_tiff(path, z_projection):
    import tifffile

    with tifffile.TiffFile(path) as tif:
        if not tif.series:
            raise ImageDecodeError("TIFF holds no image")
        series = tif.series[0]
        axes, shape = series.axes, series.shape
        if "Y" not in axes or "X" not in axes:
            raise ImageDecodeError(f"TIFF has axes {axes} {shape}: no Y and X image plane")
        _check_pixels(shape[axes.index("X")], shape[axes.index("Y")])
        limit = Image.MAX_IMAGE_PIXELS
        values = int(np.prod(shape, dtype=np.float64))
        if limit is not None and values > 4 * limit:
            raise ImageDecodeError(f"TIFF holds {values} values (axes {axes}, shape {shape}), more than 4x Pillow's "
                                   f"pixel limit ({4 * limit}, PIL.Image.MAX_IMAGE_PIXELS); skipped")
        page = tif.pages[0]
        # Several same-shaped series without OME/ImageJ metadata (tifffile writing one page per call): one
        # image, a page per channel, as a plain multi-page TIFF reads.
        stack = [s for s in tif.series if s.shape == shape and s.dtype == series.dtype and s.axes == axes]
        stack = stack if len(stack) == len(tif.series) > 1 and not (tif.is_ome or tif.is_imagej) else [series]
        try:
            data = np.stack([s.asarray() for s in stack]) if len(stack) > 1 else series.asarray()
        except ValueError as e:
            if "imagecodecs" not in str(e):
                raise
            return _read_tiff_with_pillow(path, e, axes, shape, page)
        if len(stack) > 1:
            axes, shape = "I" + axes, data.shape
        orientation = page.tags.get(274)
        orientation = orientation.value if orientation is not None else 1
    photometric = getattr(page.photometric, "name", "")
    extra = len(page.extrasamples or ())
    if extra and "S" in axes and data.shape[axes.index("S")] > extra:  # alpha (or other extra) samples
        s = axes.index("S")
        data = data.take(np.arange(data.shape[s] - extra), axis=s)
    pixels = _to_hwc(data, axes, z_projection)
    pixels = _ORIENT.get(int(orientation), lambda a: a)(pixels)
    pixels = _normalise_dtype(pixels)
    rgb = photometric in ("RGB", "YCBCR") and pixels.shape[2] == 3 and "C" not in axes
    if photometric == "MINISWHITE" and np.issubdtype(data.dtype, np.unsignedinteger):
        pixels = np.iinfo(data.dtype).max - pixels
    info = ImageInfo("tifffile", data.dtype, axes, shape, _mode_for(pixels.dtype, pixels.shape[2]), rgb)
    return pixels, info


def _to_hwc(data, axes, z_projection):
    """An N-d tifffile array with axis letters -> (H, W, C): channel-like axes merged into C (in file
    order), Z projected, length-1 axes dropped; anything else is refused."""
    for i, (a, n) in reversed(list(enumerate(zip(axes, data.shape)))):
        if a in "YX" + _CHANNEL_AXES or n > 1 and a == "Z":
            continue
        if n == 1:
            data = data.take(0, axis=i)
            axes = axes[:i] + axes[i + 1:]
        else:
            what = {"T": "time points"}.get(a, f"positions along axis {a}")
            raise ImageDecodeError(f"TIFF has {n} {what} (axes {axes}, shape {data.shape}); microcnn reads one "
                                   f"image (optionally a z-stack and channels) per file")
    if "Z" in axes:
        z = axes.index("Z")
        if z_projection is None:
            raise ImageDecodeError(f"TIFF is a z-stack of {data.shape[z]} slices (axes {axes}); choose "
                                   f"--z-projection max or mean")
        dtype = data.dtype
        data = data.max(axis=z) if z_projection == "max" else data.mean(axis=z, dtype=np.float64)
        if z_projection == "mean" and np.issubdtype(dtype, np.integer):
            data = data.astype(np.float32)  # the mean of integers keeps its fraction: full depth
        axes = axes[:z] + axes[z + 1:]
    order = [axes.index("Y"), axes.index("X")] + [i for i, a in enumerate(axes) if a not in "YX"]
    data = np.transpose(data, order)
    h, w = data.shape[:2]
    return data.reshape(h, w, -1)


def _read_tiff_with_pillow(path, error, axes, shape, page):
    """A TIFF whose codec tifffile lacks: Pillow, when it keeps the depth (see module docstring)."""
    plane_only = all(a in "YXS" or n == 1 for a, n in zip(axes, shape))
    keeps_depth = page.bitspersample <= 8 or page.samplesperpixel == 1
    if not (plane_only and keeps_depth):
        raise ImageDecodeError(f"TIFF compressed with {page.compression.name} ({page.bitspersample}-bit, "
                               f"{page.samplesperpixel} sample(s) per pixel, axes {axes}) needs the "
                               f"imagecodecs package to be read at full depth: pip install imagecodecs")
    return _read_pillow(path, None, None)


def _read_png16(path):
    import png

    with open(path, "rb") as f:
        width, height, rows, meta = png.Reader(file=f).asDirect()
        _check_pixels(width, height)
        planes = meta["planes"]
        a = np.vstack([np.asarray(r, np.uint16) for r in rows]).reshape(height, width, planes)
    if meta.get("alpha"):
        a = a[:, :, :-1]
    a = np.ascontiguousarray(a)
    depth = meta.get("bitdepth", 16)
    if depth != 16:  # sBIT or rescaled: the values' range is 2**depth - 1
        a = a.astype(np.float32)
    info = ImageInfo("pypng", np.uint16, "YXS", (height, width, planes), _mode_for(a.dtype, a.shape[2]),
                     a.shape[2] == 3)
    return a, info


def _ppm16_header(head):
    """(width, height, maxval, data offset) of a binary colour PPM (P6) with maxval > 255, else None."""
    if not head.startswith(b"P6"):
        return None
    tokens, i = [], 2
    while len(tokens) < 3 and i < len(head):
        if head[i:i + 1] == b"#":
            i = head.find(b"\n", i) + 1 or len(head)
        elif head[i:i + 1].isspace():
            i += 1
        else:
            j = i
            while j < len(head) and not head[j:j + 1].isspace() and head[j:j + 1] != b"#":
                j += 1
            tokens.append(head[i:j])
            i = j
    if len(tokens) < 3 or not all(t.isdigit() for t in tokens) or int(tokens[2]) <= 255:
        return None
    return int(tokens[0]), int(tokens[1]), int(tokens[2]), i + 1


def _read_ppm16(path, width, height, maxval, offset):
    """A 16-bit colour PPM (Pillow reduces it to 8 bits): big-endian samples after the header."""
    _check_pixels(width, height)
    a = np.fromfile(path, dtype=">u2", count=width * height * 3, offset=offset)
    if a.size != width * height * 3:
        raise ImageDecodeError(f"PPM is truncated: {a.size} of {width * height * 3} values")
    a = a.astype(np.uint16).reshape(height, width, 3)
    return a, ImageInfo("numpy", np.uint16, "YXS", (height, width, 3), "I;16", True)


def _reduce_large(im, target, reduce_above):
    """im box-averaged by the largest integer factor keeping it at least twice `target` (H, W), when it has more
    than `reduce_above` pixels; else im. Done on Pillow's image, before any NumPy copy of it."""
    if target is None or reduce_above is None:
        return im
    factor = min(im.width // (2 * target[1]), im.height // (2 * target[0]))
    if im.width * im.height <= reduce_above or factor < 2:
        return im
    if im.mode in ("L", "LA", "RGB", "RGBA", "CMYK", "I", "F"):
        return im.reduce(factor)
    if im.mode.startswith("I;16"):  # Pillow cannot reduce these: block means, a band of rows at a time
        rows, cols = im.height // factor, im.width // factor
        out = np.empty((rows, cols), np.float32)
        for r in range(rows):  # (np.asarray of the whole image would hold two more copies of it)
            band = np.asarray(im.crop((0, r * factor, cols * factor, (r + 1) * factor))).astype(np.float32)
            out[r] = band.reshape(factor, cols, factor).mean(axis=(0, 2))
        return Image.fromarray(out, "F")
    return im


def _read_pillow(path, target, reduce_above):
    with Image.open(path) as im:
        _check_pixels(*im.size)
        if im.format == "JPEG" and target is not None:
            # libjpeg decodes at 1/2, 1/4 or 1/8 scale when that still covers the target size (square:
            # EXIF may rotate): several times faster for camera-sized JPEGs.
            side = max(target)
            im.draft(im.mode, (side, side))
        ImageOps.exif_transpose(im, in_place=True)  # in place: no second copy of a large image
        im.load()
        source_mode = im.mode
        im = _reduce_large(im, target, reduce_above)
        mode = im.mode
        if mode in ("I", "F", "I;16", "I;16B", "I;16L", "I;16N"):
            a = np.asarray(im)
            a = a.astype(np.uint16) if mode.startswith("I;16") else a
            pixels = _normalise_dtype(a)[:, :, None]
            kind = "I;16" if source_mode.startswith("I;16") else source_mode
            return pixels, ImageInfo("pillow", a.dtype, "YX", a.shape, kind, False)
        if mode == "1":
            im = im.convert("L")
        elif mode in ("LA", "La"):
            im = im.getchannel("L")
        elif mode != "L":
            im = im.convert("RGB")
        a = np.asarray(im)
        pixels = np.ascontiguousarray(a if a.ndim == 3 else a[:, :, None])
        return pixels, ImageInfo("pillow", np.uint8, "YXS" if a.ndim == 3 else "YX", a.shape, mode,
                                 pixels.shape[2] == 3)
def read_size(path):
    """(height, width) from the file's header without decoding pixels, or None when it cannot be read."""
    kind = read_header(path)
    return None if kind is None else (kind["height"], kind["width"])


def read_header(path):
    """{"bits", "channels", "height", "width"} of the image read_image would return, from the file's header
    (no pixels decoded), or None when it cannot be read. Channels are before any channel selection."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return None
        with open(path, "rb") as f:
            head = f.read(512)
        if str(path).lower().endswith(_TIFF_SUFFIXES) or _is_tiff(head):
            import tifffile

            with tifffile.TiffFile(path) as tif:
                series, page = tif.series[0], tif.pages[0]
                axes, shape = series.axes, series.shape
                channels = int(np.prod([n for a, n in zip(axes, shape) if a in _CHANNEL_AXES]))
                channels -= len(page.extrasamples or ()) if "S" in axes else 0
                return {"bits": series.dtype.itemsize * 8, "channels": max(1, channels),
                        "height": shape[axes.index("Y")], "width": shape[axes.index("X")]}
        if _png_16bit_colour(head):
            return {"bits": 16, "channels": 1 if head[25] == 4 else 3, "height": int.from_bytes(head[20:24], "big"),
                    "width": int.from_bytes(head[16:20], "big")}
        if (ppm := _ppm16_header(head)) is not None:
            return {"bits": 16, "channels": 3, "height": ppm[1], "width": ppm[0]}
        with Image.open(path) as im:
            mode, (width, height) = im.mode, im.size
    except Exception:  # noqa: BLE001 - any unreadable header: the file is reported when it is decoded
        return None
    bits = 1 if mode == "1" else 16 if mode.startswith("I;16") else 32 if mode in ("I", "F") else 8
    channels = 1 if mode in ("1", "L", "LA", "La", "I", "F") or mode.startswith("I;16") else 3
    return {"bits": bits, "channels": channels, "height": int(height), "width": int(width)}
