"""The thread-count entry points of the OpenBLAS behind NumPy's matmul (the C functions threadpoolctl
uses), for the places that hold it to one thread: conv calls (edgecnn.kernels._conv_threads), a training
run (edgecnn.train) and the small-batch inference plan (edgecnn.inference).

NumPy's own copy (in its wheel's folders) is preferred to any other loaded OpenBLAS: OpenCV's wheel loads
its own first, and setting that one's threads leaves NumPy's matmul waking a second thread (measured with
cv2 imported: Model.predict at batch 128 took 308 ms instead of 58 ms, an inference-plan call 23 ms
instead of 0.7 ms). Without an OpenBLAS (NumPy on MKL or Accelerate) ``numpy_openblas()`` is () and
callers carry on, only less predictably on a busy machine.
"""
import ctypes
import os

import numpy as np

_BLAS = None


def _candidates():
    here = os.path.dirname(np.__file__)
    own = (here + ".libs", os.path.join(here, ".dylibs"))  # Linux and macOS wheels
    paths = []
    try:
        with open("/proc/self/maps") as f:  # Linux: the libraries actually loaded
            paths = [line.split()[-1] for line in f if "openblas" in line.lower()]
    except OSError:
        pass
    for d in own:
        if os.path.isdir(d):
            paths += [os.path.join(d, n) for n in sorted(os.listdir(d)) if "openblas" in n.lower()]
    paths = dict.fromkeys(p for p in paths if p.startswith("/"))
    return sorted(paths, key=lambda p: not p.startswith(own))  # NumPy's own first, stable otherwise


def numpy_openblas():
    """(get_num_threads, set_num_threads) of NumPy's OpenBLAS, or () when none is found. Cached."""
    global _BLAS
    if _BLAS is not None:
        return _BLAS
    _BLAS = ()
    for path in _candidates():
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for prefix, suffix in (("scipy_openblas", "64_"), ("scipy_openblas", ""), ("openblas", "64_"),
                               ("openblas", "")):
            get = getattr(lib, f"{prefix}_get_num_threads{suffix}", None)
            put = getattr(lib, f"{prefix}_set_num_threads{suffix}", None)
            if get is not None and put is not None:
                get.restype, get.argtypes = ctypes.c_int, []
                put.restype, put.argtypes = None, [ctypes.c_int]
                _BLAS = (get, put)
                return _BLAS
    return _BLAS
