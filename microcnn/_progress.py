"""Progress bars that leave the terminal tidy when Ctrl-C stops them.

A terminal echoes Ctrl-C as the two characters "^C" where its cursor is: at the end of a bar as wide as the
terminal they wrap, and tqdm's clean-up then clears the wrong line and leaves a stray "^" behind. These bars are
two columns narrower than the terminal, and `close` clears the whole line they were on.
"""

import shutil
import sys


def _is_terminal(stream):
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def bar(total, desc, unit="batch", file=None, leave=False, **kwargs):
    """A tqdm bar (tqdm.auto: a widget in notebooks) on `file` (default stderr), sized to the terminal each
    time one is made. By default it is disabled when `file` is not a terminal; disable=False keeps it (a
    notebook's stderr is not a terminal)."""
    from tqdm.auto import tqdm

    file = sys.stderr if file is None else file
    if _is_terminal(file):
        kwargs.setdefault("ncols", max(shutil.get_terminal_size().columns - 2, 20))
    kwargs.setdefault("disable", None)
    return tqdm(total=total, desc=desc, unit=unit, leave=leave, file=file, **kwargs)


def close(progress):
    """Close a bar made by `bar` (or nothing, for None); on a terminal, also clear the line the cursor is on,
    so that what Ctrl-C echoed there goes too."""
    stream = sys.stderr
    if progress is not None:
        progress.close()
        if progress.leave:
            return
        fp = getattr(progress, "fp", None)
        stream = getattr(fp, "stream", fp) or stream  # tqdm wraps the stream it writes to
    if _is_terminal(stream):
        try:
            stream.write("\r\x1b[2K")
            stream.flush()
        except (OSError, ValueError):
            pass
