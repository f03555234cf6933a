"""Checks a dataset folder before anyone trusts a model trained on it: counts per class and split, a summary
of image sizes / modes / bit depths, unreadable files, and images that appear more than once -- twice in one
class (duplicates), in two classes (label conflicts), or in two splits (leakage: the model is then scored on
images it was trained on).

Two images are "the same" when their decoded pixels are identical (mode, size and every value; a SHA-256 of
them), so a file copied under another name, re-saved with other metadata, or converted losslessly (PNG <->
TIFF) is caught; a re-compressed JPEG is not. Layouts are those microcnn-train reads (see data.py):
DIR/train/, DIR/validation/ (or valid/, val/), DIR/test/, or DIR/<class>/ alone (reported as split "all").
"""

import hashlib
import os
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from . import images
from .data import VALIDATION_DIR_NAMES, DatasetError, _list_class_dirs, walk_files

SPLIT_NAMES = ("train", *VALIDATION_DIR_NAMES, "test")
_BIT_DEPTHS = {"1": "1-bit", "I;16": "16-bit", "I;16B": "16-bit", "I;16L": "16-bit", "I;16N": "16-bit",
               "I": "32-bit integer", "F": "32-bit float"}


def find_splits(root):
    """{split name: folder} for DIR/train, DIR/validation, DIR/test, ...; or {"all": DIR} for DIR/<class>/."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: not a directory")
    splits = {name: root / name for name in SPLIT_NAMES if (root / name).is_dir()}
    if splits:
        return splits
    if not _list_class_dirs(root):
        raise DatasetError(f"{root}: expected class folders (DIR/<class>/) or split folders (DIR/train/, "
                           f"DIR/validation/, DIR/test/), found none")
    return {"all": root}


def inspect_image(path):
    """(info dict, content hash) for a readable image; raises images.ImageDecodeError naming the cause. A file
    Pillow cannot open but the training decoder can (microcnn/images.py) counts as readable, hashed by its
    bytes."""
    try:
        return _inspect_with_pillow(path)
    except images.ImageDecodeError:
        decoded = images.decode(path, (8, 8))  # raises with the reason training would give
        digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
        return {"format": Path(path).suffix.lstrip(".").upper() or "?", "size": "?", "mode": decoded.mode,
                "bit_depth": "8-bit" if decoded.pixels.dtype == np.uint8 else "high"}, digest


def _inspect_with_pillow(path):
    try:
        with Image.open(path) as im:
            limit = Image.MAX_IMAGE_PIXELS
            if limit is not None and im.size[0] * im.size[1] > limit:
                raise images.ImageDecodeError(f"{im.size[0]}x{im.size[1]} is larger than Pillow's limit of "
                                              f"{limit} pixels (PIL.Image.MAX_IMAGE_PIXELS)")
            im.load()
            digest = hashlib.sha256(f"{im.mode} {im.size}".encode())
            digest.update(im.tobytes())
            info = {"format": im.format or "?", "size": f"{im.size[0]}x{im.size[1]}", "mode": im.mode,
                    "bit_depth": _BIT_DEPTHS.get(im.mode, "8-bit")}
            return info, digest.hexdigest()
    except images.ImageDecodeError:
        raise
    except Image.DecompressionBombError as e:
        raise images.ImageDecodeError(f"too large for Pillow's decompression-bomb limit ({e})") from None
    except UnidentifiedImageError:
        raise images.ImageDecodeError("not a readable image (unrecognised or empty file)") from None
    except (OSError, ValueError, SyntaxError, EOFError, IndexError, TypeError, KeyError, MemoryError) as e:
        raise images.ImageDecodeError(f"could not decode: {e}") from None


def check_dataset(root, progress=None):
    """The check as a JSON-able dict:
    counts      {split: {class: readable images}}
    unreadable  [{"path", "reason"}]      non_images  [path] (skipped by extension, as training does)
    duplicates  [[paths]]  one group per image found more than once in the same split and class
    conflicts   [[paths]]  one group per image found in two or more classes
    leaks       [[paths]]  one group per image found in two or more splits
    summary     {"formats", "sizes", "modes", "bit_depths"}: {value: number of images}
    Paths are the dataset folder joined with the file's place in it. `progress(iterable, total)` may wrap the
    file loop (a tqdm bar)."""
    root = Path(root)
    splits = find_splits(root)
    extensions = images.readable_extensions()
    files, non_images = [], []
    for split, folder in splits.items():
        for class_dir in _list_class_dirs(folder):
            for path in walk_files(class_dir):
                if path.suffix.lower() in extensions:
                    files.append((split, class_dir.name, path))
                else:
                    non_images.append(str(path))
    counts = {split: {d.name: 0 for d in _list_class_dirs(folder)} for split, folder in splits.items()}
    summary = {key: Counter() for key in ("formats", "sizes", "modes", "bit_depths")}
    unreadable, by_hash = [], defaultdict(list)
    loop = progress(files, len(files)) if progress is not None else files
    with images.quiet_decoder_warnings():
        for split, name, path in loop:
            try:
                info, digest = inspect_image(path)
            except images.ImageDecodeError as e:
                unreadable.append({"path": str(path), "reason": str(e)})
                continue
            counts[split][name] += 1
            for key, value in (("formats", info["format"]), ("sizes", info["size"]), ("modes", info["mode"]),
                               ("bit_depths", info["bit_depth"])):
                summary[key][value] += 1
            by_hash[digest].append((split, name, str(path)))
    duplicates, conflicts, leaks = [], [], []
    for entries in by_hash.values():
        if len(entries) < 2:
            continue
        paths = sorted(p for _, _, p in entries)
        per_place = Counter((split, name) for split, name, _ in entries)
        for (split, name), n in sorted(per_place.items()):
            if n > 1:
                duplicates.append(sorted(p for s, c, p in entries if (s, c) == (split, name)))
        if len({name for _, name, _ in entries}) > 1:
            conflicts.append(paths)
        if len({split for split, _, _ in entries}) > 1:
            leaks.append(paths)
    return {"root": str(root), "splits": list(splits), "counts": counts, "unreadable": unreadable,
            "non_images": non_images, "duplicates": sorted(duplicates), "conflicts": sorted(conflicts),
            "leaks": sorted(leaks),
            "summary": {key: dict(counter.most_common()) for key, counter in summary.items()}}


def problem_count(result):
    """Unreadable files plus groups of duplicates, conflicts and leaks (non-image files are not problems)."""
    return sum(len(result[key]) for key in ("unreadable", "duplicates", "conflicts", "leaks"))


def _top(counter, limit=4):
    items = list(counter.items())
    text = ", ".join(f"{value} ({n})" for value, n in items[:limit])
    if len(items) > limit:
        text += f", and {len(items) - limit} more ({sum(n for _, n in items[limit:])})"
    return text or "none"


def _rel(path, root):
    return os.path.relpath(path, root)


def problems_text(result, root=None):
    """The problem sections only (unreadable, duplicates, conflicts, leaks), every file named; "" if none."""
    root = result["root"] if root is None else root
    lines = []
    if result["unreadable"]:
        lines.append(f"Unreadable images ({len(result['unreadable'])}):")
        lines += [f"  {_rel(u['path'], root)}: {u['reason']}" for u in result["unreadable"]]
    sections = (("duplicates", "Duplicates within a class",
                 "copies of one image in the same class and split"),
                ("conflicts", "Label conflicts", "one image in more than one class"),
                ("leaks", "Leaks across splits", "one image in more than one split"))
    for key, title, meaning in sections:
        if result[key]:
            lines.append(f"{title} ({len(result[key])} group(s), {meaning}):")
            for group in result[key]:
                lines.append("  " + "  =  ".join(_rel(p, root) for p in group))
    return "\n".join(lines)


def report_text(result):
    """The whole check as text: counts table, image summary, problems, and a one-line verdict."""
    root, splits = result["root"], result["splits"]
    classes = sorted({c for per_split in result["counts"].values() for c in per_split})
    total = sum(sum(per_split.values()) for per_split in result["counts"].values())
    lines = [f"{root}: {total} readable images in {len(classes)} classes, split(s): {', '.join(splits)}"]
    width = max(10, *(len(c) for c in classes)) if classes else 10
    lines.append("  " + " " * width + "".join(f"{s:>12}" for s in splits))
    for c in classes:
        lines.append(f"  {c:<{width}}" + "".join(
            f"{result['counts'][s][c]:>12}" if c in result["counts"][s] else f"{'-':>12}" for s in splits))
    summary = result["summary"]
    lines += [f"Formats: {_top(summary['formats'])}", f"Sizes: {_top(summary['sizes'])}",
              f"Modes: {_top(summary['modes'])}", f"Bit depths: {_top(summary['bit_depths'])}"]
    if result["non_images"]:
        lines.append(f"Skipped {len(result['non_images'])} non-image file(s): "
                     + ", ".join(_rel(p, root) for p in result["non_images"][:10])
                     + (" ..." if len(result["non_images"]) > 10 else ""))
    problems = problems_text(result)
    if problems:
        lines.append(problems)
    n = problem_count(result)
    lines.append("No problems found." if n == 0 else
                 f"{n} problem(s) found: unreadable {len(result['unreadable'])}, duplicate groups "
                 f"{len(result['duplicates'])}, conflicts {len(result['conflicts'])}, "
                 f"leaks {len(result['leaks'])}.")
    return "\n".join(lines)
