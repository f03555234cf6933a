"""An on-disk cache of decoded images, so a dataset is decoded once and need not fit in memory.

Layout of a cache folder (by default DATASET/.microcnn-cache/, hidden so the dataset scan skips it):

    <key>/records-<generation>.bin   the decoded pixels, one record after another (raw C-order bytes)
    <key>/index.json                 {"version", "decode", "records": file name, one column per field}
    <key>/lock                       held (flock) while the store is updated

`<key>` is a hash of everything decoding depends on (the preprocessing version, the image size, the reader
options, Pillow's version), so images decoded at another size never mix. The index has one row per file
(absolute path): its size and modification time (ns) as seen when it was decoded, and either its record
(offset, length, and a format: shape, dtype and the decoder's other fields such as `mode`) or the reason it
could not be decoded: a second run decodes nothing, and a changed file is decoded again.

Safety: records are only appended; the index is replaced atomically (temp file + rename) after the new
records are flushed to disk, and it is committed every COMMIT_SECONDS while decoding, so an interrupted first
run keeps what it decoded. A record the index does not name is never read, so a partly written cache is
never used. Updates hold an exclusive lock, so several runs (or MPI ranks) can share a cache; readers need
no lock (committed bytes never change). When more than half the records file is stale, the next update
rewrites it as a new generation.

Images are read back with one `os.pread` per image rather than through a memory map: the process then
holds the batches it asked for, not the pages of the whole file it has touched, so resident memory stays
flat however large the dataset (the OS page cache still keeps hot data in RAM).
"""

import hashlib
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from . import images

CACHE_VERSION = 2
CACHE_DIR_NAME = ".microcnn-cache"
COMMIT_SECONDS = 15.0  # an interrupted first run keeps what was decoded up to this long ago


def default_cache_dir(dataset):
    return Path(dataset) / CACHE_DIR_NAME


def decode_key(image_size, read_options):
    """The part of the preprocessing that decoding depends on, as a JSON-able dict."""
    import PIL

    return {"version": images.PREPROCESSING_VERSION, "image_size": [int(v) for v in image_size],
            "read": {k: read_options[k] for k in sorted(read_options)}, "pillow": PIL.__version__}


class CachedImage(images.DecodedImage):
    """A decoded image whose pixels stay on disk until asked for (each `pixels` access reads them)."""

    __slots__ = ("_dtype", "_nbytes", "_offset", "_shape", "_store")

    def __init__(self, store, offset, shape, dtype, fields):
        self._store, self._offset = store, offset
        self._shape, self._dtype = tuple(shape), np.dtype(dtype)
        self._nbytes = int(np.prod(self._shape)) * self._dtype.itemsize
        for name, value in fields.items():
            setattr(self, name, value)

    @property
    def pixels(self):
        return self._store.read(self._offset, self._nbytes, self._dtype, self._shape)

    def read_into(self, out):
        """Read the pixels straight into `out` (a C-contiguous array of this image's shape and dtype)."""
        self._store.read_into(self._offset, out)

    @property
    def high_depth(self):
        return self._dtype != np.uint8

    @property
    def channels(self):
        return self._shape[2]

    @property
    def dtype(self):
        return self._dtype

    @property
    def shape(self):
        return self._shape


def _record_fields(image):
    """The decoder's fields other than the pixels (mode, ...), JSON-able, to rebuild the image from disk."""
    names = [s for cls in type(image).__mro__ for s in getattr(cls, "__slots__", ()) if s != "pixels"]
    return {n: getattr(image, n) for n in names if not n.startswith("_") and hasattr(image, n)}


class _RecordFile:
    """Positional reads from one records file (kept open for the life of the cache view)."""

    def __init__(self, path):
        self.path = path
        self.fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))

    def read(self, offset, nbytes, dtype, shape):
        data = os.pread(self.fd, nbytes, offset)
        if len(data) != nbytes:
            raise OSError(f"{self.path}: truncated cache file (record at {offset}); delete the cache folder")
        return np.frombuffer(data, dtype).reshape(shape).copy()

    def read_into(self, offset, out):
        view = memoryview(out).cast("B")
        if os.preadv(self.fd, [view], offset) != len(view):
            raise OSError(f"{self.path}: truncated cache file (record at {offset}); delete the cache folder")

    def close(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def __del__(self):
        self.close()


class _Lock:
    """An exclusive advisory lock on a file (a no-op where fcntl does not exist)."""

    def __init__(self, path):
        self.path = path
        self.f = None

    def __enter__(self):
        self.f = open(self.path, "a+b")
        try:
            import fcntl

            fcntl.flock(self.f, fcntl.LOCK_EX)
        except ImportError:
            pass
        return self

    def __exit__(self, *exc):
        self.f.close()  # closing releases the lock


def _write_json_atomic(path, data):
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, separators=(",", ":"))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class _Index:
    """The index as columns, one row per file (a dict per file would cost ~1 kB each in memory): path, size,
    mtime_ns, offset (-1: no pixels), nbytes, format (an entry of `formats`: shape, dtype and the decoder's
    other fields), and `errors` {row: why the file could not be decoded}."""

    COLUMNS = ("size", "mtime_ns", "offset", "nbytes", "format")

    def __init__(self, data=None):
        data = data or {}
        self.paths = list(data.get("paths", []))
        for column in self.COLUMNS:
            setattr(self, column, list(data.get(column, [])))
            if len(getattr(self, column)) != len(self.paths):
                raise ValueError(f"index column {column} has the wrong length")
        self.formats = list(data.get("formats", []))
        self.errors = {int(row): why for row, why in data.get("errors", {}).items()}
        self.rows = {p: i for i, p in enumerate(self.paths)}
        self._format_ids = {json.dumps(f, sort_keys=True): i for i, f in enumerate(self.formats)}

    def to_json(self):
        return {"paths": self.paths, **{c: getattr(self, c) for c in self.COLUMNS}, "formats": self.formats,
                "errors": {str(row): why for row, why in self.errors.items()}}

    def matches(self, row, stat):
        return row is not None and self.size[row] == stat.st_size and self.mtime_ns[row] == stat.st_mtime_ns

    def set(self, path, size, mtime_ns, offset=-1, nbytes=0, fmt=None, error=None):
        row = self.rows.get(path)
        if row is None:
            row = self.rows[path] = len(self.paths)
            self.paths.append(path)
            for column in self.COLUMNS:
                getattr(self, column).append(0)
        self.size[row], self.mtime_ns[row], self.offset[row], self.nbytes[row] = size, mtime_ns, offset, nbytes
        self.format[row] = -1 if fmt is None else self._format_id(fmt)
        if error is None:
            self.errors.pop(row, None)
        else:
            self.errors[row] = error
        return row

    def _format_id(self, fmt):
        key = json.dumps(fmt, sort_keys=True)
        if key not in self._format_ids:
            self._format_ids[key] = len(self.formats)
            self.formats.append(fmt)
        return self._format_ids[key]

    def live_bytes(self):
        return sum(n for offset, n in zip(self.offset, self.nbytes) if offset >= 0)


class ImageCache:
    """The decoded images of one decode key in one cache folder. `decode_many(paths)` returns, like
    `images.decode_many`, [(image or None, error or None)] in the order of paths, decoding only what the
    cache does not hold (or holds for an older version of the file)."""

    def __init__(self, folder, image_size, read_options=None, update=True):
        self.update = update  # False: every image must already be cached (MPI ranks after rank 0 built it)
        self.key = decode_key(image_size, read_options or {})
        self.image_size = tuple(self.key["image_size"])
        self.read_options = dict(read_options or {})
        digest = hashlib.sha256(json.dumps(self.key, sort_keys=True).encode()).hexdigest()[:16]
        self.folder = Path(folder) / digest
        self.decoded = 0  # images decoded (not found in the cache) by decode_many so far
        self._index = _Index()
        self._records_name = None
        self._reader = None

    # --- reading the committed state --------------------------------------------------------------------
    def _load_index(self):
        try:
            data = json.loads((self.folder / "index.json").read_text(encoding="utf-8"))
            if data.get("version") != CACHE_VERSION or data.get("decode") != self.key:
                return _Index(), None
            index, records = _Index(data), data.get("records")
            size = (self.folder / records).stat().st_size
        except (OSError, ValueError, TypeError, AttributeError, KeyError):  # absent or damaged: start over
            return _Index(), None
        for row, (offset, n) in enumerate(zip(index.offset, index.nbytes)):
            if offset >= 0 and offset + n > size:  # records lost after the index was written
                index.size[row] = -1
        return index, records

    def lookup(self, paths):
        """[row or None] per path in the committed index: None when the file is new or changed."""
        self._index, self._records_name = self._load_index()
        out = []
        for p in paths:
            try:
                stat = os.stat(p)
            except OSError:
                out.append(None)
                continue
            row = self._index.rows.get(os.path.abspath(p))
            out.append(row if self._index.matches(row, stat) else None)
        return out

    def _results(self, rows):
        index = self._index
        path = self.folder / self._records_name if self._records_name else None
        if self._reader is None or self._reader.path != path:
            self._reader = _RecordFile(path) if path is not None else None
        formats = [(tuple(f["shape"]), np.dtype(f["dtype"]), f.get("fields", {})) for f in index.formats]
        return [(None, index.errors[row]) if row in index.errors else
                (CachedImage(self._reader, index.offset[row], *formats[index.format[row]]), None) for row in rows]

    # --- updating ----------------------------------------------------------------------------------------
    def decode_many(self, paths, progress=None):
        paths = list(paths)
        rows = self.lookup(paths)
        missing = [i for i, row in enumerate(rows) if row is None]
        if missing and not self.update:
            raise RuntimeError(f"{self.folder}: {len(missing)} image(s) not in the cache rank 0 wrote (first: "
                               f"{paths[missing[0]]}); do all processes see the same files and the same "
                               f"--cache, and was the dataset changed during the start-up?")
        if missing:
            self.folder.mkdir(parents=True, exist_ok=True)
            with _Lock(self.folder / "lock"):
                rows = self.lookup(paths)  # another process may have decoded them meanwhile
                missing = [i for i, row in enumerate(rows) if row is None]
                if missing:
                    self._decode_into(paths, rows, missing, progress)
                    self.decoded += len(missing)
        results = self._results(rows)
        self._index = _Index()  # the images hold what they need; the index is reloaded on the next call
        return results

    def _decode_into(self, paths, rows, missing, progress):
        index, records = self._index, self._records_name
        if records is not None:
            size = (self.folder / records).stat().st_size
            if size > 2 * index.live_bytes() + (1 << 20):  # mostly stale (changed files): a new generation
                records = self._compact(index, records)
        if records is None:
            records = f"records-{os.getpid()}-{int.from_bytes(os.urandom(4), 'little'):08x}.bin"
            index = self._index = _Index()
        items = (paths[i] for i in missing)
        if progress is not None:
            items = progress(items, len(missing))
        with open(self.folder / records, "ab") as out, images.quiet_decoder_warnings():
            last_commit = time.monotonic()
            for i, path in zip(missing, items):
                key = os.path.abspath(path)
                try:
                    stat = os.stat(path)
                    image = images.decode(path, self.image_size, **self.read_options)
                except images.ImageDecodeError as e:
                    rows[i] = index.set(key, stat.st_size, stat.st_mtime_ns, error=str(e))
                except OSError as e:
                    rows[i] = index.set(key, -1, -1, error=f"could not read: {e.strerror or e}")
                else:
                    pixels = np.ascontiguousarray(image.pixels)
                    fmt = {"shape": list(pixels.shape), "dtype": pixels.dtype.str, "fields": _record_fields(image)}
                    rows[i] = index.set(key, stat.st_size, stat.st_mtime_ns, out.tell(), pixels.nbytes, fmt)
                    out.write(pixels.tobytes())
                if time.monotonic() - last_commit >= COMMIT_SECONDS:  # (the index is rewritten whole)
                    self._commit(out, index, records)
                    last_commit = time.monotonic()
            self._commit(out, index, records)
        self._records_name = records

    def _commit(self, out, index, records):
        out.flush()
        os.fsync(out.fileno())
        _write_json_atomic(self.folder / "index.json",
                           {"version": CACHE_VERSION, "decode": self.key, "records": records, **index.to_json()})

    def _compact(self, index, records):
        """Copy the live records into a new file (offsets updated in `index`); returns its name."""
        new = f"records-{os.getpid()}-{int.from_bytes(os.urandom(4), 'little'):08x}.bin"
        reader = _RecordFile(self.folder / records)
        with open(self.folder / new, "wb") as out:
            for row, (offset, n) in enumerate(zip(index.offset, index.nbytes)):
                if offset >= 0:
                    index.offset[row] = out.tell()
                    out.write(os.pread(reader.fd, n, offset))
            self._commit(out, index, new)
        reader.close()
        try:
            os.remove(self.folder / records)  # open readers keep their handle (POSIX)
        except OSError:
            pass
        return new


class CachedImages:
    """Rows of a split as a read-only (N, H, W, C) array-like: `x[idx]` reads those images from the cache
    and converts them exactly as the in-memory dataset does (channels; uint8 kept, high-bit-depth scaled
    to float32). Only the rows asked for are ever in memory."""

    ndim = 4

    def __init__(self, records, preprocessing, as_float):
        self.records = records
        self.preprocessing = preprocessing
        h, w = preprocessing["image_size"]
        self.shape = (len(records), h, w, preprocessing["channels"])
        self.dtype = np.dtype(np.float32 if as_float else np.uint8)
        self.nbytes = 0  # resident bytes: nothing is held
        self.disk_bytes = sum(r._nbytes for r in records)

    def __len__(self):
        return len(self.records)

    def __getitem__(self, index):
        rows = np.arange(len(self.records))[index]
        if np.ndim(rows) == 0:
            return self[[int(rows)]][0]
        out = np.empty((len(rows), *self.shape[1:]), self.dtype)
        c = self.shape[3]
        for j, i in enumerate(rows):
            image = self.records[i]
            if self.dtype == np.uint8 and image.dtype == np.uint8 and image.channels == c:
                image.read_into(out[j])
            elif self.dtype == np.uint8:
                out[j] = images.convert_channels(image.pixels, c)
            else:
                out[j] = images.to_model_input(image, self.preprocessing)
        return out

    def __array__(self, dtype=None, copy=None):
        a = self[:]
        return a if dtype is None else a.astype(dtype, copy=False)


def describe_cache(cache, total):
    """One line for the log: where the cache is and how much it had to decode."""
    reused = total - cache.decoded
    return f"Image cache {cache.folder}: {reused} of {total} image(s) reused, {cache.decoded} decoded"


def open_cache(folder, image_size, read_options=None, update=True, stream=sys.stderr):
    """ImageCache in `folder`, or None (with a note on `stream`) when the folder cannot be created."""
    try:
        Path(folder).mkdir(parents=True, exist_ok=True)
        probe = Path(folder) / f".probe-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        print(f"note: cannot write the image cache in {folder} ({e.strerror or e}); decoding into memory "
              f"instead (use --cache DIR to put it elsewhere)", file=stream)
        return None
    return ImageCache(folder, image_size, read_options, update)
