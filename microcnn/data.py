"""Folders of labelled images -> in-memory arrays; `FolderDataset.batches()` -> shuffled, augmented batches
(microcnn/batch_iterator.py) for `Sequential.fit`.

Layouts (class order = class folder names sorted):
    DIR/train/<class>/...  and  DIR/validation/<class>/...   (or valid/, val/)
    DIR/<class>/...        split into train/validation per class (stratified, seeded)
Files are found recursively inside each class folder. Hidden files and folders (name starting with ".",
Thumbs.db, desktop.ini, __MACOSX) are ignored silently; files Pillow cannot read by extension are skipped
and listed; files that fail to decode are skipped and named with the reason (see `LoadReport.summary`).

Every image is decoded once (microcnn/images.py) into one array per split: uint8 (N, H, W, C), i.e.
N*H*W*C bytes, when every image is 8-bit, else float32 (4 bytes per value).
"""

import os
from pathlib import Path

import numpy as np

from . import images
from ._dataset_shape import (
    DatasetError,
    auto_image_size,
    check_channel_select,
    dataset_channels,
    drop_mismatched,
)
from .batch_iterator import BatchIterator

VALIDATION_DIR_NAMES = ("validation", "valid", "val")
_IGNORED_NAMES = {"thumbs.db", "desktop.ini", "__macosx", "icon\r", "$recycle.bin"}
COLOR_MODES = ("auto", "grayscale", "rgb")


def is_ignored(name):
    return name.startswith(".") or name.lower() in _IGNORED_NAMES


def _list_class_dirs(folder):
    return sorted(p for p in Path(folder).iterdir() if p.is_dir() and not is_ignored(p.name))


def walk_files(folder):
    """All non-ignored files below folder, sorted, without entering ignored folders. Symbolic links to
    folders are followed (class folders are often links to the data), each real folder only once, so a
    link back up the tree (to folder or above it) is not entered."""
    top = os.path.realpath(folder)
    found, seen = [], {top}
    for root, dirs, files in os.walk(folder, followlinks=True):
        keep = []
        for d in sorted(dirs):
            real = os.path.realpath(os.path.join(root, d))
            if not is_ignored(d) and real not in seen and not top.startswith(real + os.sep):
                seen.add(real)
                keep.append(d)
        dirs[:] = keep
        found.extend(Path(root) / f for f in sorted(files) if not is_ignored(f))
    return found


def _scan_split(folder, class_names=None):
    """{class: [image paths]} and the non-image files of one split folder."""
    folder = Path(folder)
    class_dirs = _list_class_dirs(folder)
    extensions = images.readable_extensions()
    found, non_images = {}, []
    for d in class_dirs:
        paths = []
        for p in walk_files(d):
            (paths if p.suffix.lower() in extensions else non_images).append(p)
        found[d.name] = paths
    if class_names is None:
        if len(class_dirs) < 2:
            names = ", ".join(d.name for d in class_dirs) or "none"
            raise DatasetError(f"{folder}: expected at least two class folders (one per class), found "
                               f"{len(class_dirs)} ({names})")
    else:
        unknown = sorted(set(found) - set(class_names))
        if unknown:
            raise DatasetError(f"{folder}: class folder(s) {', '.join(unknown)} not present in the training "
                               f"classes ({', '.join(class_names)})")
    for name, paths in found.items():
        if not paths:
            raise DatasetError(f"{folder / name}: class folder contains no image files")
    return found, non_images


def printable_name(name):
    """A file name for one line of output: control characters (a newline in a name) as escapes."""
    text = str(name)
    if any(ord(c) < 32 or ord(c) == 127 for c in text):
        return "".join(repr(c)[1:-1] if ord(c) < 32 or ord(c) == 127 else c for c in text)
    return text


def _holds_class_dirs(folder):
    return folder.is_dir() and bool(_list_class_dirs(folder))


def scan(directory, validation_split=None, seed=0):
    """Finds the layout and files. Returns (class_names, {"train": [(path, label)], "validation": [...]},
    non_image_paths). validation_split: fraction held out when DIR has no validation folder (default 0.2
    for the DIR/<class>/ layout; required for DIR/train/ without a validation folder)."""
    root = Path(directory)
    if not root.is_dir():
        raise DatasetError(f"{root}: not a directory")
    if validation_split is not None and not 0 < validation_split < 1:
        raise DatasetError(f"validation_split: expected a fraction between 0 and 1, got {validation_split}")
    # train/ and validation/ are layout folders only when they hold class folders; a folder of images named
    # "train" or "val" in a DIR/<class>/ dataset is a class like any other.
    train_dir = root / "train"
    val_dir = next((root / n for n in VALIDATION_DIR_NAMES if _holds_class_dirs(root / n)), None)
    if _holds_class_dirs(train_dir):
        train, non_images = _scan_split(train_dir)
        if val_dir is not None and validation_split is not None:
            raise DatasetError(f"{root}: has a {val_dir.name}/ folder, so validation_split does not apply; "
                               "remove one or the other")
        if val_dir is None and validation_split is None:
            raise DatasetError(f"{root}: found train/ but no validation/ (or valid/, val/) next to it; add one "
                               "or use --validation-split")
    else:
        if val_dir is not None:
            raise DatasetError(f"{root}: found {val_dir.name}/ but no train/ next to it")
        train, non_images = _scan_split(root)
    class_names = sorted(train)
    label = {name: i for i, name in enumerate(class_names)}
    if val_dir is not None:
        validation, val_junk = _scan_split(val_dir, class_names)
        non_images += val_junk
        splits = {"train": [(p, label[c]) for c in class_names for p in train[c]],
                  "validation": [(p, label[c]) for c in sorted(validation) for p in validation[c]]}
    else:
        splits = _stratified_split(train, class_names, 0.2 if validation_split is None else validation_split,
                                   seed)
    return class_names, splits, non_images


def _stratified_split(by_class, class_names, fraction, seed):
    """Per class, a seeded random `fraction` (at least one image when the class has two or more) goes to
    validation, so each class keeps its proportion in both splits."""
    rng = np.random.default_rng(seed)
    train, validation = [], []
    for label, name in enumerate(class_names):
        paths = by_class[name]
        order = rng.permutation(len(paths))
        n_val = round(fraction * len(paths))
        n_val = min(max(n_val, 1 if len(paths) >= 2 else 0), len(paths) - 1)
        held = set(order[:n_val].tolist())
        for i, p in enumerate(paths):
            (validation if i in held else train).append((p, label))
    return {"train": train, "validation": validation}


class LoadReport:
    """What the loader found and skipped; `summary()` is printed before training."""

    def __init__(self, class_names, counts, non_images, failed):
        self.class_names = class_names
        self.counts = counts  # {"train": [per class], "validation": [per class]}
        self.non_images = non_images  # [path]
        self.failed = failed  # [(path, reason)]

    def summary(self, root=None):
        def rel(p):
            return printable_name(os.path.relpath(p, root) if root is not None else p)

        n_train, n_val = sum(self.counts["train"]), sum(self.counts["validation"])
        lines = [(f"Found {n_train + n_val} images in {len(self.class_names)} classes "
                  f"(train {n_train}, validation {n_val}):")]
        for i, name in enumerate(self.class_names):
            lines.append(f"  {i}: {name:<20} train {self.counts['train'][i]:>6}  "
                         f"validation {self.counts['validation'][i]:>6}")
        if self.non_images:
            lines.append(f"Skipped {len(self.non_images)} non-image file(s):")
            lines += [f"  {rel(p)}" for p in self.non_images]
        if self.failed:
            lines.append(f"Skipped {len(self.failed)} unreadable image(s):")
            lines += [f"  {rel(p)}: {reason}" for p, reason in self.failed]
        return "\n".join(lines)


class FolderDataset:
    """A dataset folder decoded into memory: `x_train`, `y_train`, `x_val`, `y_val` (uint8 or float32
    NHWC arrays, int32 labels), `class_names`, `preprocessing` (the dict prediction repeats) and
    `report` (found/skipped files). The arrays are stored as decoded (uint8 0-255 for 8-bit images): train
    on `batches()` (or `microcnn.image_dataset_from_directory`), which scale them as prediction does."""

    def __init__(self, directory, image_size="auto", color="auto", validation_split=None, seed=0,
                 progress=None, channels=None, z_projection=None, cache=None, cache_update=True):
        self.directory = Path(directory)
        if color not in COLOR_MODES:
            raise ValueError(f"color: expected one of {', '.join(COLOR_MODES)}, got {color!r}")
        read = {"channels": check_channel_select(channels), "z_projection": z_projection}
        self.class_names, splits, non_images = scan(directory, validation_split, seed)
        self.image_size_reason = None
        if isinstance(image_size, str) and image_size == "auto":
            image_size, self.image_size_reason = auto_image_size([p for p, _ in splits["train"]])
        self.image_size = normalize_image_size(image_size)
        # cache: a folder (or microcnn.cache.ImageCache): decode through the on-disk cache and leave the
        # images there (x_train / x_val read rows on demand) instead of holding them in memory.
        # cache_update=False: read only what is cached (MPI ranks after rank 0 filled it).
        if cache is not None and not hasattr(cache, "decode_many"):
            from .cache import ImageCache

            cache = ImageCache(cache, self.image_size, read, update=cache_update)
        self.cache = cache
        decode_many = cache.decode_many if cache is not None else \
            (lambda paths, bar: images.decode_many(paths, self.image_size, bar, **read))
        failed = []
        decoded = {}
        for split, items in splits.items():
            paths = [p for p, _ in items]
            bar = (lambda it, n, split=split: progress(it, n, split)) if progress else None
            decoded[split] = []
            for (path, label), (image, error) in zip(items, decode_many(paths, bar)):
                if error is None:
                    decoded[split].append((image, label, path))
                else:
                    failed.append((path, error))
        for split in ("train", "validation"):
            present = {label for _, label, _ in decoded[split]}
            missing = [self.class_names[i] for i in range(len(self.class_names))
                       if i not in present and any(lbl == i for _, lbl in splits[split])]
            if missing:
                example = f" (e.g. {failed[0][0]}: {failed[0][1]})" if failed else ""
                raise DatasetError(f"{self.directory}: no readable {split} image in class(es) "
                                   f"{', '.join(missing)}{example}")
        channels = dataset_channels(decoded["train"], color, self.directory)
        decoded["validation"] = drop_mismatched(decoded["validation"], channels, failed)
        high = [images.convert_channels(d.pixels, channels) for d, _, _ in decoded["train"] if d.high_depth]
        self.preprocessing = {
            "version": images.PREPROCESSING_VERSION,
            "image_size": list(self.image_size),
            "channels": channels,
            "color": color,
            "resample": "bilinear",
            # Pooled over channels: what preprocessing version 1 applied (kept for readers of version 1).
            "high_depth_range": list(images.high_depth_range(high)) if high else None,
            "channel_ranges": images.channel_ranges(high) if high else None,
            "channel_select": read["channels"],
            "z_projection": z_projection,
        }
        del high
        any_high = any(d.high_depth for split in decoded.values() for d, _, _ in split)
        # Which depths the files had, for the log line (images.describe): 8-bit, high-bit-depth or both.
        self.any_8bit = any(not d.high_depth for split in decoded.values() for d, _, _ in split)
        self.x_train, self.y_train = self._stack(decoded["train"], any_high)
        self.x_val, self.y_val = self._stack(decoded["validation"], any_high)
        counts = {s: np.bincount(getattr(self, "y_" + ("train" if s == "train" else "val")),
                                 minlength=len(self.class_names)).tolist() for s in decoded}
        self.report = LoadReport(self.class_names, counts, non_images, failed)

    def _stack(self, items, as_float):
        """Fills one preallocated array, releasing each decoded image as it goes (peak ~1x the dataset)."""
        if self.cache is not None:
            from .cache import CachedImages

            return CachedImages([d for d, _, _ in items], self.preprocessing, as_float), \
                np.array([label for _, label, _ in items], np.int32)
        h, w = self.image_size
        c = self.preprocessing["channels"]
        x = np.empty((len(items), h, w, c), np.float32 if as_float else np.uint8)
        y = np.empty(len(items), np.int32)
        for i in range(len(items)):
            d, y[i], _ = items[i]
            x[i] = images.to_model_input(d, self.preprocessing) if as_float else \
                images.convert_channels(d.pixels, c)
            items[i] = None
        return x, y

    @property
    def num_classes(self):
        return len(self.class_names)

    @property
    def input_shape(self):
        return (*self.image_size, self.preprocessing["channels"])

    @property
    def nbytes(self):
        return self.x_train.nbytes + self.x_val.nbytes

    def batches(self, split="train", batch_size=32, shuffle=None, augmenter=None, seed=0, shard=True):
        """A BatchIterator over one split; train shuffles by default, validation does not. Under MPI each
        rank gets its share of every batch unless shard=False."""
        x, y = (self.x_train, self.y_train) if split == "train" else (self.x_val, self.y_val)
        if shuffle is None:
            shuffle = split == "train"
        return BatchIterator(x, y, batch_size, shuffle=shuffle, augmenter=augmenter, seed=seed, shard=shard)


def normalize_image_size(image_size):
    """150 -> (150, 150); (h, w) -> (h, w); anything else raises ValueError naming image_size."""
    size = (image_size, image_size) if isinstance(image_size, (int, np.integer)) else image_size
    try:
        h, w = (int(v) for v in size)
        ok = all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in size)
    except (TypeError, ValueError):
        ok = False
    if not ok or h < 1 or w < 1:
        raise ValueError(f"image_size: expected a positive integer or a pair (height, width), got {image_size!r}")
    return (h, w)


def preprocess_for_prediction(paths, preprocessing):
    """Decodes image files exactly as training did. Returns (x float32 (n, H, W, C), ok_paths,
    failed [(path, reason)]) with x's rows in the order of ok_paths."""
    size = tuple(preprocessing["image_size"])
    rows, ok, failed = [], [], []
    for p, (image, error) in zip(paths, images.decode_many(list(paths), size,
                                                           **images.read_options(preprocessing))):
        if error is None:
            try:
                rows.append(images.to_model_input(image, preprocessing))
            except images.ImageDecodeError as e:
                failed.append((p, str(e)))
                continue
            ok.append(p)
        else:
            failed.append((p, error))
    h, w = size
    x = np.stack(rows) if rows else np.empty((0, h, w, preprocessing["channels"]), np.float32)
    return x, ok, failed
