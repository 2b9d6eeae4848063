"""CUDA twins of edgecnn.kernels.activations: one thread per element (softmax: one thread per row).

Entry points take already-validated device arrays and return the outputs, like the CPU host entry
points minus validation. Elementwise kernels see arrays flattened to 1-D, so any shape works, and
in-place use (``out=x``, ``gx=gy``) is safe: each thread reads its element before writing it.
Backward passes read what the CPU ones read: relu / leaky_relu use x, sigmoid / tanh / softmax use y
(the other may be None).
"""
import math

import numpy as np
from numba import cuda

from ..._jit import cuda_jit
from . import _device, _launch

_F0 = np.float32(0.0)
_F1 = np.float32(1.0)


# ------------------------------------------------------------------------------------------ kernels
@cuda_jit
def relu_fwd_cuda(x, y):
    i = cuda.grid(1)
    if i < x.shape[0]:
        v = x[i]
        y[i] = v if v > _F0 else _F0


@cuda_jit
def relu_bwd_cuda(gy, x, gx):
    i = cuda.grid(1)
    if i < gy.shape[0]:
        gx[i] = gy[i] if x[i] > _F0 else _F0


@cuda_jit
def leaky_relu_fwd_cuda(x, alpha, y):
    i = cuda.grid(1)
    if i < x.shape[0]:
        v = x[i]
        y[i] = v if v > _F0 else v * alpha


@cuda_jit
def leaky_relu_bwd_cuda(gy, x, alpha, gx):
    i = cuda.grid(1)
    if i < gy.shape[0]:
        g = gy[i]
        gx[i] = g if x[i] > _F0 else g * alpha


@cuda_jit
def sigmoid_fwd_cuda(x, y):
    i = cuda.grid(1)
    if i < x.shape[0]:
        v = x[i]
        # exp of -|x| only: never overflows (the CPU kernel's formula)
        z = math.exp(-abs(v))
        r = _F1 / (_F1 + z)
        y[i] = r if v >= _F0 else z * r


@cuda_jit
def sigmoid_bwd_cuda(gy, y, gx):
    i = cuda.grid(1)
    if i < gy.shape[0]:
        s = y[i]
        gx[i] = gy[i] * s * (_F1 - s)


@cuda_jit
def tanh_fwd_cuda(x, y):
    i = cuda.grid(1)
    if i < x.shape[0]:
        y[i] = math.tanh(x[i])


@cuda_jit
def tanh_bwd_cuda(gy, y, gx):
    i = cuda.grid(1)
    if i < gy.shape[0]:
        t = y[i]
        gx[i] = gy[i] * (_F1 - t * t)


@cuda_jit
def copy_cuda(x, y):
    i = cuda.grid(1)
    if i < x.shape[0]:
        y[i] = x[i]


@cuda_jit
def softmax_fwd_cuda(x, y, log):
    """One thread per row of (N, K): max, sum of exp(x - max), then the outputs."""
    n = cuda.grid(1)
    if n < x.shape[0]:
        K = x.shape[1]
        m = x[n, 0]
        for k in range(1, K):
            if x[n, k] > m:
                m = x[n, k]
        s = _F0
        for k in range(K):
            s += math.exp(x[n, k] - m)
        if log:
            ls = math.log(s)
            for k in range(K):
                y[n, k] = (x[n, k] - m) - ls  # not x - (m + ls): m + ls rounds away ls when |m| is 1e4
        else:
            inv = _F1 / s
            for k in range(K):
                y[n, k] = math.exp(x[n, k] - m) * inv


@cuda_jit
def softmax_bwd_cuda(gy, y, gx, log):
    """softmax: gx = y * (gy - sum(gy * y)); log_softmax: gx = gy - exp(y) * sum(gy)."""
    n = cuda.grid(1)
    if n < gy.shape[0]:
        K = gy.shape[1]
        s = _F0
        if log:
            for k in range(K):
                s += gy[n, k]
            for k in range(K):
                gx[n, k] = gy[n, k] - math.exp(y[n, k]) * s
        else:
            for k in range(K):
                s += gy[n, k] * y[n, k]
            for k in range(K):
                gx[n, k] = y[n, k] * (gy[n, k] - s)


# ------------------------------------------------------------------------------------------ entry points
def _unary(kernel, x, out, *extra):
    x = _device.as_device(x)
    out = _device.out_or_empty(out, x.shape)
    xf, of = _device.flat(x), _device.flat(out)
    kernel[_launch.grid1d(xf.shape[0])](xf, *extra, of)
    return out


def _backward(kernel, gy, a, gx, *extra):
    gy, a = _device.as_device(gy), _device.as_device(a)
    gx = _device.out_or_empty(gx, gy.shape)
    g, af, gf = _device.flat(gy), _device.flat(a), _device.flat(gx)
    kernel[_launch.grid1d(g.shape[0])](g, af, *extra, gf)
    return gx


def relu_forward(x, out=None):
    return _unary(relu_fwd_cuda, x, out)


def relu_backward(gy, x, y, gx=None):
    return _backward(relu_bwd_cuda, gy, x, gx)


def leaky_relu_forward(x, alpha=0.01, out=None):
    return _unary(leaky_relu_fwd_cuda, x, out, np.float32(alpha))


def leaky_relu_backward(gy, x, y, gx=None, alpha=0.01):
    return _backward(leaky_relu_bwd_cuda, gy, x, gx, np.float32(alpha))


def sigmoid_forward(x, out=None):
    return _unary(sigmoid_fwd_cuda, x, out)


def sigmoid_backward(gy, x, y, gx=None):
    return _backward(sigmoid_bwd_cuda, gy, y, gx)


def tanh_forward(x, out=None):
    return _unary(tanh_fwd_cuda, x, out)


def tanh_backward(gy, x, y, gx=None):
    return _backward(tanh_bwd_cuda, gy, y, gx)


def identity_forward(x, out=None):
    x = _device.as_device(x)
    if out is not None and out is x:
        return out
    return _unary(copy_cuda, x, out)


def identity_backward(gy, x, y, gx=None):
    gy = _device.as_device(gy)
    if gx is not None and gx is gy:
        return gx
    return _unary(copy_cuda, gy, gx)


def _softmax(x, out, log):
    x = _device.as_device(x)
    out = _device.out_or_empty(out, x.shape)
    softmax_fwd_cuda[_launch.grid1d(x.shape[0])](x, out, log)
    return out


def _softmax_bwd(gy, y, gx, log):
    gy, y = _device.as_device(gy), _device.as_device(y)
    gx = _device.out_or_empty(gx, gy.shape)
    softmax_bwd_cuda[_launch.grid1d(gy.shape[0])](gy, y, gx, log)
    return gx


def softmax_forward(x, out=None):
    return _softmax(x, out, False)


def log_softmax_forward(x, out=None):
    return _softmax(x, out, True)


def softmax_backward(gy, x, y, gx=None):
    return _softmax_bwd(gy, y, gx, False)


def log_softmax_backward(gy, x, y, gx=None):
    return _softmax_bwd(gy, y, gx, True)


# kernel name -> example launch arguments, for the compile_ptx check over every kernel
def ptx_cases():
    f1 = np.zeros(4, np.float32)
    f2 = np.zeros((2, 3), np.float32)
    a = np.float32(0.1)
    return [
        (relu_fwd_cuda, (f1, f1)), (relu_bwd_cuda, (f1, f1, f1)),
        (leaky_relu_fwd_cuda, (f1, a, f1)), (leaky_relu_bwd_cuda, (f1, f1, a, f1)),
        (sigmoid_fwd_cuda, (f1, f1)), (sigmoid_bwd_cuda, (f1, f1, f1)),
        (tanh_fwd_cuda, (f1, f1)), (tanh_bwd_cuda, (f1, f1, f1)), (copy_cuda, (f1, f1)),
        (softmax_fwd_cuda, (f2, f2, True)), (softmax_bwd_cuda, (f2, f2, f2, True)),
    ]
