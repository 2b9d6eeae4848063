"""Which CUDA target is present, whether a GPU is usable, and device-array helpers.

``numba.cuda`` comes from the ``numba-cuda`` package when it is installed (``pip install
"edgecnn[cuda]"``; it redirects ``numba.cuda`` to itself) and from numba's built-in target otherwise:
the code imports ``numba.cuda`` and works with either. Under ``NUMBA_ENABLE_CUDASIM=1`` both give the
simulator, which runs kernels in Python on NumPy arrays (no GPU needed, slow: tests only).
"""
import os

import numpy as np

_FIX = ('install the CUDA extra (pip install "edgecnn[cuda]", then "numba-cuda[cu12]" or "numba-cuda[cu13]" '
        "to match the CUDA version nvidia-smi reports), check the NVIDIA driver with nvidia-smi, "
        "or use --device cpu")


class CudaUnavailableError(RuntimeError):
    """CUDA was asked for but cannot run here; the message says why and how to fix it."""


def simulator_enabled():
    return os.environ.get("NUMBA_ENABLE_CUDASIM", "0") == "1"


def cuda_module():
    """``numba.cuda`` (numba-cuda's or numba's built-in one); CudaUnavailableError if neither imports."""
    try:
        from numba import cuda
    except Exception as e:  # ImportError, or a broken toolkit raising at import
        raise CudaUnavailableError(f"numba.cuda cannot be imported ({e}): {_FIX}") from None
    return cuda


def implementation():
    """'numba-cuda', 'built-in' or 'simulator'."""
    if simulator_enabled():
        return "simulator"
    cuda = cuda_module()
    return "built-in" if getattr(cuda, "implementation", "") == "Built-in" else "numba-cuda"


def is_available():
    """True when kernels can run: a working GPU and driver, or the simulator."""
    try:
        return bool(cuda_module().is_available())
    except Exception:
        return False


def require_cuda(what="CUDA"):
    """Raise CudaUnavailableError with the reason and the fix unless kernels can run here."""
    cuda = cuda_module()
    try:
        ok = cuda.is_available()
    except Exception as e:
        raise CudaUnavailableError(f"{what}: the CUDA driver failed to initialise ({e}): {_FIX}") from None
    if not ok:
        raise CudaUnavailableError(f"{what}: no usable CUDA GPU or driver was found: {_FIX}")
    return cuda


def is_device_array(a):
    """True for numba device arrays, the simulator's fake device arrays and any object exposing
    ``__cuda_array_interface__`` (CuPy, PyTorch CUDA tensors)."""
    if isinstance(a, np.ndarray):
        return False
    return hasattr(a, "__cuda_array_interface__") or hasattr(a, "__cuda_ndarray__")


def as_device(a):
    """A numba device array view of ``a`` (no copy): numba/simulator arrays as they are, other
    ``__cuda_array_interface__`` objects through ``cuda.as_cuda_array``; None stays None."""
    if a is None or hasattr(a, "copy_to_host"):
        return a
    return cuda_module().as_cuda_array(a)


def empty(shape, dtype=np.float32):
    return cuda_module().device_array(tuple(int(d) for d in shape), dtype=np.dtype(dtype))


def out_or_empty(out, shape, dtype=np.float32):
    """The caller's buffer (as a numba device array) or a new one."""
    return empty(shape, dtype) if out is None else as_device(out)


def flat(a):
    """A 1-D view of a C-contiguous device array."""
    return a.reshape(a.size)


_DUMMY = {}
_SCRATCH = {}


def scratch(tag, shape, dtype=np.float32):
    """A device buffer reused by every call with the same (tag, shape, dtype): loss terms and partial
    sums, which a training step would otherwise allocate (cudaMalloc + free) every time. Launches are
    ordered on the stream, so reuse by the next call is safe."""
    key = (tag, tuple(int(d) for d in shape), np.dtype(dtype).str)
    buf = _SCRATCH.get(key)
    if buf is None:
        if len(_SCRATCH) > 64:
            _SCRATCH.clear()
        buf = _SCRATCH[key] = empty(shape, dtype)
    return buf


def dummy(dtype=np.float32):
    """A 1-element device array standing in for an absent optional input (a kernel argument cannot
    be None); allocated once per dtype."""
    key = np.dtype(dtype).str
    if key not in _DUMMY:
        _DUMMY[key] = empty((1,), dtype)
    return _DUMMY[key]
