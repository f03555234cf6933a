"""Optional packages (extras in pyproject.toml): imported when a feature needs them, with one clear message
naming the pip command when they are missing."""

import importlib


def require(module, feature, extra):
    """`require("h5py", "reading Keras files", "keras")` -> the module, or ImportError "reading Keras files
    needs h5py: pip install 'microcnn[keras]'"."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ImportError(f"{feature} needs {module}: pip install 'microcnn[{extra}]'") from None
