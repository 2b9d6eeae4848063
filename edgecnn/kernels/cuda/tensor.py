"""Device twins of the few NumPy calls the graph executor makes on activations and gradients, so a
whole training step can stay on the device: copy (np.copyto), add (np.add, gradient accumulation
where a tensor fans out, the Add layer), fill, the channel slices of Concatenate (forward and
backward), and a finiteness check (one number comes back). One thread per element; no atomics.
"""
import math

import numpy as np
from numba import cuda

from ..._jit import cuda_jit
from . import _device, _launch, _reduce

_F0 = np.float32(0.0)


@cuda_jit
def copy_flat_cuda(src, dst):
    i = cuda.grid(1)
    if i < dst.shape[0]:
        dst[i] = src[i]


@cuda_jit
def add_flat_cuda(a, b, out):
    i = cuda.grid(1)
    if i < out.shape[0]:
        out[i] = a[i] + b[i]


@cuda_jit
def fill_flat_cuda(a, value):
    i = cuda.grid(1)
    if i < a.shape[0]:
        a[i] = value


@cuda_jit
def put_channels_cuda(src, dst, offset):
    """dst[n, offset + c, j] = src[n, c, j] for src (N, Cs, L), dst (N, Cd, L)."""
    N, Cs, L = src.shape
    i = cuda.grid(1)
    if i < N * Cs * L:
        n = i // (Cs * L)
        c = (i // L) % Cs
        j = i % L
        dst[n, offset + c, j] = src[n, c, j]


@cuda_jit
def take_channels_cuda(src, offset, dst):
    """dst[n, c, j] = src[n, offset + c, j] for src (N, Cs, L), dst (N, Cd, L)."""
    N, Cd, L = dst.shape
    i = cuda.grid(1)
    if i < N * Cd * L:
        n = i // (Cd * L)
        c = (i // L) % Cd
        j = i % L
        dst[n, c, j] = src[n, offset + c, j]


@cuda_jit
def times_zero_cuda(x, out):
    """out = x * 0: 0 for finite x, NaN for NaN or inf (so a sum tells whether all are finite)."""
    i = cuda.grid(1)
    if i < x.shape[0]:
        out[i] = x[i] * _F0


def _f(a):
    return _device.flat(_device.as_device(a))


def copy(src, dst):
    """np.copyto(dst, src) for same-shape C-contiguous device arrays; returns dst."""
    d = _f(dst)
    if not (src is dst):
        copy_flat_cuda[_launch.grid1d(d.shape[0])](_f(src), d)
    return dst


def add(a, b, out=None):
    """out = a + b (out may be a or b: gradient accumulation in place)."""
    a_ = _device.as_device(a)
    out = _device.out_or_empty(out, a_.shape)
    o = _f(out)
    add_flat_cuda[_launch.grid1d(o.shape[0])](_f(a_), _f(b), o)
    return out


def fill(a, value):
    f = _f(a)
    fill_flat_cuda[_launch.grid1d(f.shape[0])](f, np.float32(value))
    return a


def _3d(a):
    a = _device.as_device(a)
    return a.reshape(a.shape[0], a.shape[1], a.size // (a.shape[0] * a.shape[1]))


def concat_channels(xs, out):
    """out[:, c0:c0+C_i] = xs[i] along axis 1 (NC... arrays), as Concatenate(axis=1) forward."""
    o3 = _3d(out)
    off = 0
    for x in xs:
        x3 = _3d(x)
        put_channels_cuda[_launch.grid1d(x3.size)](x3, o3, off)
        off += x3.shape[1]
    return out


def split_channels(gy, gxs):
    """gxs[i] = gy[:, c0:c0+C_i] along axis 1, as Concatenate(axis=1) backward."""
    g3 = _3d(gy)
    off = 0
    for gx in gxs:
        d3 = _3d(gx)
        take_channels_cuda[_launch.grid1d(d3.size)](g3, off, d3)
        off += d3.shape[1]
    return gxs


def all_finite(a):
    """True when no element is NaN or inf (one float comes back to the host)."""
    f = _f(a)
    z = _device.scratch("all_finite", (f.shape[0],))
    times_zero_cuda[_launch.grid1d(f.shape[0])](f, z)
    total = _reduce.device_sum(z, _device.scratch("all_finite sum", (1,)))
    return not math.isnan(float(total.copy_to_host()[0]))


def ptx_cases():
    f = np.zeros(4, np.float32)
    a3 = np.zeros((2, 3, 4), np.float32)
    return [(copy_flat_cuda, (f, f)), (add_flat_cuda, (f, f, f)), (fill_flat_cuda, (f, np.float32(0))),
            (put_channels_cuda, (a3, a3, 1)), (take_channels_cuda, (a3, 1, a3)), (times_zero_cuda, (f, f))]
