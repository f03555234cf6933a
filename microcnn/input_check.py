"""Is an input file of the same kind as the training images? Bit depth, channel count and size.

At training time `training_profile(paths)` summarises a seeded sample of the training files (read from their
headers only); the profile is stored in the model's metadata ("input_profile"). At prediction time
`kind_differences(image_kind(path), profile)` lists how a file differs, for a warning -- never a rejection:
the open-set detector (microcnn/ood.py) judges the content. `image_kind` is the only function that opens a
file, so another image reader only has to change it.
"""

import numpy as np

SAMPLE = 400  # training files examined: headers only, a few ms each
SIZE_FACTOR = 4  # a side more than 4x smaller than the smallest or larger than the largest training side


def image_kind(path):
    """{"bits", "channels", "height", "width"} of an image file from its header, or None if unreadable."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            mode, (width, height) = im.mode, im.size
    except Exception:  # noqa: BLE001 - unreadable files are reported by the decoder, not here
        return None
    if mode == "1":
        bits = 1
    elif mode.startswith("I;16"):
        bits = 16
    elif mode in ("I", "F"):
        bits = 32
    else:
        bits = 8
    channels = 1 if mode in ("1", "L", "LA", "I", "F", "La") or mode.startswith("I;16") else 3
    return {"bits": bits, "channels": channels, "height": int(height), "width": int(width)}


def training_profile(paths, seed=0):
    """What the training files look like: {"bits": [...], "channels": [...], "height": [min, max],
    "width": [min, max], "sampled": n}, from at most SAMPLE files chosen with `seed`; None if none read."""
    paths = list(paths)
    if len(paths) > SAMPLE:
        keep = np.random.default_rng(seed).choice(len(paths), SAMPLE, replace=False)
        paths = [paths[i] for i in sorted(keep)]
    kinds = [k for k in map(image_kind, paths) if k is not None]
    if not kinds:
        return None
    return {"bits": sorted({k["bits"] for k in kinds}), "channels": sorted({k["channels"] for k in kinds}),
            "height": [min(k["height"] for k in kinds), max(k["height"] for k in kinds)],
            "width": [min(k["width"] for k in kinds), max(k["width"] for k in kinds)], "sampled": len(kinds)}


def kind_differences(kind, profile):
    """Plain-language differences between one file's kind and the training profile ([] when alike)."""
    if not kind or not isinstance(profile, dict):
        return []
    differences = []
    bits = profile.get("bits") or []
    if bits and kind["bits"] not in bits:
        differences.append(f"{kind['bits']}-bit pixels (training images: {_listing(bits, '-bit')})")
    channels = profile.get("channels") or []
    if channels and kind["channels"] not in channels:
        names = {1: "grayscale", 3: "colour"}
        differences.append(f"{names.get(kind['channels'], kind['channels'])} (training images: "
                           f"{' and '.join(names.get(c, str(c)) for c in channels)})")
    try:
        (h0, h1), (w0, w1) = profile["height"], profile["width"]
    except (KeyError, TypeError, ValueError):
        return differences
    h, w = kind["height"], kind["width"]
    if h * SIZE_FACTOR < h0 or w * SIZE_FACTOR < w0 or h > h1 * SIZE_FACTOR or w > w1 * SIZE_FACTOR:
        sizes = f"{w0}x{h0}" if (w0, h0) == (w1, h1) else f"{w0}x{h0} to {w1}x{h1}"
        differences.append(f"{w}x{h} pixels (training images: {sizes})")
    return differences


def _listing(values, suffix):
    return " and ".join(f"{v}{suffix}" for v in values)
