"""An on-disk cache of decoded images, so a dataset is decoded once and need not fit in memory.

Layout of a cache folder (by default DATASET/.microcnn-cache/, hidden so the dataset scan skips it):

    <key>/records-<generation>.bin   the decoded pixels, one record after another (raw C-order bytes)
    <key>/index.json                 {"version", "decode", "records": file name, "files": {path: entry}}
    <key>/lock                       held (flock) while the store is updated

`<key>` is a hash of everything decoding depends on (the preprocessing version, the image size, the reader
options, Pillow's version), so images decoded at another size never mix. Each file's entry holds its size
and modification time (ns) as seen when it was decoded, and either its record (offset, shape, dtype and
the decoder's other fields such as `mode`) or the reason it could not be decoded: a second run decodes
nothing, and a changed file is decoded again.

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

CACHE_VERSION = 1
CACHE_DIR_NAME = ".microcnn-cache"
COMMIT_SECONDS = 15.0  # an interrupted first run keeps what was decoded up to this long ago


def default_cache_dir(dataset):
    return Path(dataset) / CACHE_DIR_NAME


def _stat_key(path):
    st = os.stat(path)
    return st.st_size, st.st_mtime_ns


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
        self._files = {}
        self._records_name = None
        self._reader = None

    # --- reading the committed state --------------------------------------------------------------------
    def _load_index(self):
        try:
            index = json.loads((self.folder / "index.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}, None
        if index.get("version") != CACHE_VERSION or index.get("decode") != self.key:
            return {}, None
        records = index.get("records")
        if not records or not (self.folder / records).is_file():
            return {}, None
        size = (self.folder / records).stat().st_size
        files = {p: e for p, e in index.get("files", {}).items()
                 if "error" in e or e.get("offset", -1) + e.get("nbytes", 0) <= size}
        return files, records

    def lookup(self, paths):
        """[entry or None] per path from the committed index: None when the file is new or changed."""
        self._files, self._records_name = self._load_index()
        out = []
        for p in paths:
            entry = self._files.get(os.path.abspath(p))
            try:
                current = list(_stat_key(p))
            except OSError:
                current = None
            out.append(entry if entry is not None and entry.get("stat") == current else None)
        return out

    def _results(self, entries):
        path = self.folder / self._records_name if self._records_name else None
        if self._reader is None or self._reader.path != path:
            self._reader = _RecordFile(path) if path is not None else None
        reader = self._reader
        return [(None, e["error"]) if "error" in e else
                (CachedImage(reader, e["offset"], e["shape"], e["dtype"], e.get("fields", {})), None)
                for e in entries]

    # --- updating ----------------------------------------------------------------------------------------
    def decode_many(self, paths, progress=None):
        paths = list(paths)
        entries = self.lookup(paths)
        missing = [i for i, e in enumerate(entries) if e is None]
        if missing and not self.update:
            raise RuntimeError(f"{self.folder}: {len(missing)} image(s) not in the cache (first: "
                               f"{paths[missing[0]]}); was it changed during the run?")
        if missing:
            self.folder.mkdir(parents=True, exist_ok=True)
            with _Lock(self.folder / "lock"):
                entries = self.lookup(paths)  # another process may have decoded them meanwhile
                missing = [i for i, e in enumerate(entries) if e is None]
                if missing:
                    self._decode_into(paths, entries, missing, progress)
                    self.decoded += len(missing)
        return self._results(entries)

    def _decode_into(self, paths, entries, missing, progress):
        files, records = self._files, self._records_name
        if records is not None:
            size = (self.folder / records).stat().st_size
            used = sum(e.get("nbytes", 0) for e in files.values() if "error" not in e)
            if size > 2 * used + (1 << 20):  # mostly stale (changed files): rewrite into a new generation
                files, records = self._compact(files, records)
        if records is None:
            records = f"records-{os.getpid()}-{int.from_bytes(os.urandom(4), 'little'):08x}.bin"
            files = {}
        items = (paths[i] for i in missing)
        if progress is not None:
            items = progress(items, len(missing))
        with open(self.folder / records, "ab") as out, images.quiet_decoder_warnings():
            last_commit = time.monotonic()
            for i, path in zip(missing, items):
                key = os.path.abspath(path)
                try:
                    stat = list(_stat_key(path))
                    image = images.decode(path, self.image_size, **self.read_options)
                except images.ImageDecodeError as e:
                    entry = {"stat": stat, "error": str(e)}
                except OSError as e:
                    entry = {"stat": None, "error": f"could not read: {e.strerror or e}"}
                else:
                    pixels = np.ascontiguousarray(image.pixels)
                    entry = {"stat": stat, "offset": out.tell(), "nbytes": pixels.nbytes,
                             "shape": list(pixels.shape), "dtype": pixels.dtype.str,
                             "fields": _record_fields(image)}
                    out.write(pixels.tobytes())
                files[key] = entries[i] = entry
                if time.monotonic() - last_commit >= COMMIT_SECONDS:  # (the index is rewritten whole)
                    self._commit(out, files, records)
                    last_commit = time.monotonic()
            self._commit(out, files, records)
        self._files, self._records_name = files, records

    def _commit(self, out, files, records):
        out.flush()
        os.fsync(out.fileno())
        _write_json_atomic(self.folder / "index.json",
                           {"version": CACHE_VERSION, "decode": self.key, "records": records, "files": files})

    def _compact(self, files, records):
        new = f"records-{os.getpid()}-{int.from_bytes(os.urandom(4), 'little'):08x}.bin"
        reader = _RecordFile(self.folder / records)
        kept = {}
        with open(self.folder / new, "wb") as out:
            for p, e in files.items():
                if "error" not in e:
                    data = os.pread(reader.fd, e["nbytes"], e["offset"])
                    e = {**e, "offset": out.tell()}
                    out.write(data)
                kept[p] = e
            self._commit(out, kept, new)
        reader.close()
        try:
            os.remove(self.folder / records)  # open readers keep their handle (POSIX)
        except OSError:
            pass
        return kept, new


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
