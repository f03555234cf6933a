"""Writing files so that a crash never leaves half a file: the one helper every writer in microcnn uses.

The new content goes to a temporary file beside the target, is flushed and fsync'ed, then renamed over the
target (atomic on POSIX and Windows), and the directory is synced so the rename survives a power cut.
The temporary file is created with mode 0o666 and the process umask applies, so the result has the
permissions of any file the user creates (0o644 under the usual umask 022), not mkstemp's owner-only 0o600.
"""

import contextlib
import os
import uuid


def fsync_dir(path):
    """Make a rename or a new entry in directory `path` durable (POSIX; a no-op where unsupported)."""
    if os.name != "posix":
        return
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems cannot sync directories; the data files themselves were synced
    finally:
        os.close(fd)


@contextlib.contextmanager
def naming(path):
    """An OSError raised without a file name (ENOSPC from write() or fsync()) gets `path`, so the message
    says where: "[Errno 28] No space left on device: 'model/weights.safetensors'"."""
    try:
        yield
    except OSError as e:
        if e.filename is None and e.errno is not None:
            raise type(e)(e.errno, e.strerror or os.strerror(e.errno), os.fspath(path)) from None
        raise


def write_synced(path, data):
    """Create or truncate `path` with `data` (bytes) and fsync it; not atomic by itself (for staging areas)."""
    with naming(path), open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


@contextlib.contextmanager
def replacing(path, suffix=""):
    """`with replacing("plot.png", ".png") as tmp: fig.savefig(tmp)`: whatever is written to the temporary
    path `tmp` replaces `path` when the block ends without an error; on an error `path` is left untouched."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{uuid.uuid4().hex[:12]}.tmp{suffix}")
    os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))  # the umask applies, as for any file
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise
    fsync_dir(directory)


def write_atomic(path, data):
    """Replace `path` with `data` (bytes, or str written as UTF-8) atomically."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    with naming(path), replacing(path) as tmp, open(tmp, "wb") as f:
        f.write(data)
