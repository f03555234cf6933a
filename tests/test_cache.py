"""The on-disk decoded-image cache: same arrays as decoding into memory, a second run decodes nothing, a
changed file is decoded again, and a partly written cache is never used."""

import json
import os

import numpy as np
import pytest
from PIL import Image

from microcnn._read_ahead import read_ahead
from microcnn.cache import CachedImages, ImageCache
from microcnn.data import FolderDataset


def _save(path, pixels):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)


@pytest.fixture
def dataset(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "ds"
    for c in ("a", "b"):
        for i in range(6):
            shape = (9, 11) if i % 3 == 0 else (9, 11, 3)  # some grayscale images among RGB ones
            _save(root / c / f"{i}.png", rng.integers(0, 256, shape, dtype=np.uint8))
    (root / "b" / "junk.png").write_bytes(b"not an image")
    return root


def test_cached_dataset_equals_the_in_memory_one(dataset, tmp_path):
    memory = FolderDataset(dataset, image_size=8, seed=3)
    cached = FolderDataset(dataset, image_size=8, seed=3, cache=tmp_path / "cache")
    assert isinstance(cached.x_train, CachedImages) and cached.cache.decoded == 13
    assert cached.preprocessing == memory.preprocessing
    np.testing.assert_array_equal(cached.y_train, memory.y_train)
    np.testing.assert_array_equal(cached.x_train[np.arange(len(memory.x_train))], memory.x_train)
    np.testing.assert_array_equal(cached.x_val[[1, 0]], memory.x_val[[1, 0]])
    assert [p.name for p, _ in cached.report.failed] == ["junk.png"]
    again = FolderDataset(dataset, image_size=8, seed=3, cache=tmp_path / "cache")
    assert again.cache.decoded == 0  # nothing decoded, the unreadable file included
    assert [p.name for p, _ in again.report.failed] == ["junk.png"]
    batches = [xb for xb, _ in again.batches("train", batch_size=4, seed=1)]
    expected = [xb for xb, _ in memory.batches("train", batch_size=4, seed=1)]
    for got, want in zip(batches, expected):
        np.testing.assert_array_equal(got, want)


def test_a_changed_file_is_decoded_again(dataset, tmp_path):
    cache = ImageCache(tmp_path / "cache", (8, 8))
    paths = sorted(dataset.rglob("*.png"))
    before = cache.decode_many(paths)
    changed = dataset / "a" / "1.png"
    _save(changed, np.full((9, 11, 3), 7, np.uint8))
    os.utime(changed, ns=(os.stat(changed).st_atime_ns, os.stat(changed).st_mtime_ns + 10**9))
    cache = ImageCache(tmp_path / "cache", (8, 8))
    after = cache.decode_many(paths)
    assert cache.decoded == 1
    i = paths.index(changed)
    assert (after[i][0].pixels == 7).all() and not (before[i][0].pixels == 7).all()
    other = ImageCache(tmp_path / "cache", (6, 6))  # another size is another key: decoded anew
    other.decode_many(paths[:2])
    assert other.decoded == 2 and other.folder != cache.folder


def test_a_partly_written_cache_is_never_used(dataset, tmp_path):
    paths = sorted(dataset.rglob("*.png"))[:4]
    cache = ImageCache(tmp_path / "cache", (8, 8))
    first = [image.pixels for image, _ in cache.decode_many(paths)]
    # An interrupted update: bytes appended after the last commit, and a temp index never renamed.
    records = next(cache.folder.glob("records-*.bin"))
    with open(records, "ab") as f:
        f.write(b"\xff" * 1000)
    (cache.folder / ".index.json.123.tmp").write_text("{")
    cache = ImageCache(tmp_path / "cache", (8, 8))
    again = [image.pixels for image, _ in cache.decode_many(paths)]
    assert cache.decoded == 0
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    # An index naming records beyond the end of the file (records lost): those are decoded again.
    index = json.loads((cache.folder / "index.json").read_text())
    os.truncate(cache.folder / index["records"], 10)
    cache = ImageCache(tmp_path / "cache", (8, 8))
    cache.decode_many(paths)
    assert cache.decoded == 4
    (cache.folder / "index.json").write_text("{not json")  # a damaged index: the cache starts over
    cache = ImageCache(tmp_path / "cache", (8, 8))
    cache.decode_many(paths)
    assert cache.decoded == 4


def test_read_ahead_keeps_order_and_passes_errors_on():
    assert list(read_ahead(iter(range(50)), depth=3)) == list(range(50))

    def failing():
        yield 1
        raise OSError("disk gone")

    with pytest.raises(OSError, match="disk gone"):
        list(read_ahead(failing()))
