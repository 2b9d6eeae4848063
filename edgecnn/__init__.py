"""edgecnn: deep learning for edge vision with Numba, NumPy and OpenCV.

Importing this package is cheap: it imports neither click nor cv2 and compiles nothing.
Submodules (``edgecnn.kernels``, ``edgecnn.graph``, ...) load on first attribute access.
"""
from importlib import import_module as _import_module

from ._version import __version__

_SUBMODULES = {"kernels", "layers", "graph", "optim", "data", "train", "io", "filters", "live", "models"}

__all__ = ["__version__", "load", *sorted(_SUBMODULES)]


def load(path, device="cpu"):
    """Load a model file written by ``edgecnn train`` (see ``edgecnn.io.load``); ``device`` is "cpu",
    "cuda" or "auto"."""
    return _import_module(".io", __name__).load(path, device=device)


def __getattr__(name):
    if name in _SUBMODULES:
        return _import_module("." + name, __name__)
    raise AttributeError(f"module 'edgecnn' has no attribute {name!r}")
