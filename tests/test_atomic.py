"""The one atomic writer: whole new content or the old file, ordinary permissions, no temporary files left."""

import os
import stat

import pytest

from microcnn import _atomic


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_write_atomic_replaces_with_ordinary_permissions(tmp_path):
    target = tmp_path / "history.csv"
    target.write_text("old")
    _atomic.write_atomic(target, "new, ünïcode\n")
    assert target.read_text(encoding="utf-8") == "new, ünïcode\n"
    _atomic.write_atomic(tmp_path / "w.bin", b"\x00\x01")
    assert (tmp_path / "w.bin").read_bytes() == b"\x00\x01"
    mask = os.umask(0)
    os.umask(mask)
    ordinary = tmp_path / "ordinary"
    ordinary.write_text("x")  # what open() gives under this umask
    assert _mode(target) == _mode(tmp_path / "w.bin") == _mode(ordinary) == 0o666 & ~mask
    assert sorted(os.listdir(tmp_path)) == ["history.csv", "ordinary", "w.bin"]


def test_a_failed_write_keeps_the_old_file_and_leaves_nothing(tmp_path):
    target = tmp_path / "plot.png"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="renderer"), _atomic.replacing(target, ".png") as tmp:
        with open(tmp, "wb") as f:
            f.write(b"half")
        raise RuntimeError("renderer failed")
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["plot.png"]
