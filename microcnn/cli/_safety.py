"""The command-line tools' guards for the user's files and terminal: an output folder is checked writable before
any work, only the files microcnn-train wrote are ever removed, a closed or broken stdout never stops training,
and (microcnn/_startup.py) a Ctrl-C while the tools start is one line."""

import errno
import os
import shutil
import sys
import uuid
from pathlib import Path

CHECKPOINT_FILES = ("config.json", "weights.safetensors", "optimizer.safetensors")


def probe_writable(out):
    """Create `out` if needed and write, sync and remove a small file in it; an OSError names the folder (a
    read-only mount, an immutable folder, a full disk) before any decoding or training. A folder created only
    for the probe is removed again."""
    out = Path(out)
    created = []
    for folder in reversed([out, *out.parents]):
        if not folder.exists():
            created.append(folder)
    probe = out / f".microcnn-write-test-{uuid.uuid4().hex}"
    try:
        out.mkdir(parents=True, exist_ok=True)
        with open(probe, "wb") as f:
            f.write(b"\0" * 65536)
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        raise RuntimeError(f"--out {out}: cannot write there ({e.strerror or e})") from None
    finally:
        if probe.exists():
            probe.unlink()
        for folder in reversed(created):
            try:
                folder.rmdir()
            except OSError:
                pass


def check_free_space(out, nbytes, what):
    """RuntimeError naming the folder when its file system has less than `nbytes` free."""
    try:
        free = shutil.disk_usage(out if Path(out).exists() else Path(out).parent).free
    except OSError:
        return
    if free < nbytes:
        raise RuntimeError(f"--out {out}: {free / 1e6:.0f} MB free, but {what} needs about {nbytes / 1e6:.0f} MB")


def remove_checkpoint(folder, is_ours):
    """Remove a checkpoint folder this tool wrote -- its own files only, then the folder if that left it
    empty. A symbolic link, or a folder not written by this tool, is left alone (returns False)."""
    folder = Path(folder)
    if folder.is_symlink() or not folder.is_dir() or not is_ours(folder):
        return False
    for name in CHECKPOINT_FILES:
        (folder / name).unlink(missing_ok=True)
    for entry in folder.iterdir():  # an unfinished save's staging folders
        if entry.name.startswith(".microcnn-") and entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
    try:
        folder.rmdir()
    except OSError:
        pass  # the user keeps something of their own in it
    return True


def with_path(error, path):
    """An OSError raised without a file name (ENOSPC from write()) gets the path it was writing."""
    if isinstance(error, OSError) and error.filename is None and error.errno is not None:
        return type(error)(error.errno, error.strerror or os.strerror(error.errno), os.fspath(path))
    return error


class TolerantStream:
    """Wraps stdout for training: once the reader has gone (a closed pipe: `| head -1`; a closed descriptor:
    `>&-`) output is dropped instead of raising, so training and saving carry on."""

    def __init__(self, stream):
        self._stream = stream
        self.broken = stream is None

    def _failed(self):
        self.broken = True
        try:  # later writes by the interpreter itself (the flush at exit) go nowhere, silently
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self._stream.fileno())
            os.close(devnull)
        except (OSError, ValueError, AttributeError):
            pass

    def write(self, text):
        if not self.broken:
            try:
                return self._stream.write(text)
            except (OSError, ValueError) as e:
                if isinstance(e, OSError) and e.errno not in (errno.EPIPE, errno.EBADF, errno.EINVAL):
                    raise
                self._failed()
        return len(text)

    def flush(self):
        if not self.broken:
            try:
                self._stream.flush()
            except (OSError, ValueError):
                self._failed()

    def isatty(self):
        return not self.broken and self._stream.isatty()

    def __getattr__(self, name):
        return getattr(self._stream, name)


def tolerate_closed_stdout():
    """Install TolerantStream as sys.stdout (and sys.stderr when that is closed)."""
    if not isinstance(sys.stdout, TolerantStream):
        sys.stdout = TolerantStream(sys.stdout)
    if sys.stderr is None:
        sys.stderr = TolerantStream(None)
