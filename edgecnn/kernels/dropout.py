"""Dropout with inverted scaling: y = x * mask / (1 - rate), mask uint8 (1 keeps, 0 drops).

The mask is counter-based: element i is kept when the top 24 bits of splitmix64(key(seed) + i * golden)
are >= round(rate * 2**24). Every element depends only on (seed, i), so the mask is the same for any
thread count, chunking or call path (serial for small arrays, prange over chunks for large ones).
"""
import math
import numbers

import numpy as np
from numba import prange

from .._jit import njit
from ._common import check_array, check_out, check_shape, is_device_array

_F0 = np.float32(0.0)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31, _S40 = np.uint64(30), np.uint64(27), np.uint64(31), np.uint64(40)
CHUNK = 1 << 15
_SERIAL_BELOW = 2 * CHUNK


@njit(inline="always")
def _mix(z):
    """splitmix64's finalizer (all uint64: mixing in a signed int would promote to float64)."""
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    return z ^ (z >> _S31)


# Loads come before the selects and in-place calls (out=x, gx=gy) get loops naming the buffer once: a
# conditional load (``gy[i] * s if keep else 0``) in LLVM's scalar fallback loop, which two names for one
# buffer select, is a branch mispredicted on half of the random mask (2.4M elements: 4.9 ms, 0.3 ms now).
@njit(inline="always")
def _same(a, b):
    return a.ctypes.data == b.ctypes.data


@njit
def _dropout_fwd_range(x, key, threshold, scale, y, mask, lo, hi):
    y_ = y[lo:hi]
    mask_ = mask[lo:hi]
    if _same(x, y):
        for i in range(y_.size):
            r = _mix(key + np.uint64(lo + i) * _GOLDEN) >> _S40   # the global index
            keep = r >= threshold
            v = y_[i] * scale
            mask_[i] = np.uint8(1) if keep else np.uint8(0)
            y_[i] = v if keep else _F0
        return
    x_ = x[lo:hi]
    for i in range(y_.size):
        r = _mix(key + np.uint64(lo + i) * _GOLDEN) >> _S40
        keep = r >= threshold
        v = x_[i] * scale
        mask_[i] = np.uint8(1) if keep else np.uint8(0)
        y_[i] = v if keep else _F0


@njit
def _dropout_bwd_range(gy, mask, scale, gx, lo, hi):
    mask_ = mask[lo:hi]
    gx_ = gx[lo:hi]
    if _same(gy, gx):
        for i in range(gx_.size):
            v = gx_[i] * scale
            gx_[i] = v if mask_[i] != 0 else _F0
        return
    gy_ = gy[lo:hi]
    for i in range(gx_.size):
        v = gy_[i] * scale
        gx_[i] = v if mask_[i] != 0 else _F0


@njit(parallel=True)
def dropout_fwd_cpu(x, key, threshold, scale, y, mask):
    n = x.size
    for c in prange((n + CHUNK - 1) // CHUNK):
        _dropout_fwd_range(x, key, threshold, scale, y, mask, c * CHUNK, min(n, (c + 1) * CHUNK))


@njit(parallel=True)
def dropout_bwd_input_cpu(gy, mask, scale, gx):
    n = gy.size
    for c in prange((n + CHUNK - 1) // CHUNK):
        _dropout_bwd_range(gy, mask, scale, gx, c * CHUNK, min(n, (c + 1) * CHUNK))


def mask_key(seed):
    """The uint64 stream key for ``seed`` (shared with the reference test)."""
    return int(_mix_py((int(seed) + 0x9E3779B97F4A7C15) & (2**64 - 1)))


def _mix_py(z):
    m = 2**64 - 1
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & m
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & m
    return z ^ (z >> 31)


def _rate(op, rate):
    if isinstance(rate, bool) or not isinstance(rate, numbers.Real) or not math.isfinite(rate) \
            or not 0.0 <= rate < 1.0:
        raise ValueError(f"{op}: rate must be a number in [0, 1), got {rate!r}")
    return float(rate)


def _on_device(op, *arrays):
    """True when every array given is a CUDA device array (dispatch to edgecnn.kernels.cuda), False when
    all are NumPy arrays; TypeError when they are mixed."""
    dev = [is_device_array(a) for a in arrays if a is not None]
    if any(dev) and not all(dev):
        raise TypeError(f"{op}: the arrays must all be NumPy arrays or all CUDA device arrays")
    return bool(dev) and all(dev)


def dropout_forward(x, rate, seed, training=True, out=None, mask=None):
    """(y, mask): zero each element with probability ``rate`` and scale the rest by 1 / (1 - rate).

    Deterministic given ``seed`` (an int in [0, 2**64)). training=False or rate=0 copies x and sets the
    mask to all ones. ``out=x`` works.
    """
    op = "dropout_forward"
    check_array(op, "x", x)
    rate = _rate(op, rate)
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not 0 <= seed < 2**64:
        raise ValueError(f"{op}: seed must be an int in [0, 2**64), got {seed!r}")
    dev = _on_device(op, x, out, mask)
    out = check_out(op, "out", out, x.shape, like=x)
    mask = check_out(op, "mask", mask, x.shape, dtype=np.uint8, like=x)
    if dev:
        from .cuda import dropout as _cu
        return _cu.dropout_forward(x, rate, seed, training, out, mask)
    if not training or rate == 0.0:
        if out is not x:
            np.copyto(out, x)
        mask.fill(1)
        return out, mask
    threshold = np.uint64(min(round(rate * 2**24), 2**24))
    scale = np.float32(1.0 / (1.0 - rate))
    key = np.uint64(mask_key(seed))
    xf, yf, mf = x.reshape(-1), out.reshape(-1), mask.reshape(-1)
    if xf.size < _SERIAL_BELOW:
        _dropout_fwd_range(xf, key, threshold, scale, yf, mf, 0, xf.size)
    else:
        dropout_fwd_cpu(xf, key, threshold, scale, yf, mf)
    return out, mask


def dropout_backward(gy, mask, rate, gx=None):
    """gx = gy * mask / (1 - rate); ``gx=gy`` works."""
    op = "dropout_backward"
    check_array(op, "gy", gy)
    check_array(op, "mask", mask, dtype=np.uint8)
    check_shape(op, "mask", mask, gy.shape)
    rate = _rate(op, rate)
    dev = _on_device(op, gy, mask, gx)
    gx = check_out(op, "gx", gx, gy.shape, like=gy)
    if dev:
        from .cuda import dropout as _cu
        return _cu.dropout_backward(gy, mask, rate, gx)
    scale = np.float32(1.0 / (1.0 - rate))
    gf, mf, xf = gy.reshape(-1), mask.reshape(-1), gx.reshape(-1)
    if gf.size < _SERIAL_BELOW:
        _dropout_bwd_range(gf, mf, scale, xf, 0, gf.size)
    else:
        dropout_bwd_input_cpu(gf, mf, scale, xf)
    return gx
