"""Decoding one image file into the arrays the network sees, identically for training and prediction.

The rule, stored as the model's `preprocessing` dict and applied again by `microcnn-predict`:

1. Read at full depth with readers.read_image: TIFF through tifffile (every page, OME/ImageJ axes, any
   channel count; a z-stack reduced by `z_projection` max or mean), 16-bit colour PNG through pypng, other
   formats through Pillow (first frame, EXIF orientation applied). Alpha dropped. `channel_select` keeps
   the listed channels. Large JPEGs are decoded at a reduced DCT scale that still covers the target size.
2. 8-bit images stay 8-bit; an RGB image whose three channels are identical counts as single-channel.
   High-bit-depth images (16-bit, 32-bit integer, float) are kept at full precision as float32.
3. Resize to `image_size` (H, W) with Pillow's bilinear filter (antialiased when shrinking), per channel.
4. Channels: `channels` 1 converts colour to luma (ITU-R 601-2, the weights of Pillow's `convert("L")`),
   `channels` 3 repeats a single channel three times; other counts must match exactly.
5. Scale to float32: 8-bit values by 1/255 (Keras's `rescale=1/255`); high-bit-depth values channel by
   channel by (x - low_c) / (high_c - low_c) where low_c/high_c are the 0.1th and 99.9th percentiles of
   channel c over all high-bit-depth training pixels (`channel_ranges`), so a 12-bit camera's data in a
   16-bit file uses the full range, a dim DAPI channel is not scaled by a bright GFP one, a hot pixel does
   not set the scale, and nothing is clipped (values can exceed [0, 1] a little). Models of preprocessing
   version 1 hold one `high_depth_range` for all channels. A model trained on 8-bit images only, shown a
   high-bit-depth image, scales integers by their type's maximum and floats as is.
"""

import contextlib
import warnings

import numpy as np
from PIL import Image

from .readers import ImageDecodeError, read_image

__all__ = ["DecodedImage", "ImageDecodeError", "decode", "decode_many", "read_image"]

PREPROCESSING_VERSION = 2
HIGH_DEPTH_PERCENTILES = (0.1, 99.9)
REDUCE_ABOVE_PIXELS = 16_000_000  # larger images are box-reduced right after decoding (readers._reduce_large)
_SCALED_LIMIT = 1e4  # bound of a scaled high-bit-depth value (normal images give about [0, 1])
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)
_TYPE_MAX = {"I": 2.0**31 - 1, "I;16": 65535.0, "I;16B": 65535.0, "I;16L": 65535.0, "I;16N": 65535.0}
# Pillow registers these but needs external handlers or cannot decode pixels from them.
_UNSUPPORTED_FORMATS = {"BUFR", "GRIB", "HDF5", "MPEG", "EPS", "WMF"}


def readable_extensions():
    """Lower-case file extensions (".png", ".tif", ...) Pillow can decode in this installation."""
    Image.init()
    return {ext.lower() for ext, fmt in Image.registered_extensions().items()
            if fmt in Image.OPEN and fmt not in _UNSUPPORTED_FORMATS}


class DecodedImage:
    """One image after steps 1-3: `pixels` (H, W, C), uint8 for 8-bit sources or float32 raw values
    for high-bit-depth ones, the Pillow-style `mode` it came from (readers.ImageInfo.mode) and whether its
    three channels are red, green, blue (`rgb`)."""

    __slots__ = ("mode", "pixels", "rgb")

    def __init__(self, pixels, mode, rgb=None):
        self.pixels = pixels
        self.mode = mode
        self.rgb = pixels.shape[2] == 3 if rgb is None else rgb

    @property
    def high_depth(self):
        return self.pixels.dtype != np.uint8

    @property
    def channels(self):
        return self.pixels.shape[2]


def decode(path, image_size, channels=None, z_projection=None):
    """Read (readers.read_image) and resize one file to image_size (H, W); raises ImageDecodeError naming
    the cause. channels / z_projection: see read_image. Pillow's own warnings are left to the caller (see
    quiet_decoder_warnings)."""
    height, width = image_size
    pixels, info = read_image(path, channels=channels, z_projection=z_projection, target=(height, width),
                              reduce_above=REDUCE_ABOVE_PIXELS)
    try:
        return _resize(pixels, info, height, width)
    except (ValueError, MemoryError) as e:
        raise ImageDecodeError(f"could not resize: {e}") from None


@contextlib.contextmanager
def quiet_decoder_warnings():
    """Silences Pillow's warnings (odd EXIF, palette transparency, decompression-bomb size) while a batch of
    files is decoded: decode() reports what matters as ImageDecodeError. Enter it in the main thread."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def decode_many(paths, image_size, progress=None, channels=None, z_projection=None):
    """[(DecodedImage or None, error message or None)] in the order of paths, with Pillow's warnings
    silenced. (Decoding in threads gave no measurable gain on a loaded 2-core machine, so it is serial.)"""

    def one(path):
        try:
            return decode(path, image_size, channels, z_projection), None
        except ImageDecodeError as e:
            return None, str(e)

    with quiet_decoder_warnings():
        results = map(one, paths)
        return list(progress(results, len(paths)) if progress else results)


def _resize(pixels, info, height, width):
    """Bilinear resize (antialiased when shrinking) with Pillow: 8-bit grey/RGB as one image, every other
    case channel by channel in float32 (high depth kept) or 8-bit L."""
    rgb = info.rgb and pixels.shape[2] == 3
    if rgb and (pixels[:, :, 0] == pixels[:, :, 1]).all() and (pixels[:, :, 1] == pixels[:, :, 2]).all():
        pixels, rgb = pixels[:, :, :1], False  # an RGB file with three equal channels is grayscale
    high = pixels.dtype != np.uint8
    if not high and pixels.shape[2] in (1, 3):
        im = Image.fromarray(np.ascontiguousarray(pixels if pixels.shape[2] == 3 else pixels[:, :, 0]))
        out = np.asarray(im.resize((width, height), Image.Resampling.BILINEAR))
        return DecodedImage(np.ascontiguousarray(out if out.ndim == 3 else out[:, :, None]), info.mode, rgb)
    dtype = np.float32 if high else np.uint8
    out = np.empty((height, width, pixels.shape[2]), dtype)
    for c in range(pixels.shape[2]):
        plane = np.ascontiguousarray(pixels[:, :, c].astype(dtype, copy=False))
        out[:, :, c] = np.asarray(Image.fromarray(plane).resize((width, height), Image.Resampling.BILINEAR))
    return DecodedImage(out, info.mode, rgb)


def convert_channels(pixels, channels):
    """(H, W, C) -> (H, W, channels), same dtype: luma for 3 -> 1, repetition for 1 -> 3, else the counts
    must agree (ImageDecodeError names both)."""
    have = pixels.shape[2]
    if have == channels:
        return pixels
    if have == 1 and channels == 3:
        return np.repeat(pixels, 3, axis=2)
    if have != 3 or channels != 1:
        raise ImageDecodeError(f"has {have} channel(s), expected {channels} (the model's channels; "
                               f"--channels selects some)")
    luma = pixels.astype(np.float32) @ _LUMA
    if pixels.dtype == np.uint8:
        return np.clip(np.rint(luma), 0, 255).astype(np.uint8)[:, :, None]
    return luma[:, :, None]


def scale_8bit(pixels):
    """uint8 array -> float32 in [0, 1]; the one place the 1/255 rescale happens."""
    out = pixels.astype(np.float32)
    out /= np.float32(255.0)
    return out


def _percentile_range(flat):
    step = max(1, flat.size // 8_000_000)
    low, high = np.percentile(flat[::step].astype(np.float64), HIGH_DEPTH_PERCENTILES)  # no f32 overflow
    low, high = float(low), float(high)
    if not high > low:
        high = low + max(1.0, abs(low) * 1e-6)  # + 1.0 alone vanishes next to a value like 3e38
    return low, high


def high_depth_range(arrays):
    """(low, high) of all pixels of the given float32 arrays: the percentiles HIGH_DEPTH_PERCENTILES,
    computed on at most ~8M evenly strided values so a large dataset costs little and stays deterministic."""
    return _percentile_range(np.concatenate([a.reshape(-1) for a in arrays]))


def channel_ranges(arrays):
    """[[low, high] per channel] of float32 (H, W, C) arrays with the same C: high_depth_range channel by
    channel."""
    return [list(_percentile_range(np.concatenate([a[:, :, c].reshape(-1) for a in arrays])))
            for c in range(arrays[0].shape[2])]


def scale_high_depth(pixels, mode, preprocessing):
    """float32 raw values (H, W, C) -> float32 scaled by the rule in the module docstring."""
    ranges = preprocessing.get("channel_ranges")
    if ranges is None and preprocessing.get("high_depth_range") is not None:
        ranges = [preprocessing["high_depth_range"]] * pixels.shape[2]
    if ranges is not None:
        low = np.array([r[0] for r in ranges], np.float64)
        high = np.array([r[1] for r in ranges], np.float64)
        if len(ranges) != pixels.shape[2] or not (np.isfinite(low).all() and np.isfinite(high).all()
                                                  and (high > low).all()):
            raise ValueError(f"preprocessing.channel_ranges: expected {pixels.shape[2]} finite [low, high] pairs "
                             f"with high > low, got {ranges!r}")
    else:
        low, high = np.zeros(1), np.full(1, _TYPE_MAX.get(mode, 1.0))
    with np.errstate(over="ignore", invalid="ignore"):
        scaled = (pixels - low.astype(np.float32)) * (1.0 / (high - low)).astype(np.float32)
    if not np.isfinite(scaled).all():
        # Float images may hold values near float32's limit (+-3.4e38), where the subtraction overflows: redo
        # it in float64; the result is bounded, so an extreme pixel is a large input, never Inf or NaN.
        scaled = (pixels.astype(np.float64) - low) / (high - low)
        scaled = np.clip(np.nan_to_num(scaled, nan=0.0), -_SCALED_LIMIT, _SCALED_LIMIT)
    return np.clip(scaled.astype(np.float32, copy=False), -_SCALED_LIMIT, _SCALED_LIMIT)


def to_model_input(decoded, preprocessing):
    """A DecodedImage -> float32 (H, W, C) exactly as the network saw it during training."""
    pixels = convert_channels(decoded.pixels, preprocessing["channels"])
    if decoded.high_depth:
        return scale_high_depth(pixels.astype(np.float32, copy=False), decoded.mode, preprocessing)
    return scale_8bit(pixels)


def read_options(preprocessing):
    """The keyword arguments of decode()/decode_many() a preprocessing dict asks for."""
    return {"channels": preprocessing.get("channel_select"), "z_projection": preprocessing.get("z_projection")}


def describe(preprocessing, any_8bit=True):
    """One line for logs: the image size, channels and scaling of a preprocessing dict (any_8bit=False: no
    8-bit file was read, so only the high-bit-depth rule is named)."""
    h, w = preprocessing["image_size"]
    c = preprocessing["channels"]
    kind = {1: "grayscale", 3: "RGB"}.get(c, f"{c} channels")
    if preprocessing.get("channel_select") is not None:
        kind += f" (file channels {','.join(map(str, preprocessing['channel_select']))})"
    if preprocessing.get("z_projection"):
        kind += f", z-stack {preprocessing['z_projection']} projection"
    ranges = preprocessing.get("channel_ranges")
    if ranges is None and preprocessing.get("high_depth_range") is not None:
        ranges = [preprocessing["high_depth_range"]]
    text = f"{h}x{w}, {kind}" + (", 8-bit / 255" if any_8bit or ranges is None else "")
    if ranges is not None:
        parts = [f"(x - {lo:g}) / ({hi:g} - {lo:g})" for lo, hi in ranges]
        text += (", high-bit-depth " if any_8bit else ", ") + ("; ".join(parts) if len(parts) > 1 else parts[0])
    return text
