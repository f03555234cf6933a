"""Progress bars on a terminal: room for the echoed "^C", and the line cleared when a bar closes."""

import io
import os

from microcnn import _progress


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_bar_leaves_two_columns_and_close_clears_the_line(monkeypatch):
    monkeypatch.setattr(_progress.shutil, "get_terminal_size", lambda *a: os.terminal_size((80, 24)))
    screen = Terminal()
    bar = _progress.bar(10, "Epoch 1/2", file=screen, mininterval=0)
    bar.update(3)
    bar.refresh()
    widths = [len(line) for line in screen.getvalue().replace("\x1b[A", "").split("\r") if line.strip()]
    assert widths and max(widths) == 78  # tqdm fills ncols exactly
    _progress.close(bar)
    assert screen.getvalue().endswith("\r\x1b[2K")


def test_close_without_a_bar_clears_only_a_terminal(monkeypatch):
    terminal, pipe = Terminal(), io.StringIO()
    monkeypatch.setattr(_progress.sys, "stderr", terminal)
    _progress.close(None)
    assert terminal.getvalue() == "\r\x1b[2K"
    monkeypatch.setattr(_progress.sys, "stderr", pipe)
    _progress.close(None)
    assert pipe.getvalue() == ""


def test_bar_is_off_on_a_pipe_unless_asked():
    assert _progress.bar(3, "x", file=io.StringIO()).disable
    kept = _progress.bar(3, "x", file=io.StringIO(), disable=False)
    assert not kept.disable
    kept.close()
