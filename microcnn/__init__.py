"""microcnn: small, fast convolutional networks for folders of labelled images."""

from importlib.metadata import PackageNotFoundError, version as _version

from . import _core

try:
    __version__ = _version("microcnn")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = getattr(_core, "__version__", "0+unknown")

__all__ = ["__version__"]
