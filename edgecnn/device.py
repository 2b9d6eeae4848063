"""Where a model's arrays live: ``"cpu"`` (NumPy) or ``"cuda"`` (numba device arrays).

    dev = get("auto")            # a Device: CPU, or CUDA when a GPU is usable
    buf = dev.empty((64, 10))    # np.ndarray on the CPU, a device array on CUDA
    dev.put(buf, host_array)     # host -> buf;  dev.to_host(buf) -> a new NumPy array

``resolve`` turns a name into ``"cpu"`` or ``"cuda"``:

* ``"cpu"`` never imports ``numba.cuda``;
* ``"cuda"`` (alias ``"gpu"``) needs a usable GPU, or the CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``, for
  tests); otherwise ``CudaUnavailableError`` with the reason and the fix;
* ``"auto"`` is ``"cuda"`` only with a real GPU: the simulator runs kernels in Python, thousands of
  times slower than the CPU kernels, so it is used only when asked for by name.

A ``Device`` gives the executor and the optimizers the handful of array operations they make outside
the kernels (allocate, copy, add, fill, transfer), chosen once per device so the CPU path calls NumPy
directly with no per-call dispatch.
"""
import numpy as np

from .kernels.cuda._device import CudaUnavailableError  # noqa: F401  (re-exported; imports no numba.cuda)

NAMES = ("cpu", "cuda", "auto")


class Device:
    """The CPU: NumPy arrays. ``copyto(dst, src)`` and ``add(a, b, out)`` follow NumPy's argument order."""
    name = "cpu"
    is_cuda = False

    # NumPy's own functions as attributes: no wrapper frame on the CPU path
    copyto = staticmethod(np.copyto)
    add = staticmethod(np.add)

    def __repr__(self):
        return f"Device({self.name!r})"

    def owns(self, a):
        return isinstance(a, np.ndarray)

    def empty(self, shape, dtype=np.float32):
        return np.empty(tuple(shape), dtype)

    def zeros(self, shape, dtype=np.float32):
        return np.zeros(tuple(shape), dtype)

    def fill(self, a, value):
        a.fill(value)

    def put(self, dst, host):
        """Copy the NumPy array ``host`` into ``dst`` (same shape and dtype)."""
        np.copyto(dst, host)

    def from_host(self, host):
        """A new array on this device holding a copy of ``host``."""
        return np.array(host, copy=True, order="C")

    def to_host(self, a, out=None):
        """A NumPy copy of ``a`` (into ``out`` when given)."""
        if out is None:
            return np.array(a, copy=True)
        np.copyto(out, a)
        return out

    def all_finite(self, a):
        return bool(np.isfinite(a).all())


class CudaDevice(Device):
    """A CUDA GPU (or the simulator): numba device arrays; copies and adds run as kernels."""
    name = "cuda"
    is_cuda = True

    def __init__(self):
        from .kernels.cuda import _device, tensor
        self._cuda = _device.cuda_module()
        self._tensor = tensor
        self._is_dev = _device.is_device_array

    def owns(self, a):
        return self._is_dev(a)

    def copyto(self, dst, src):
        self._tensor.copy(src, dst)

    def add(self, a, b, out):
        self._tensor.add(a, b, out=out)

    def empty(self, shape, dtype=np.float32):
        return self._cuda.device_array(tuple(int(d) for d in shape), dtype=np.dtype(dtype))

    def zeros(self, shape, dtype=np.float32):
        a = self.empty(shape, dtype)
        if np.dtype(dtype) == np.float32:
            self._tensor.fill(a, 0.0)
        else:
            a.copy_to_device(np.zeros(a.shape, dtype))
        return a

    def fill(self, a, value):
        self._tensor.fill(a, value)

    def put(self, dst, host):
        dst.copy_to_device(_plain(host))

    def from_host(self, host):
        return self._cuda.to_device(_plain(host))

    def to_host(self, a, out=None):
        if isinstance(a, np.ndarray):
            return Device.to_host(self, a, out)
        return a.copy_to_host() if out is None else a.copy_to_host(out)

    def all_finite(self, a):
        return self._tensor.all_finite(a)


def _plain(host):
    """``host`` as a C-contiguous array with ordinary strides: NumPy calls an array with a 0 stride on a
    length-1 axis (``a[:, None]`` of a broadcast) contiguous, but numba's copy_to_device drops that axis."""
    a = np.ascontiguousarray(host)
    return a.copy() if 0 in a.strides else a


CPU = Device()
_CUDA = None


def resolve(name="cpu", what="--device cuda"):
    """``"cpu"`` or ``"cuda"`` for a device name (see the module docstring); ``what`` prefixes the
    CudaUnavailableError message."""
    if isinstance(name, Device):
        return name.name
    if not isinstance(name, str) or name.lower() not in NAMES + ("gpu",):
        raise ValueError(f"device must be one of {', '.join(NAMES)}, got {name!r}")
    name = name.lower()
    if name == "cpu":
        return "cpu"
    from .kernels.cuda import _device
    if name == "auto":
        return "cuda" if not _device.simulator_enabled() and _device.is_available() else "cpu"
    _device.require_cuda(what)
    return "cuda"


def get(name="cpu"):
    """The ``Device`` for a name or Device (``resolve`` rules; one CUDA Device per process)."""
    global _CUDA
    if isinstance(name, Device):
        return name
    if resolve(name) == "cpu":
        return CPU
    if _CUDA is None:
        _CUDA = CudaDevice()
    return _CUDA


def of(a):
    """The Device an array lives on (NumPy arrays: CPU; anything with a CUDA array interface: CUDA)."""
    if isinstance(a, np.ndarray):
        return CPU
    from .kernels._common import is_device_array
    if is_device_array(a):
        return get("cuda")
    raise TypeError(f"expected a NumPy or CUDA device array, got {type(a).__name__}")
