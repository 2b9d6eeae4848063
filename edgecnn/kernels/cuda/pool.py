"""CUDA twins of edgecnn.kernels.pool: gather style, one thread per output element.

Forward: one thread per (plane, oh, ow) of the output, planes = N*C. Backward: one thread per input
cell (plane, h, w) visits the few windows that cover it (oh in [ceil((h+ph-kh+1)/sh), (h+ph)//sh])
in raster order and sums their contributions: overlapping windows accumulate without atomics, in the
same order as the CPU kernels, so results match them exactly. Settings arrive resolved: pairs
k=(kh, kw), s=(sh, sw), p=(ph, pw), as the CPU host entry points compute them.
"""
import math

import numpy as np
from numba import cuda

from ..._jit import cuda_jit
from . import _device, _launch

_F0 = np.float32(0.0)
_F1 = np.float32(1.0)


@cuda_jit(device=True)
def _window(o, s, p, k, n):
    """[start, stop) of window o clipped to [0, n)."""
    a = o * s - p
    return (a if a > 0 else 0), (a + k if a + k < n else n)


@cuda_jit(device=True)
def _covering(i, s, p, k, n_out):
    """[first, stop) of the windows along one axis that contain input index i."""
    lo = i + p - k + 1
    first = 0 if lo <= 0 else (lo + s - 1) // s
    stop = (i + p) // s + 1
    if stop > n_out:
        stop = n_out
    return first, stop


@cuda_jit
def max_pool2d_fwd_cuda(x, kh, kw, sh, sw, ph, pw, y, argmax):
    """x (P, H, W) -> y, argmax (P, OH, OW): first maximum in raster order; a NaN wins (propagates)."""
    P, H, W = x.shape
    OH, OW = y.shape[1], y.shape[2]
    i = cuda.grid(1)
    if i < P * OH * OW:
        p = i // (OH * OW)
        oh = (i // OW) % OH
        ow = i % OW
        hs, he = _window(oh, sh, ph, kh, H)
        ws, we = _window(ow, sw, pw, kw, W)
        best = x[p, hs, ws]
        bi = hs * W + ws
        for h in range(hs, he):
            for w in range(ws, we):
                v = x[p, h, w]
                if v > best or (v != v and best == best):
                    best = v
                    bi = h * W + w
        y[p, oh, ow] = best
        argmax[p, oh, ow] = bi


@cuda_jit
def max_pool2d_bwd_input_cuda(gy, argmax, kh, kw, sh, sw, ph, pw, gx):
    """gx[p, h, w] = sum of gy over the windows covering (h, w) whose argmax names (h, w)."""
    P, H, W = gx.shape
    OH, OW = gy.shape[1], gy.shape[2]
    i = cuda.grid(1)
    if i < P * H * W:
        p = i // (H * W)
        h = (i // W) % H
        w = i % W
        me = h * W + w
        oh0, oh1 = _covering(h, sh, ph, kh, OH)
        ow0, ow1 = _covering(w, sw, pw, kw, OW)
        acc = _F0
        for oh in range(oh0, oh1):
            for ow in range(ow0, ow1):
                if argmax[p, oh, ow] == me:
                    acc += gy[p, oh, ow]
        gx[p, h, w] = acc


@cuda_jit
def max_pool2d_bwd_plane_cuda(gy, argmax, gx):
    """gy, argmax (P, L), gx (P, HW): one thread per plane, scatter in raster order (no races: the
    plane is the thread's own)."""
    P, HW = gx.shape
    p = cuda.grid(1)
    if p < P:
        for i in range(HW):
            gx[p, i] = _F0
        for j in range(gy.shape[1]):
            a = argmax[p, j]
            if a >= 0 and a < HW:
                gx[p, a] += gy[p, j]


@cuda_jit
def avg_pool2d_fwd_cuda(x, kh, kw, sh, sw, ph, pw, count_include_pad, y):
    P, H, W = x.shape
    OH, OW = y.shape[1], y.shape[2]
    i = cuda.grid(1)
    if i < P * OH * OW:
        p = i // (OH * OW)
        oh = (i // OW) % OH
        ow = i % OW
        hs, he = _window(oh, sh, ph, kh, H)
        ws, we = _window(ow, sw, pw, kw, W)
        s = _F0
        for h in range(hs, he):
            for w in range(ws, we):
                s += x[p, h, w]
        if count_include_pad:
            y[p, oh, ow] = s * (_F1 / np.float32(kh * kw))
        else:
            y[p, oh, ow] = s / np.float32((he - hs) * (we - ws))


@cuda_jit
def avg_pool2d_bwd_input_cuda(gy, kh, kw, sh, sw, ph, pw, count_include_pad, gx):
    P, H, W = gx.shape
    OH, OW = gy.shape[1], gy.shape[2]
    i = cuda.grid(1)
    if i < P * H * W:
        p = i // (H * W)
        h = (i // W) % H
        w = i % W
        full = _F1 / np.float32(kh * kw)
        oh0, oh1 = _covering(h, sh, ph, kh, OH)
        ow0, ow1 = _covering(w, sw, pw, kw, OW)
        acc = _F0
        for oh in range(oh0, oh1):
            hs, he = _window(oh, sh, ph, kh, H)
            for ow in range(ow0, ow1):
                if count_include_pad:
                    acc += gy[p, oh, ow] * full
                else:
                    ws, we = _window(ow, sw, pw, kw, W)
                    acc += gy[p, oh, ow] / np.float32((he - hs) * (we - ws))
        gx[p, h, w] = acc


@cuda_jit
def l2_pool2d_fwd_cuda(x, kh, kw, sh, sw, ph, pw, y):
    P, H, W = x.shape
    OH, OW = y.shape[1], y.shape[2]
    i = cuda.grid(1)
    if i < P * OH * OW:
        p = i // (OH * OW)
        oh = (i // OW) % OH
        ow = i % OW
        hs, he = _window(oh, sh, ph, kh, H)
        ws, we = _window(ow, sw, pw, kw, W)
        s = _F0
        for h in range(hs, he):
            for w in range(ws, we):
                v = x[p, h, w]
                s += v * v
        y[p, oh, ow] = math.sqrt(s)


@cuda_jit
def l2_pool2d_bwd_input_cuda(gy, x, y, kh, kw, sh, sw, ph, pw, gx):
    """gx = sum over covering windows of gy / y * x; windows with y == 0 pass nothing."""
    P, H, W = gx.shape
    OH, OW = gy.shape[1], gy.shape[2]
    i = cuda.grid(1)
    if i < P * H * W:
        p = i // (H * W)
        h = (i // W) % H
        w = i % W
        xv = x[p, h, w]
        oh0, oh1 = _covering(h, sh, ph, kh, OH)
        ow0, ow1 = _covering(w, sw, pw, kw, OW)
        acc = _F0
        for oh in range(oh0, oh1):
            for ow in range(ow0, ow1):
                yv = y[p, oh, ow]
                if yv != _F0:
                    acc += (gy[p, oh, ow] / yv) * xv
        gx[p, h, w] = acc


@cuda_jit
def global_avg_pool2d_fwd_cuda(x, y):
    """x (P, HW) -> y (P,): one thread per plane sums it in order."""
    P, HW = x.shape
    p = cuda.grid(1)
    if p < P:
        s = _F0
        for i in range(HW):
            s += x[p, i]
        y[p] = s * (_F1 / np.float32(HW))


@cuda_jit
def global_avg_pool2d_bwd_input_cuda(gy, gx):
    P, HW = gx.shape
    i = cuda.grid(1)
    if i < P * HW:
        gx[i // HW, i % HW] = gy[i // HW] * (_F1 / np.float32(HW))


# ------------------------------------------------------------------------------------------ entry points
def _planes(a):
    n, c, h, w = a.shape
    return a.reshape(n * c, h, w)


def _out_hw(x_shape, k, s, p):
    return tuple((x_shape[2 + i] + 2 * p[i] - k[i]) // s[i] + 1 for i in range(2))


def max_pool2d_forward(x, k, s, p, out=None, argmax=None):
    x = _device.as_device(x)
    yshape = tuple(x.shape[:2]) + _out_hw(x.shape, k, s, p)
    out = _device.out_or_empty(out, yshape)
    argmax = _device.out_or_empty(argmax, yshape, np.int32)
    max_pool2d_fwd_cuda[_launch.grid1d(out.size)](_planes(x), k[0], k[1], s[0], s[1], p[0], p[1],
                                                  _planes(out), _planes(argmax))
    return out, argmax


def max_pool2d_backward(gy, argmax, x_shape, gx=None, settings=None):
    """The CPU signature (no window settings): one thread per (n, c) plane clears it and adds each gy
    at its argmax in raster order, as the CPU kernel does (deterministic, but only N*C threads).
    With ``settings=(k, s, p)`` (the executor knows them) one thread per input cell gathers from the
    windows covering it instead. Indices outside the plane are skipped (never written)."""
    gy, argmax = _device.as_device(gy), _device.as_device(argmax)
    gx = _device.out_or_empty(gx, x_shape)
    n, c, h, w = x_shape
    if settings is None:
        max_pool2d_bwd_plane_cuda[_launch.grid1d(n * c)](gy.reshape(n * c, gy.size // (n * c)),
                                                          argmax.reshape(n * c, gy.size // (n * c)),
                                                          gx.reshape(n * c, h * w))
        return gx
    k, s, p = settings
    max_pool2d_bwd_input_cuda[_launch.grid1d(gx.size)](_planes(gy), _planes(argmax), k[0], k[1], s[0], s[1],
                                                       p[0], p[1], _planes(gx))
    return gx


def avg_pool2d_forward(x, k, s, p, count_include_pad=True, out=None):
    x = _device.as_device(x)
    out = _device.out_or_empty(out, tuple(x.shape[:2]) + _out_hw(x.shape, k, s, p))
    avg_pool2d_fwd_cuda[_launch.grid1d(out.size)](_planes(x), k[0], k[1], s[0], s[1], p[0], p[1],
                                                  bool(count_include_pad), _planes(out))
    return out


def avg_pool2d_backward(gy, x_shape, k, s, p, count_include_pad=True, gx=None):
    gy = _device.as_device(gy)
    gx = _device.out_or_empty(gx, x_shape)
    avg_pool2d_bwd_input_cuda[_launch.grid1d(gx.size)](_planes(gy), k[0], k[1], s[0], s[1], p[0], p[1],
                                                       bool(count_include_pad), _planes(gx))
    return gx


def l2_pool2d_forward(x, k, s, p, out=None):
    x = _device.as_device(x)
    out = _device.out_or_empty(out, tuple(x.shape[:2]) + _out_hw(x.shape, k, s, p))
    l2_pool2d_fwd_cuda[_launch.grid1d(out.size)](_planes(x), k[0], k[1], s[0], s[1], p[0], p[1],
                                                 _planes(out))
    return out


def l2_pool2d_backward(gy, x, y, k, s, p, gx=None):
    gy, x, y = _device.as_device(gy), _device.as_device(x), _device.as_device(y)
    gx = _device.out_or_empty(gx, x.shape)
    l2_pool2d_bwd_input_cuda[_launch.grid1d(gx.size)](_planes(gy), _planes(x), _planes(y), k[0], k[1],
                                                      s[0], s[1], p[0], p[1], _planes(gx))
    return gx


def global_avg_pool2d_forward(x, out=None):
    x = _device.as_device(x)
    n, c, h, w = x.shape
    out = _device.out_or_empty(out, (n, c))
    global_avg_pool2d_fwd_cuda[_launch.grid1d(n * c)](x.reshape(n * c, h * w), out.reshape(n * c))
    return out


def global_avg_pool2d_backward(gy, x_shape, gx=None):
    gy = _device.as_device(gy)
    n, c, h, w = x_shape
    gx = _device.out_or_empty(gx, x_shape)
    global_avg_pool2d_bwd_input_cuda[_launch.grid1d(gx.size)](gy.reshape(n * c), gx.reshape(n * c, h * w))
    return gx


def ptx_cases():
    f3 = np.zeros((1, 4, 4), np.float32)
    i3 = np.zeros((1, 2, 2), np.int32)
    f2 = np.zeros((2, 4), np.float32)
    f1 = np.zeros(2, np.float32)
    s = (2, 2, 2, 2, 0, 0)
    return [
        (max_pool2d_fwd_cuda, (f3, *s, f3, i3)), (max_pool2d_bwd_input_cuda, (f3, i3, *s, f3)),
        (max_pool2d_bwd_plane_cuda, (f2, f2.astype(np.int32), f2)),
        (avg_pool2d_fwd_cuda, (f3, *s, True, f3)), (avg_pool2d_bwd_input_cuda, (f3, *s, True, f3)),
        (l2_pool2d_fwd_cuda, (f3, *s, f3)), (l2_pool2d_bwd_input_cuda, (f3, f3, f3, *s, f3)),
        (global_avg_pool2d_fwd_cuda, (f2, f1)), (global_avg_pool2d_bwd_input_cuda, (f1, f2)),
    ]
