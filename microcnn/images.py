"""Decoding one image file into the arrays the network sees, identically for training and prediction.

The rule, stored as the model's `preprocessing` dict and applied again by `microcnn-predict`:

1. Open with Pillow, first frame only (multi-page TIFF, animated GIF), EXIF orientation applied
   (`ImageOps.exif_transpose`), alpha dropped. Large JPEGs are decoded at a reduced DCT scale that still
   covers the target size (Pillow's `draft`).
2. 8-bit images (modes 1, L, P, RGB, RGBA, CMYK, ...) stay 8-bit; an RGB image whose three channels are
   identical counts as single-channel. High-bit-depth images (16-bit integer "I;16*", 32-bit integer "I",
   32-bit float "F") are kept at full precision as float32.
3. Resize to `image_size` (H, W) with Pillow's bilinear filter (antialiased when shrinking).
4. Channels: `channels` 1 converts colour to luma (ITU-R 601-2, the weights of Pillow's `convert("L")`),
   `channels` 3 repeats a single channel three times.
5. Scale to float32: 8-bit values by 1/255 (Keras's `rescale=1/255`); high-bit-depth values by
   (x - low) / (high - low) where low/high are the 0.1th and 99.9th percentiles of all high-bit-depth
   training pixels, so a 12-bit camera's data in a 16-bit file uses the full range, a hot pixel does not
   set the scale, and nothing is clipped (values can exceed [0, 1] a little). A model trained on 8-bit
   images only, shown a high-bit-depth image, scales integers by their type's maximum and floats as is.
"""

import contextlib
import os
import stat
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

PREPROCESSING_VERSION = 1
HIGH_DEPTH_PERCENTILES = (0.1, 99.9)
REDUCE_ABOVE_PIXELS = 16_000_000  # larger images are box-reduced right after decoding (_reduce_large)
_SCALED_LIMIT = 1e4  # bound of a scaled high-bit-depth value (normal images give about [0, 1])
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)
_HIGH_DEPTH_MODES = {"I", "F", "I;16", "I;16B", "I;16L", "I;16N"}
_TYPE_MAX = {"I": 2.0**31 - 1, "I;16": 65535.0, "I;16B": 65535.0, "I;16L": 65535.0, "I;16N": 65535.0}
# Pillow registers these but needs external handlers or cannot decode pixels from them.
_UNSUPPORTED_FORMATS = {"BUFR", "GRIB", "HDF5", "MPEG", "EPS", "WMF"}


def readable_extensions():
    """Lower-case file extensions (".png", ".tif", ...) Pillow can decode in this installation."""
    Image.init()
    return {ext.lower() for ext, fmt in Image.registered_extensions().items()
            if fmt in Image.OPEN and fmt not in _UNSUPPORTED_FORMATS}


class ImageDecodeError(Exception):
    """A file that has an image extension but cannot be decoded; the message says why."""


class DecodedImage:
    """One image after steps 1-3: `pixels` (H, W, 1 or 3), uint8 for 8-bit sources or float32 raw values
    for high-bit-depth ones, and the Pillow `mode` it came from."""

    __slots__ = ("mode", "pixels")

    def __init__(self, pixels, mode):
        self.pixels = pixels
        self.mode = mode

    @property
    def high_depth(self):
        return self.pixels.dtype != np.uint8

    @property
    def channels(self):
        return self.pixels.shape[2]


def decode(path, image_size):
    """Open, orient, and resize one file to image_size (H, W); raises ImageDecodeError naming the cause.
    Pillow's own warnings are left to the caller (see quiet_decoder_warnings)."""
    height, width = image_size
    try:
        # Only regular files: opening a FIFO named *.png would wait forever for a writer.
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise ImageDecodeError("not a regular file (a FIFO, socket or device); skipped")
        with Image.open(path) as im:
            # Pillow only warns between MAX_IMAGE_PIXELS and twice that (and raises above); treat both as a
            # possible decompression bomb and skip the file, whatever the warning filters say.
            limit = Image.MAX_IMAGE_PIXELS
            if limit is not None and im.size[0] * im.size[1] > limit:
                raise ImageDecodeError(f"{im.size[0]}x{im.size[1]} is larger than Pillow's limit of {limit} "
                                       "pixels (PIL.Image.MAX_IMAGE_PIXELS); skipped as a possible "
                                       "decompression bomb")
            if im.format == "JPEG":
                # Let libjpeg decode at 1/2, 1/4 or 1/8 scale when that still covers the target size
                # (square: EXIF may rotate): several times faster for camera-sized JPEGs.
                side = max(height, width)
                im.draft(im.mode, (side, side))
            ImageOps.exif_transpose(im, in_place=True)  # in place: no second copy of a large image
            im.load()
            source_mode = im.mode
            return _resize(_reduce_large(im, height, width), height, width, source_mode)
    except Image.DecompressionBombError as e:
        raise ImageDecodeError(f"too large for Pillow's decompression-bomb limit ({e})") from None
    except UnidentifiedImageError:
        raise ImageDecodeError("not a readable image (unrecognised or empty file)") from None
    except ImageDecodeError:
        raise
    except (OSError, ValueError, SyntaxError, EOFError, IndexError, TypeError, KeyError, MemoryError) as e:
        raise ImageDecodeError(f"could not decode: {e}") from None


@contextlib.contextmanager
def quiet_decoder_warnings():
    """Silences Pillow's warnings (odd EXIF, palette transparency, decompression-bomb size) while a batch of
    files is decoded: decode() reports what matters as ImageDecodeError. Enter it in the main thread."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def decode_many(paths, image_size, progress=None):
    """[(DecodedImage or None, error message or None)] in the order of paths, with Pillow's warnings
    silenced. (Decoding in threads gave no measurable gain on a loaded 2-core machine, so it is serial.)"""

    def one(path):
        try:
            return decode(path, image_size), None
        except ImageDecodeError as e:
            return None, str(e)

    with quiet_decoder_warnings():
        results = map(one, paths)
        return list(progress(results, len(paths)) if progress else results)


def _reduce_large(im, height, width):
    """An image above REDUCE_ABOVE_PIXELS, box-averaged by the largest integer factor that keeps it at least
    twice the target size: the steps after decoding (array copies, channel checks, resampling) then work on a
    small image, so an 81-megapixel PNG needs about its decoded size in memory instead of several times it.
    Smaller images are untouched."""
    factor = min(im.width // (2 * width), im.height // (2 * height))
    if im.width * im.height <= REDUCE_ABOVE_PIXELS or factor < 2:
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


def _resize(im, height, width, source_mode=None):
    mode = im.mode
    if mode in _HIGH_DEPTH_MODES:
        raw = np.asarray(im).astype(np.float32)
        raw = np.nan_to_num(raw, nan=0.0, posinf=0.0, neginf=0.0)
        resized = Image.fromarray(raw).resize((width, height), Image.Resampling.BILINEAR)
        return DecodedImage(np.asarray(resized, np.float32)[:, :, None].copy(), source_mode or mode)
    if mode == "1":
        im = im.convert("L")
    elif mode == "LA":
        im = im.getchannel("L")
    elif mode != "L":
        im = im.convert("RGB")
    if im.mode == "RGB":
        a = np.asarray(im)
        if (a[:, :, 0] == a[:, :, 1]).all() and (a[:, :, 1] == a[:, :, 2]).all():
            im = Image.fromarray(np.ascontiguousarray(a[:, :, 0]))
    resized = np.asarray(im.resize((width, height), Image.Resampling.BILINEAR))
    if resized.ndim == 2:
        resized = resized[:, :, None]
    return DecodedImage(np.ascontiguousarray(resized), mode)


def convert_channels(pixels, channels):
    """(H, W, 1 or 3) -> (H, W, channels), same dtype: luma for colour -> 1, repetition for 1 -> 3."""
    have = pixels.shape[2]
    if have == channels:
        return pixels
    if channels == 3:
        return np.repeat(pixels, 3, axis=2)
    luma = pixels.astype(np.float32) @ _LUMA
    if pixels.dtype == np.uint8:
        return np.clip(np.rint(luma), 0, 255).astype(np.uint8)[:, :, None]
    return luma[:, :, None]


def scale_8bit(pixels):
    """uint8 array -> float32 in [0, 1]; the one place the 1/255 rescale happens."""
    out = pixels.astype(np.float32)
    out /= np.float32(255.0)
    return out


def high_depth_range(arrays):
    """(low, high) of all pixels of the given float32 arrays: the percentiles HIGH_DEPTH_PERCENTILES,
    computed on at most ~8M evenly strided values so a large dataset costs little and stays deterministic."""
    flat = np.concatenate([a.reshape(-1) for a in arrays])
    step = max(1, flat.size // 8_000_000)
    low, high = np.percentile(flat[::step].astype(np.float64), HIGH_DEPTH_PERCENTILES)  # no f32 overflow
    low, high = float(low), float(high)
    if not high > low:
        high = low + max(1.0, abs(low) * 1e-6)  # + 1.0 alone vanishes next to a value like 3e38
    return low, high


def scale_high_depth(pixels, mode, preprocessing):
    """float32 raw values -> float32 scaled by the rule in the module docstring."""
    rng = preprocessing.get("high_depth_range")
    with np.errstate(over="ignore", invalid="ignore"):
        if rng is not None:
            low, high = rng
            scaled = (pixels - np.float32(low)) * np.float32(1.0 / (high - low))
        else:
            low, high = 0.0, _TYPE_MAX.get(mode, 1.0)
            scaled = pixels * np.float32(1.0 / high)
    if not np.isfinite(scaled).all():
        # Float images may hold values near float32's limit (+-3.4e38), where the subtraction overflows: redo
        # it in float64; the result is bounded, so an extreme pixel is a large input, never Inf or NaN.
        scaled = (pixels.astype(np.float64) - low) / (float(high) - float(low))
        scaled = np.clip(np.nan_to_num(scaled, nan=0.0), -_SCALED_LIMIT, _SCALED_LIMIT).astype(np.float32)
    return np.clip(scaled, -_SCALED_LIMIT, _SCALED_LIMIT, out=scaled)


def to_model_input(decoded, preprocessing):
    """A DecodedImage -> float32 (H, W, C) exactly as the network saw it during training."""
    pixels = convert_channels(decoded.pixels, preprocessing["channels"])
    if decoded.high_depth:
        return scale_high_depth(pixels, decoded.mode, preprocessing)
    return scale_8bit(pixels)


def describe(preprocessing):
    """One line for logs: the image size, channels and scaling of a preprocessing dict."""
    h, w = preprocessing["image_size"]
    text = f"{h}x{w}, {'grayscale' if preprocessing['channels'] == 1 else 'RGB'}, 8-bit / 255"
    if preprocessing.get("high_depth_range") is not None:
        low, high = preprocessing["high_depth_range"]
        text += f", high-bit-depth (x - {low:g}) / ({high:g} - {low:g})"
    return text
