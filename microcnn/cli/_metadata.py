"""Validation of what microcnn-train stores in a model's or checkpoint's metadata (class names, preprocessing,
training settings, resume state): every key is checked before use, and a bad one is a ValueError naming the
file, the key, what was expected and what was received -- never a raw KeyError or a silently wrong model."""

import json
import math
import numbers

from ..data import COLOR_MODES

# Largest image side microcnn-train accepts (--image-size, and a model's or checkpoint's metadata): a batch of 32
# RGB images of 8192x8192 is already 25 GB as float32.
MAX_IMAGE_SIDE = 8192


class MetadataError(ValueError):
    pass


def _fail(path, key, expected, value):
    text = repr(value)
    if len(text) > 80:
        text = text[:77] + "..."
    raise MetadataError(f"{path}: metadata key {key!r}: expected {expected}, got {text}")


def _is_int(v):
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _is_number(v):
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)


def _require(meta, path, key, check, expected, prefix=""):
    if not isinstance(meta, dict) or key not in meta:
        raise MetadataError(f"{path}: metadata key {prefix + key!r} is missing ({expected} expected)")
    value = meta[key]
    if not check(value):
        _fail(path, prefix + key, expected, value)
    return value


def image_size_ok(v):
    return (isinstance(v, list) and len(v) == 2 and all(_is_int(s) and 1 <= s <= MAX_IMAGE_SIDE for s in v))


def check_class_names(meta, path, num_outputs=None):
    names = _require(meta, path, "class_names",
                     lambda v: isinstance(v, list) and len(v) >= 2 and all(isinstance(n, str) and n for n in v),
                     "a list of at least two non-empty class-name strings")
    if len(set(names)) != len(names):
        _fail(path, "class_names", "distinct names", names)
    if num_outputs is not None and len(names) != num_outputs:
        _fail(path, "class_names", f"{num_outputs} names (one per output of the model)", names)
    return names


def check_preprocessing(meta, path, input_shape=None):
    """The preprocessing dict; with input_shape (H, W, C) of the model, its size and channels must match."""
    pre = _require(meta, path, "preprocessing", lambda v: isinstance(v, dict), "an object")
    p = "preprocessing."
    size = _require(pre, path, "image_size", image_size_ok,
                    f"[height, width] with sides from 1 to {MAX_IMAGE_SIDE} pixels", p)
    channels = _require(pre, path, "channels", lambda v: _is_int(v) and 1 <= v <= 4096, "a channel count", p)
    if "color" in pre and pre["color"] not in COLOR_MODES:
        _fail(path, p + "color", "one of " + ", ".join(COLOR_MODES), pre["color"])
    if pre.get("resample", "bilinear") != "bilinear":
        _fail(path, p + "resample", "'bilinear'", pre["resample"])
    if "version" in pre and not _is_int(pre["version"]):
        _fail(path, p + "version", "an integer", pre["version"])
    rng = pre.get("high_depth_range")
    if rng is not None and not (isinstance(rng, list) and len(rng) == 2 and all(_is_number(v) for v in rng)
                                and rng[0] < rng[1]):
        _fail(path, p + "high_depth_range", "null or [low, high] with finite low < high", rng)
    if input_shape is not None and (list(input_shape[:2]) != size or input_shape[2] != channels):
        _fail(path, p + "image_size/channels", f"the model's input {tuple(input_shape)}",
              f"{size} with {channels} channel(s)")
    return pre


_SETTINGS = {
    "epochs": (lambda v: _is_int(v) and v >= 1, "a positive integer"),
    "batch_size": (lambda v: _is_int(v) and v >= 1, "a positive integer"),
    "image_size": (image_size_ok, f"[height, width] with sides from 1 to {MAX_IMAGE_SIDE} pixels"),
    "lr": (lambda v: _is_number(v) and v > 0, "a positive number"),
    "color": (lambda v: v in COLOR_MODES, "one of " + ", ".join(COLOR_MODES)),
    "seed": (lambda v: _is_int(v) and v >= 0, "an integer >= 0"),
    "no_augment": (lambda v: isinstance(v, bool), "true or false"),
    "validation_split": (lambda v: v is None or (_is_number(v) and 0 < v < 1), "null or a fraction"),
    "arch": (lambda v: isinstance(v, str), "a preset name"),
}


def check_checkpoint(meta, path):
    """A checkpoint's metadata: class names, preprocessing, the training settings and the resume state."""
    check_class_names(meta, path)
    check_preprocessing(meta, path)
    training = _require(meta, path, "training", lambda v: isinstance(v, dict), "an object")
    for key, (check, expected) in _SETTINGS.items():
        _require(training, path, key, check, expected, "training.")
    state = _require(meta, path, "resume", lambda v: isinstance(v, dict), "an object")
    history = _require(state, path, "history", lambda v: isinstance(v, dict) and all(
        isinstance(h, list) and all(x is None or _is_number(x) for x in h) for h in v.values()),
        "an object of per-epoch number lists", "resume.")
    lengths = {len(h) for h in history.values()}
    if "loss" not in history or len(lengths) != 1:
        _fail(path, "resume.history", "lists of one length including 'loss'", {k: len(h) for k, h in history.items()})
    _require(state, path, "best_epoch", lambda v: v is None or (_is_int(v) and 1 <= v <= len(history["loss"])),
             "null or a completed epoch number", "resume.")
    _require(state, path, "best", lambda v: v is None or isinstance(v, dict), "null or an object", "resume.")
    _require(state, path, "iterator", lambda v: isinstance(v, dict) and isinstance(v.get("shuffle"), dict),
             "an object with the generator states", "resume.")
    _require(state, path, "global_rng", lambda v: isinstance(v, dict), "a generator state", "resume.")
    totals = state.get("epoch_totals")
    if totals is not None and not (isinstance(totals, dict) and all(
            _is_number(totals.get(k)) for k in ("loss", "correct", "count", "batches"))):
        _fail(path, "resume.epoch_totals", "null or the running totals of the epoch", totals)
    return meta


def read_json(path):
    """A JSON file -> its value; any damage (bad UTF-8 or JSON, nesting too deep, a number too long) is a
    ValueError naming the file."""
    try:
        with open(path, "rb") as f:
            return json.loads(f.read().decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        raise MetadataError(f"{path}: not a valid JSON file ({reason})") from None
