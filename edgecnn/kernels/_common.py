"""Validation and shape helpers shared by every kernel family.

Host entry points call these before any compiled code runs, so a caller sees a ValueError or
TypeError naming the parameter and the shapes, never a Numba typing error or an out-of-bounds write.
"""
import numbers

import numpy as np


def is_device_array(a):
    """True for CUDA device arrays (numba, CuPy, anything with __cuda_array_interface__).

    The CUDA simulator's arrays carry ``__cuda_ndarray__`` instead of the interface.
    """
    if isinstance(a, np.ndarray):
        return False
    return hasattr(a, "__cuda_array_interface__") or hasattr(a, "__cuda_ndarray__")


def check_array(op, name, a, ndim=None, dtype=np.float32):
    """Check that ``a`` is a C-contiguous array of ``dtype`` with ``ndim`` dimensions; return it.

    ``ndim`` may be an int or a tuple of allowed ranks. Device arrays are checked the same way.
    """
    # The common case first, in one test (the executor makes ~90 of these calls per training step)
    if (type(a) is np.ndarray and a.dtype == dtype and a.flags.c_contiguous and a.size
            and (ndim is None or a.ndim == ndim or (type(ndim) is tuple and a.ndim in ndim))):
        return a
    if not (isinstance(a, np.ndarray) or is_device_array(a)):
        raise TypeError(f"{op}: {name} must be a NumPy or CUDA array, got {type(a).__name__}")
    if np.dtype(a.dtype) != np.dtype(dtype):
        raise TypeError(f"{op}: {name} must be {np.dtype(dtype).name}, got {np.dtype(a.dtype).name} "
                        f"with shape {tuple(a.shape)}")
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if a.ndim not in allowed:
            want = " or ".join(str(d) for d in allowed)
            raise ValueError(f"{op}: {name} must have {want} dimensions, got shape {tuple(a.shape)}")
    if isinstance(a, np.ndarray):
        contiguous = a.flags.c_contiguous
    elif hasattr(a, "is_c_contiguous"):  # numba device arrays
        contiguous = a.is_c_contiguous()
    else:  # CuPy and other __cuda_array_interface__ objects
        contiguous = getattr(getattr(a, "flags", None), "c_contiguous", None)
        if contiguous is None:
            strides = a.__cuda_array_interface__.get("strides")
            contiguous = strides is None or tuple(strides) == _c_strides(a.shape, a.dtype)
    if not contiguous:
        raise ValueError(f"{op}: {name} must be C-contiguous (use np.ascontiguousarray), "
                         f"got shape {tuple(a.shape)} with strides {tuple(a.strides)}")
    if any(d == 0 for d in a.shape):
        raise ValueError(f"{op}: {name} must not be empty, got shape {tuple(a.shape)}")
    return a


def _c_strides(shape, dtype):
    strides, step = [], np.dtype(dtype).itemsize
    for d in reversed(tuple(shape)):
        strides.append(step)
        step *= d
    return tuple(reversed(strides))


def check_writable(op, name, a):
    """A buffer the kernel writes must be writable (Numba would fail with a typing error)."""
    if isinstance(a, np.ndarray) and not a.flags.writeable:
        raise ValueError(f"{op}: {name} is read-only (flags.writeable is False), shape {tuple(a.shape)}")
    return a


def check_shape(op, name, a, shape):
    """Check that ``a.shape == shape`` (after check_array)."""
    if tuple(a.shape) != tuple(shape):
        raise ValueError(f"{op}: {name} must have shape {tuple(shape)}, got {tuple(a.shape)}")
    return a


def check_out(op, name, out, shape, dtype=np.float32, like=None):
    """Validate a caller-provided output buffer, or allocate one (on the host, or like ``like``)."""
    if out is None:
        if like is not None and is_device_array(like):
            from numba import cuda
            return cuda.device_array(tuple(shape), dtype=dtype)
        return np.empty(tuple(shape), dtype=dtype)
    check_array(op, name, out, None, dtype)
    check_shape(op, name, out, shape)  # a wrong rank is reported with the whole expected shape
    check_writable(op, name, out)
    if like is not None and is_device_array(like) != is_device_array(out):
        raise TypeError(f"{op}: {name} must live where the inputs live "
                        f"({'device' if is_device_array(like) else 'host'})")
    return out


def as_int(op, name, value, minimum):
    """An integer setting >= ``minimum`` (bools and floats rejected)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{op}: {name} must be an int, got {value!r}")
    value = int(value)
    if value < minimum:
        raise ValueError(f"{op}: {name} must be >= {minimum}, got {value}")
    return value


def as_tuple(op, name, value, n, minimum):
    """An int or a sequence of ``n`` ints, each >= ``minimum``, as a tuple of ``n`` ints."""
    if isinstance(value, (tuple, list)):
        if len(value) != n:
            raise ValueError(f"{op}: {name} must be an int or {n} ints, got {value!r}")
        return tuple(as_int(op, name, v, minimum) for v in value)
    return (as_int(op, name, value, minimum),) * n


def resolve_padding(op, padding, kernel, dilation):
    """Padding per spatial axis as ((lo, hi), ...) pairs.

    ``padding``: an int, one int per axis, "valid" (0), "same" (total d*(k-1), the odd pixel at the
    high end as in TensorFlow, so stride 1 keeps the size) or "full" (d*(k-1) on each side).
    """
    n = len(kernel)
    if isinstance(padding, str):
        mode = padding.lower()
        pads = []
        for k, d in zip(kernel, dilation):
            span = d * (k - 1)
            if mode == "valid":
                pads.append((0, 0))
            elif mode == "same":
                pads.append((span // 2, span - span // 2))
            elif mode == "full":
                pads.append((span, span))
            else:
                raise ValueError(f"{op}: padding must be an int, {n} ints, 'valid', 'same' or 'full', "
                                 f"got {padding!r}")
        return tuple(pads)
    return tuple((p, p) for p in as_tuple(op, "padding", padding, n, 0))


def conv_output_size(in_size, kernel, stride=1, pad_lo=0, pad_hi=None, dilation=1):
    """floor((in + pad_lo + pad_hi - dilation*(kernel-1) - 1) / stride) + 1, which may be <= 0."""
    pad_hi = pad_lo if pad_hi is None else pad_hi
    return (in_size + pad_lo + pad_hi - dilation * (kernel - 1) - 1) // stride + 1


def output_shape(op, in_spatial, kernel, stride, pads, dilation, input_name="x"):
    """Output spatial sizes; ValueError naming the sizes when any would be empty."""
    out = []
    for axis, (i, k, s, (lo, hi), d) in enumerate(zip(in_spatial, kernel, stride, pads, dilation)):
        o = conv_output_size(i, k, s, lo, hi, d)
        if o < 1:
            raise ValueError(
                f"{op}: kernel {tuple(kernel)} (dilation {tuple(dilation)}) is larger than the padded "
                f"input: {input_name} spatial size {tuple(in_spatial)} with padding {tuple(pads)} gives "
                f"an empty output along axis {axis}")
        out.append(o)
    return tuple(out)
