"""The installed package's version (from its metadata; the extension's when running from a build tree)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("microcnn")
except PackageNotFoundError:  # running from a source tree that was not installed
    from . import _core

    __version__ = getattr(_core, "__version__", "0+unknown")
