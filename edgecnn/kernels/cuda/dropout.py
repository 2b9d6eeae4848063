"""CUDA twins of edgecnn.kernels.dropout: one thread per element, the CPU kernel's counter-based mask.

Element i is kept when the top 24 bits of splitmix64(key(seed) + i * golden) are >= round(rate * 2**24),
exactly as on the CPU (``mask_key`` is the CPU module's), so a seed gives the same mask on either
device and for any launch configuration. All hash arithmetic is uint64.
"""
import numpy as np
from numba import cuda

from ..._jit import cuda_jit
from ..dropout import mask_key
from . import _device, _launch

_F0 = np.float32(0.0)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31, _S40 = np.uint64(30), np.uint64(27), np.uint64(31), np.uint64(40)


@cuda_jit
def dropout_fwd_cuda(x, key, threshold, scale, y, mask):
    i = cuda.grid(1)
    if i < x.shape[0]:
        z = key + np.uint64(i) * _GOLDEN
        z = (z ^ (z >> _S30)) * _M1
        z = (z ^ (z >> _S27)) * _M2
        z = z ^ (z >> _S31)
        if (z >> _S40) >= threshold:
            mask[i] = np.uint8(1)
            y[i] = x[i] * scale
        else:
            mask[i] = np.uint8(0)
            y[i] = _F0


@cuda_jit
def dropout_identity_cuda(x, y, mask):
    """Inference or rate 0: y = x (skipped when in place), mask = 1."""
    i = cuda.grid(1)
    if i < x.shape[0]:
        y[i] = x[i]
        mask[i] = np.uint8(1)


@cuda_jit
def dropout_bwd_cuda(gy, mask, scale, gx):
    i = cuda.grid(1)
    if i < gy.shape[0]:
        gx[i] = gy[i] * scale if mask[i] != 0 else _F0


def dropout_forward(x, rate, seed, training=True, out=None, mask=None):
    x = _device.as_device(x)
    out = _device.out_or_empty(out, x.shape)
    mask = _device.out_or_empty(mask, x.shape, np.uint8)
    xf, yf, mf = _device.flat(x), _device.flat(out), _device.flat(mask)
    grid = _launch.grid1d(xf.shape[0])
    if not training or rate == 0.0:
        dropout_identity_cuda[grid](xf, yf, mf)
        return out, mask
    threshold = np.uint64(min(round(rate * 2**24), 2**24))
    scale = np.float32(1.0 / (1.0 - rate))
    dropout_fwd_cuda[grid](xf, np.uint64(mask_key(seed)), threshold, scale, yf, mf)
    return out, mask


def dropout_backward(gy, mask, rate, gx=None):
    gy, mask = _device.as_device(gy), _device.as_device(mask)
    gx = _device.out_or_empty(gx, gy.shape)
    gf = _device.flat(gy)
    dropout_bwd_cuda[_launch.grid1d(gf.shape[0])](gf, _device.flat(mask), np.float32(1.0 / (1.0 - rate)),
                                                  _device.flat(gx))
    return gx


def ptx_cases():
    f = np.zeros(4, np.float32)
    m = np.zeros(4, np.uint8)
    u = np.uint64(3)
    return [(dropout_fwd_cuda, (f, u, u, np.float32(2), f, m)), (dropout_identity_cuda, (f, f, m)),
            (dropout_bwd_cuda, (f, m, np.float32(2), f))]
