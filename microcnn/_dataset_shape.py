"""The shape a dataset's arrays take: the image size (--image-size auto) and the channel count."""

import numpy as np

from . import readers


class DatasetError(Exception):
    """The folder cannot be used as a dataset; the message names the folder and what is wrong."""


def check_channel_select(channels):
    """None, or a list of distinct channel indices >= 0 (from --channels 0,2); else ValueError."""
    if channels is None:
        return None
    values = list(channels) if not isinstance(channels, (int, str)) else None
    if (not values or any(isinstance(c, bool) or not isinstance(c, (int, np.integer)) or c < 0 for c in values)
            or len(set(values)) != len(values)):
        raise ValueError(f"channels: expected distinct channel indices >= 0, e.g. [0, 2], got {channels!r}")
    return [int(c) for c in values]


def dataset_channels(train_items, color, directory):
    """The model's channel count: 1 or 3 by the color rule when every training image has 1 or 3 channels,
    else the one channel count all training images share (color must be auto); DatasetError otherwise."""
    counts = sorted({d.channels for d, _, _ in train_items})
    if set(counts) <= {1, 3}:
        if color == "auto":
            return 1 if counts == [1] else 3
        return 1 if color == "grayscale" else 3
    if len(counts) > 1:
        example = {}
        for d, _, path in train_items:
            example.setdefault(d.channels, path)
        found = ", ".join(f"{c} in {example[c]}" for c in counts)
        raise DatasetError(f"{directory}: training images have different channel counts ({found}); select the "
                           f"same channels from each with --channels")
    if color != "auto":
        raise DatasetError(f"{directory}: --color {color} applies to 1- and 3-channel images, these have "
                           f"{counts[0]} channels (use --channels to select some)")
    return counts[0]


def auto_image_size(paths, cap=150):
    """((H, W), reason): the median height and width of the images (read from file headers), scaled down so
    the larger side is at most cap; files whose size cannot be read are left out."""
    sizes = [s for s in (readers.read_size(p) for p in paths) if s is not None]
    if not sizes:
        return (cap, cap), f"no readable image header, using {cap}x{cap}"
    h, w = (int(np.median([s[i] for s in sizes])) for i in (0, 1))
    reason = f"median of {len(sizes)} training images"
    if max(h, w) > cap:
        f = cap / max(h, w)
        h, w = max(1, round(h * f)), max(1, round(w * f))
        reason += f", scaled so the larger side is at most {cap}"
    return (h, w), reason


def drop_mismatched(items, channels, failed):
    """Items [(DecodedImage, label, path)] whose channel count can become `channels` (equal, or 1 <-> 3);
    the others are appended to failed as (path, reason)."""
    keep = []
    for d, label, path in items:
        if d.channels == channels or {d.channels, channels} == {1, 3}:
            keep.append((d, label, path))
        else:
            failed.append((path, f"has {d.channels} channel(s), the training images {channels}"))
    return keep
