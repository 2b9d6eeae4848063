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

_LIB = None  # (ctypes.CDLL, symbol prefix, suffix) of NumPy's OpenBLAS, () when none; found once
_BLAS = None
_SGEMM = None
_NAMINGS = (("scipy_openblas", "64_", "scipy_cblas"), ("scipy_openblas", "", "scipy_cblas"),
            ("openblas", "64_", "cblas"), ("openblas", "", "cblas"))


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


def _library():
    global _LIB
    if _LIB is None:
        _LIB = ()
        for path in _candidates():
            try:
                lib = ctypes.CDLL(path)
            except OSError:
                continue
            for prefix, suffix, cblas in _NAMINGS:
                if (getattr(lib, f"{prefix}_get_num_threads{suffix}", None) is not None
                        and getattr(lib, f"{prefix}_set_num_threads{suffix}", None) is not None):
                    _LIB = (lib, prefix, suffix, cblas)
                    return _LIB
    return _LIB


def numpy_openblas():
    """(get_num_threads, set_num_threads) of NumPy's OpenBLAS, or () when none is found. Cached."""
    global _BLAS
    if _BLAS is None:
        _BLAS = ()
        if _library():
            lib, prefix, suffix, _ = _LIB
            get = getattr(lib, f"{prefix}_get_num_threads{suffix}")
            put = getattr(lib, f"{prefix}_set_num_threads{suffix}")
            get.restype, get.argtypes = ctypes.c_int, []
            put.restype, put.argtypes = None, [ctypes.c_int]
            _BLAS = (get, put)
    return _BLAS


def numpy_sgemm():
    """(address of cblas_sgemm, integer width in bits: 64 or 32) in NumPy's OpenBLAS, or (0, 0)
    when there is none, for edgecnn._cblas.sgemm. The ``64_`` symbol suffix marks the ILP64
    interface, whose sizes are 64-bit. Cached."""
    global _SGEMM
    if _SGEMM is None:
        _SGEMM = (0, 0)
        if _library():
            lib, _, suffix, cblas = _LIB
            fn = getattr(lib, f"{cblas}_sgemm{suffix}", None)
            if fn is not None:
                _SGEMM = (ctypes.cast(fn, ctypes.c_void_p).value, 64 if suffix == "64_" else 32)
    return _SGEMM
