"""Batch normalization over NCHW, per channel (PyTorch semantics).

Training: batch mean and biased variance per channel normalize x; running_mean / running_var are
updated in place with momentum, the variance unbiased (times M / (M - 1), M = N*H*W). Inference: the
running statistics normalize x. save_mean / save_invstd (C,) keep what the backward needs.

Kernels view x as (N, C, H*W). Statistics run one channel per prange task, summing each (n, c) plane
then the planes in order of n: deterministic, and two-level sums keep float32 accurate on big batches.
y and gx are then written in storage order (prange over samples), not channel by channel. No scratch
memory: nothing allocated per call scales with the batch.
"""
import math
import numbers

import numpy as np
from numba import prange

from .._jit import njit
from ._common import check_array, check_out, check_shape, check_writable, is_device_array

_F0 = np.float32(0.0)
_F1 = np.float32(1.0)


@njit(parallel=True)
def _channel_stats(x, eps, momentum, update, running_mean, running_var, save_mean, save_invstd):
    """Batch mean and invstd per channel (one channel per task; plane sums merged in order of n)."""
    N, C, L = x.shape
    M = N * L
    inv_m = _F1 / np.float32(M)
    unbias = np.float32(M) / np.float32(max(M - 1, 1))
    keep = _F1 - momentum
    for c in prange(C):
        s = _F0
        for n in range(N):
            ps = _F0
            for i in range(L):
                ps += x[n, c, i]
            s += ps
        mean = s * inv_m
        v = _F0
        for n in range(N):   # two-pass variance: no cancellation when |mean| >> std
            pv = _F0
            for i in range(L):
                d = x[n, c, i] - mean
                pv += d * d
            v += pv
        var = v * inv_m
        save_mean[c] = mean
        save_invstd[c] = _F1 / np.sqrt(var + eps)
        if update:
            running_mean[c] = keep * running_mean[c] + momentum * mean
            running_var[c] = keep * running_var[c] + momentum * var * unbias


@njit
def batchnorm2d_fwd_cpu(x, gamma, beta, eps, momentum, update, running_mean, running_var, y,
                        save_mean, save_invstd, relu=False):
    """Training forward with batch statistics; updates the running statistics when ``update``.
    ``relu`` fuses max(y, 0) into the write (one pass over y fewer)."""
    _channel_stats(x, eps, momentum, update, running_mean, running_var, save_mean, save_invstd)
    _normalize(x, save_mean, save_invstd, gamma, beta, relu, y)


@njit(parallel=True)
def _normalize(x, mean, invstd, gamma, beta, relu, y):
    """y = (x - mean) * gamma * invstd + beta per channel (then max(y, 0) when ``relu``). Sample-major:
    written channel by channel the output went to C*N scattered planes at once and took 2x a copy;
    in storage order it streams."""
    N, C, L = x.shape
    inplace = x.ctypes.data == y.ctypes.data
    for n in prange(N):
        for c in range(C):
            m = mean[c]
            a = gamma[c] * invstd[c]
            b = beta[c]
            if inplace and relu:
                for i in range(L):
                    y[n, c, i] = max((y[n, c, i] - m) * a + b, _F0)
            elif inplace:
                for i in range(L):
                    y[n, c, i] = (y[n, c, i] - m) * a + b
            elif relu:
                for i in range(L):
                    y[n, c, i] = max((x[n, c, i] - m) * a + b, _F0)
            else:
                for i in range(L):
                    y[n, c, i] = (x[n, c, i] - m) * a + b


@njit(parallel=True)
def batchnorm2d_infer_fwd_cpu(x, gamma, beta, eps, running_mean, running_var, y, save_mean, save_invstd):
    """Inference forward with the running statistics; one prange task per (n, c) plane."""
    N, C, L = x.shape
    for c in range(C):
        save_mean[c] = running_mean[c]
        save_invstd[c] = _F1 / np.sqrt(running_var[c] + eps)
    for p in prange(N * C):
        n = p // C
        c = p % C
        mean = save_mean[c]
        a = gamma[c] * save_invstd[c]
        b = beta[c]
        for i in range(L):
            y[n, c, i] = (x[n, c, i] - mean) * a + b


@njit(inline="always")
def bwd_coefficients(c, gamma, mean, invstd, gbeta, ggamma, inv_m):
    """Channel c's terms of gx = a * (g - mb - (x - mean) * mg): (mean, a, mb, mg)."""
    s = invstd[c]
    return mean[c], gamma[c] * s, gbeta[c] * inv_m, ggamma[c] * inv_m * s


@njit(parallel=True)
def batchnorm2d_bwd_input_cpu(gy, x, gamma, save_mean, save_invstd, gx, ggamma, gbeta, relu_y=None):
    """Training-mode backward: gbeta = sum gy, ggamma = sum gy * xhat,
    gx = gamma * invstd * (gy - gbeta / M - xhat * ggamma / M). gx may be gy.

    With ``relu_y`` (the output of a fused ReLU), gy is first masked by relu_y > 0 on the fly: the
    ReLU backward pass is folded into both passes here. Sums one channel per task (planes merged in
    order of n), then gx in storage order."""
    N, C, L = x.shape
    inv_m = _F1 / np.float32(N * L)
    masked = relu_y is not None
    for c in prange(C):
        mean = save_mean[c]
        sb = _F0
        sg = _F0
        for n in range(N):
            pb = _F0
            pg = _F0
            if masked:
                for i in range(L):
                    g = gy[n, c, i] if relu_y[n, c, i] > _F0 else _F0
                    pb += g
                    pg += g * (x[n, c, i] - mean)
            else:
                for i in range(L):
                    g = gy[n, c, i]
                    pb += g
                    pg += g * (x[n, c, i] - mean)
            sb += pb
            sg += pg
        gbeta[c] = sb
        ggamma[c] = sg * save_invstd[c]
    inplace = gx.ctypes.data == gy.ctypes.data   # one name for the buffer: LLVM's overlap check passes
    for n in prange(N):
        for c in range(C):
            mean, a, mb, mg = bwd_coefficients(c, gamma, save_mean, save_invstd, gbeta, ggamma, inv_m)
            if inplace and masked:
                for i in range(L):
                    g = gx[n, c, i]
                    g = g if relu_y[n, c, i] > _F0 else _F0
                    gx[n, c, i] = a * (g - mb - (x[n, c, i] - mean) * mg)
            elif inplace:
                for i in range(L):
                    gx[n, c, i] = a * (gx[n, c, i] - mb - (x[n, c, i] - mean) * mg)
            elif masked:
                for i in range(L):
                    g = gy[n, c, i]
                    g = g if relu_y[n, c, i] > _F0 else _F0
                    gx[n, c, i] = a * (g - mb - (x[n, c, i] - mean) * mg)
            else:
                for i in range(L):
                    gx[n, c, i] = a * (gy[n, c, i] - mb - (x[n, c, i] - mean) * mg)


def _on_device(op, *arrays):
    """True when every array given is a CUDA device array (dispatch to edgecnn.kernels.cuda), False when
    all are NumPy arrays; TypeError when they are mixed."""
    dev = [is_device_array(a) for a in arrays if a is not None]
    if any(dev) and not all(dev):
        raise TypeError(f"{op}: the arrays must all be NumPy arrays or all CUDA device arrays")
    return bool(dev) and all(dev)


def _real(op, name, v, lo, lo_open, hi=None):
    ok = not isinstance(v, bool) and isinstance(v, numbers.Real) and math.isfinite(v)
    ok = ok and (v > lo if lo_open else v >= lo) and (hi is None or v <= hi)
    if not ok:
        bound = f"{'>' if lo_open else '>='} {lo}" + ("" if hi is None else f" and <= {hi}")
        raise ValueError(f"{op}: {name} must be a finite number {bound}, got {v!r}")
    return np.float32(v)


def _channel_vec(op, name, a, c, x_shape):
    check_array(op, name, a, 1)
    if tuple(a.shape) != (c,):
        raise ValueError(f"{op}: {name} must have shape ({c},) for x of shape {tuple(x_shape)}, "
                         f"got {tuple(a.shape)}")
    return a


def batchnorm2d_forward(x, gamma, beta, running_mean, running_var, training=True, momentum=0.1, eps=1e-5,
                        out=None, save_mean=None, save_invstd=None, relu=False):
    """(y, save_mean, save_invstd). Training normalizes with batch statistics and updates the running
    ones in place (either may be None to skip the update); inference uses running_mean / running_var.
    ``relu=True`` returns max(y, 0) (fused into the write on the CPU in training)."""
    op = "batchnorm2d_forward"
    check_array(op, "x", x, 4)
    n, c, h, w = x.shape
    _channel_vec(op, "gamma", gamma, c, x.shape)
    _channel_vec(op, "beta", beta, c, x.shape)
    for name, a in (("running_mean", running_mean), ("running_var", running_var)):
        if a is None:
            if not training:
                raise TypeError(f"{op}: {name} is required in inference mode (x shape {tuple(x.shape)})")
        else:
            _channel_vec(op, name, a, c, x.shape)
            if training:  # updated in place
                check_writable(op, name, a)
    if (running_mean is None) != (running_var is None):
        raise TypeError(f"{op}: running_mean and running_var must both be arrays or both be None")
    momentum = _real(op, "momentum", momentum, 0.0, False, 1.0)
    eps = _real(op, "eps", eps, 0.0, True)
    if training and n * h * w < 2:
        raise ValueError(f"{op}: training needs more than 1 value per channel to estimate a variance, "
                         f"got x of shape {tuple(x.shape)}")
    dev = _on_device(op, x, gamma, beta, running_mean, running_var, out, save_mean, save_invstd)
    out = check_out(op, "out", out, x.shape, like=x)
    save_mean = check_out(op, "save_mean", save_mean, (c,), like=x)
    save_invstd = check_out(op, "save_invstd", save_invstd, (c,), like=x)
    if not isinstance(relu, (bool, np.bool_)):
        raise TypeError(f"{op}: relu must be a bool, got {relu!r}")
    if dev:
        from .cuda import batchnorm as _cu
        from .activations import relu_forward
        _cu.batchnorm2d_forward(x, gamma, beta, running_mean, running_var, training, momentum, eps,
                                out, save_mean, save_invstd)
        if relu:
            relu_forward(out, out=out)
        return out, save_mean, save_invstd
    x3, y3 = x.reshape(n, c, h * w), out.reshape(n, c, h * w)
    if training:
        update = running_mean is not None
        rm = running_mean if update else save_mean   # unused placeholders when not updating
        rv = running_var if update else save_invstd
        batchnorm2d_fwd_cpu(x3, gamma, beta, eps, momentum, update, rm, rv, y3, save_mean, save_invstd,
                            bool(relu))
    else:
        batchnorm2d_infer_fwd_cpu(x3, gamma, beta, eps, running_mean, running_var, y3, save_mean, save_invstd)
        if relu:
            from .activations import relu_forward
            relu_forward(out, out=out)
    return out, save_mean, save_invstd


def batchnorm2d_backward(gy, x, gamma, save_mean, save_invstd, gx=None, ggamma=None, gbeta=None,
                         relu_y=None):
    """(gx, ggamma, gbeta) of the training-mode forward; ggamma / gbeta overwritten. ``gx=gy`` works.
    ``relu_y``: the output of a forward with relu=True; gy is then taken as dL/d(max(y, 0)) and
    masked by relu_y > 0 first (fused into both passes on the CPU; gy itself is not changed unless
    it is gx)."""
    op = "batchnorm2d_backward"
    check_array(op, "x", x, 4)
    check_array(op, "gy", gy, 4)
    check_shape(op, "gy", gy, x.shape)
    n, c, h, w = x.shape
    for name, a in (("gamma", gamma), ("save_mean", save_mean), ("save_invstd", save_invstd)):
        _channel_vec(op, name, a, c, x.shape)
    dev = _on_device(op, gy, x, gamma, save_mean, save_invstd, gx, ggamma, gbeta)
    gx = check_out(op, "gx", gx, x.shape, like=x)
    ggamma = check_out(op, "ggamma", ggamma, (c,), like=x)
    gbeta = check_out(op, "gbeta", gbeta, (c,), like=x)
    if relu_y is not None:
        check_array(op, "relu_y", relu_y, 4)
        check_shape(op, "relu_y", relu_y, x.shape)
        if _on_device(op, x, relu_y) != dev:
            raise TypeError(f"{op}: relu_y must live where x does (host or device)")
    if dev:
        from .cuda import batchnorm as _cu
        if relu_y is not None:  # mask into gx, then the backward in place on it
            from .activations import relu_backward
            relu_backward(gy, relu_y, relu_y, gx=gx)
            gy = gx
        return _cu.batchnorm2d_backward(gy, x, gamma, save_mean, save_invstd, gx, ggamma, gbeta)
    y3 = None if relu_y is None else relu_y.reshape(n, c, h * w)
    batchnorm2d_bwd_input_cpu(gy.reshape(n, c, h * w), x.reshape(n, c, h * w), gamma, save_mean, save_invstd,
                              gx.reshape(n, c, h * w), ggamma, gbeta, y3)
    return gx, ggamma, gbeta
