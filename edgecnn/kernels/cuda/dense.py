"""CUDA twins of edgecnn.kernels.dense: tiled shared-memory GEMMs, one thread per output element.

A block is TILE x TILE threads (``_launch.TILE``) computing a TILE x TILE tile of the output; it walks
the reduced axis in TILE-wide steps, staging one tile of each operand in shared memory (coalesced
loads along the contiguous axis; rows padded to MAX_TILE + 1 so column reads hit distinct banks).
Each thread sums its own output over the reduced axis in index order: no atomics, deterministic.

* forward  y[n, o]  = b[o] + sum_i x[n, i] w[o, i]     rows n,  cols o, reduce i
* gx       gx[n, i] = sum_o gy[n, o] w[o, i]          rows n,  cols i, reduce o
* gw       gw[o, i] = sum_n gy[n, o] x[n, i]          rows o,  cols i, reduce n
* gb       gb[o]    = sum_n gy[n, o]                  one thread per o, n in order
"""
import numpy as np
from numba import cuda

from ..._jit import cuda_jit
from . import _device, _launch

_F0 = np.float32(0.0)
_T = _launch.MAX_TILE
_T1 = _T + 1  # padded row: column reads hit distinct banks (globals are compile-time constants)


@cuda_jit
def dense_fwd_cuda(x, w, b, has_bias, y):
    As = cuda.shared.array((_T, _T1), np.float32)   # As[r, k] = x[row0 + r, k0 + k]
    Bs = cuda.shared.array((_T, _T1), np.float32)   # Bs[c, k] = w[col0 + c, k0 + k]
    N, K = x.shape
    O = w.shape[0]
    t = cuda.blockDim.x
    tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
    row0, col0 = cuda.blockIdx.y * t, cuda.blockIdx.x * t
    acc = _F0
    for k0 in range(0, K, t):
        r = row0 + ty
        As[ty, tx] = x[r, k0 + tx] if r < N and k0 + tx < K else _F0
        c = col0 + ty
        Bs[ty, tx] = w[c, k0 + tx] if c < O and k0 + tx < K else _F0
        cuda.syncthreads()
        for k in range(K - k0 if K - k0 < t else t):
            acc += As[ty, k] * Bs[tx, k]
        cuda.syncthreads()
    r, c = row0 + ty, col0 + tx
    if r < N and c < O:
        y[r, c] = acc + b[c] if has_bias else acc


@cuda_jit
def dense_bwd_input_cuda(gy, w, gx):
    As = cuda.shared.array((_T, _T1), np.float32)   # As[r, k] = gy[row0 + r, k0 + k]
    Bs = cuda.shared.array((_T, _T1), np.float32)   # Bs[k, c] = w[k0 + k, col0 + c]
    N, O = gy.shape
    I = w.shape[1]
    t = cuda.blockDim.x
    tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
    row0, col0 = cuda.blockIdx.y * t, cuda.blockIdx.x * t
    acc = _F0
    for k0 in range(0, O, t):
        r = row0 + ty
        As[ty, tx] = gy[r, k0 + tx] if r < N and k0 + tx < O else _F0
        c = col0 + tx
        Bs[ty, tx] = w[k0 + ty, c] if k0 + ty < O and c < I else _F0
        cuda.syncthreads()
        for k in range(O - k0 if O - k0 < t else t):
            acc += As[ty, k] * Bs[k, tx]
        cuda.syncthreads()
    r, c = row0 + ty, col0 + tx
    if r < N and c < I:
        gx[r, c] = acc


@cuda_jit
def dense_bwd_weight_cuda(gy, x, gw):
    As = cuda.shared.array((_T, _T1), np.float32)   # As[k, r] = gy[k0 + k, row0 + r]
    Bs = cuda.shared.array((_T, _T1), np.float32)   # Bs[k, c] = x[k0 + k, col0 + c]
    N, O = gy.shape
    I = x.shape[1]
    t = cuda.blockDim.x
    tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
    row0, col0 = cuda.blockIdx.y * t, cuda.blockIdx.x * t
    acc = _F0
    for k0 in range(0, N, t):
        n = k0 + ty
        As[ty, tx] = gy[n, row0 + tx] if n < N and row0 + tx < O else _F0
        Bs[ty, tx] = x[n, col0 + tx] if n < N and col0 + tx < I else _F0
        cuda.syncthreads()
        for k in range(N - k0 if N - k0 < t else t):
            acc += As[k, ty] * Bs[k, tx]
        cuda.syncthreads()
    r, c = row0 + ty, col0 + tx
    if r < O and c < I:
        gw[r, c] = acc


@cuda_jit
def dense_bwd_bias_cuda(gy, gb):
    o = cuda.grid(1)
    if o < gy.shape[1]:
        acc = _F0
        for n in range(gy.shape[0]):
            acc += gy[n, o]
        gb[o] = acc


# ------------------------------------------------------------------------------------------ entry points
def dense_forward(x, w, b=None, out=None):
    x, w, b = _device.as_device(x), _device.as_device(w), _device.as_device(b)
    n, o = x.shape[0], w.shape[0]
    out = _device.out_or_empty(out, (n, o))
    grid, block = _launch.grid_tiles(n, o)
    dense_fwd_cuda[grid, block](x, w, _device.dummy() if b is None else b, b is not None, out)
    return out


def dense_backward(gy, x, w, need_input_grad=True, need_bias_grad=True, gx=None, gw=None, gb=None):
    gy, x, w = _device.as_device(gy), _device.as_device(x), _device.as_device(w)
    n, o = gy.shape
    i = x.shape[1]
    if need_input_grad:
        gx = _device.out_or_empty(gx, (n, i))
        grid, block = _launch.grid_tiles(n, i)
        dense_bwd_input_cuda[grid, block](gy, w, gx)
    else:
        gx = None
    gw = _device.out_or_empty(gw, (o, i))
    grid, block = _launch.grid_tiles(o, i)
    dense_bwd_weight_cuda[grid, block](gy, x, gw)
    if need_bias_grad:
        gb = _device.out_or_empty(gb, (o,))
        dense_bwd_bias_cuda[_launch.grid1d(o)](gy, gb)
    else:
        gb = None
    return gx, gw, gb


def ptx_cases():
    a = np.zeros((2, 3), np.float32)
    b1 = np.zeros(3, np.float32)
    return [(dense_fwd_cuda, (a, a, b1, True, a)), (dense_bwd_input_cuda, (a, a, a)),
            (dense_bwd_weight_cuda, (a, a, a)), (dense_bwd_bias_cuda, (a, b1))]
