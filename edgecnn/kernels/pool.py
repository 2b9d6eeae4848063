"""2-D pooling over NCHW float32: max, average, L2 (sqrt of sum of squares) and global average.

Kernels work on the input viewed as (N*C, H, W) planes and run ``prange`` over planes, so every thread
writes a disjoint plane of the output (or of gx): overlapping windows accumulate without races and the
result does not depend on the thread count.

Padding rule (as in PyTorch): padding <= kernel // 2 on each axis, so every window holds at least one
real cell (a max always has a winner and count_include_pad=False never divides by zero).
"""
import numpy as np
from numba import prange

from .._jit import njit
from ._common import (as_int, as_tuple, check_array, check_out, check_shape, is_device_array,
                      output_shape)

_F0 = np.float32(0.0)


# ----------------------------------------------------------------------------------------------- shapes
def _settings(op, x_shape, kernel_size, stride, padding):
    """((kh, kw), (sh, sw), (ph, pw), (oh, ow)) after validating every setting against x_shape."""
    if len(x_shape) != 4:
        raise ValueError(f"{op}: x must have 4 dimensions (N, C, H, W), got shape {tuple(x_shape)}")
    k = as_tuple(op, "kernel_size", kernel_size, 2, 1)
    s = k if stride is None else as_tuple(op, "stride", stride, 2, 1)
    if isinstance(padding, str):
        raise TypeError(f"{op}: padding must be an int or 2 ints for pooling, got {padding!r}")
    p = as_tuple(op, "padding", padding, 2, 0)
    if p[0] > k[0] // 2 or p[1] > k[1] // 2:
        raise ValueError(f"{op}: padding {p} must be at most half of kernel_size {k} "
                         f"(every window needs a real cell), x shape {tuple(x_shape)}")
    o = output_shape(op, tuple(x_shape[2:]), k, s, ((p[0], p[0]), (p[1], p[1])), (1, 1))
    return k, s, p, o


def pool2d_output_shape(x_shape, kernel_size, stride=None, padding=0):
    """(N, C, H_out, W_out) for a pooling of ``x_shape``; raises on invalid settings or empty output."""
    op = "pool2d_output_shape"
    x_shape = tuple(as_int(op, "x_shape", d, 1) for d in x_shape)
    _, _, _, o = _settings(op, x_shape, kernel_size, stride, padding)
    return (x_shape[0], x_shape[1], o[0], o[1])


def _on_device(op, *arrays):
    """True when every array given is a CUDA device array (dispatch to edgecnn.kernels.cuda), False when
    all are NumPy arrays; TypeError when they are mixed."""
    dev = [is_device_array(a) for a in arrays if a is not None]
    if any(dev) and not all(dev):
        raise TypeError(f"{op}: the arrays must all be NumPy arrays or all CUDA device arrays")
    return bool(dev) and all(dev)


def _x_shape(op, x_shape):
    if not isinstance(x_shape, (tuple, list)) or len(x_shape) != 4:
        raise ValueError(f"{op}: x_shape must be 4 ints (N, C, H, W), got {x_shape!r}")
    return tuple(as_int(op, "x_shape", d, 1) for d in x_shape)


# ----------------------------------------------------------------------------------------------- kernels
@njit(inline="always")
def _wins(v, best):
    """v replaces the running max: strictly greater (so the first tie in raster order stays), or the
    first NaN (NaNs propagate as in PyTorch). Branch-free selects: random data mispredicts branches."""
    return (v > best) | ((v != v) & (best == best))


@njit(parallel=True)
def max_pool2d_fwd_cpu(x, kh, kw, sh, sw, ph, pw, y, argmax):
    """x (P, H, W) -> y, argmax (P, OH, OW); argmax = h*W + w, first maximum in raster order."""
    P, H, W = x.shape
    OH, OW = y.shape[1], y.shape[2]
    fast2x2 = kh == 2 and kw == 2 and ph == 0 and pw == 0
    pool2 = fast2x2 and sh == 2 and sw == 2
    for p in prange(P):
        if pool2:
            # The usual MaxPool2D(2): literal strides let LLVM load the column pairs as interleaved
            # vectors (with the runtime stride below it cannot). Same comparisons in the same order as below.
            one = np.int32(1)
            for oh in range(OH):
                b0 = np.int32(2 * oh * W)
                b1 = np.int32(b0 + W)
                for ow in range(OW):
                    w = np.int32(2 * ow)
                    m = x[p, 2 * oh, 2 * ow]
                    i = b0 + w
                    v = x[p, 2 * oh, 2 * ow + 1]
                    c = _wins(v, m)
                    m = v if c else m
                    i = b0 + w + one if c else i
                    v = x[p, 2 * oh + 1, 2 * ow]
                    c = _wins(v, m)
                    m = v if c else m
                    i = b1 + w if c else i
                    v = x[p, 2 * oh + 1, 2 * ow + 1]
                    c = _wins(v, m)
                    m = v if c else m
                    i = b1 + w + one if c else i
                    y[p, oh, ow] = m
                    argmax[p, oh, ow] = i
        elif fast2x2:
            # The common case, unrolled: 6x faster than the generic loop (whose tiny runtime-length
            # loops do not unroll), which makes the pass memory-bound.
            for oh in range(OH):
                h = oh * sh
                for ow in range(OW):
                    w = ow * sw
                    m = x[p, h, w]
                    i = h * W + w
                    v = x[p, h, w + 1]
                    c = _wins(v, m)
                    m = v if c else m
                    i = h * W + w + 1 if c else i
                    v = x[p, h + 1, w]
                    c = _wins(v, m)
                    m = v if c else m
                    i = (h + 1) * W + w if c else i
                    v = x[p, h + 1, w + 1]
                    c = _wins(v, m)
                    m = v if c else m
                    i = (h + 1) * W + w + 1 if c else i
                    y[p, oh, ow] = m
                    argmax[p, oh, ow] = i
        else:
            for oh in range(OH):
                h0 = oh * sh - ph
                hs = max(h0, 0)
                he = min(h0 + kh, H)
                for ow in range(OW):
                    w0 = ow * sw - pw
                    ws = max(w0, 0)
                    we = min(w0 + kw, W)
                    best = x[p, hs, ws]
                    bi = hs * W + ws
                    for h in range(hs, he):
                        for w in range(ws, we):
                            v = x[p, h, w]
                            c = _wins(v, best)
                            best = v if c else best
                            bi = h * W + w if c else bi
                    y[p, oh, ow] = best
                    argmax[p, oh, ow] = bi


@njit(parallel=True)
def max_pool2d_bwd_input_cpu(gy, argmax, gx):
    """gx (P, H*W) = 0, then gx[p, argmax] += gy per window; returns the count of out-of-range indices
    (skipped, so a bad argmax can never write out of bounds)."""
    P, HW = gx.shape
    L = gy.shape[1]
    bad = 0
    for p in prange(P):
        for i in range(HW):
            gx[p, i] = _F0
        cnt = 0
        for j in range(L):
            a = argmax[p, j]
            if a >= 0 and a < HW:
                gx[p, a] += gy[p, j]
            else:
                cnt += 1
        bad += cnt
    return bad


@njit(parallel=True)
def avg_pool2d_fwd_cpu(x, kh, kw, sh, sw, ph, pw, count_include_pad, y):
    P, H, W = x.shape
    OH, OW = y.shape[1], y.shape[2]
    full = np.float32(1.0) / np.float32(kh * kw)
    fast2x2 = kh == 2 and kw == 2 and ph == 0 and pw == 0
    for p in prange(P):
        if fast2x2:   # unrolled, as for max pooling: ~7x faster than the generic loop
            for oh in range(OH):
                h = oh * sh
                for ow in range(OW):
                    w = ow * sw
                    y[p, oh, ow] = ((x[p, h, w] + x[p, h, w + 1]) + (x[p, h + 1, w] + x[p, h + 1, w + 1])) * full
            continue
        for oh in range(OH):
            h0 = oh * sh - ph
            hs = max(h0, 0)
            he = min(h0 + kh, H)
            for ow in range(OW):
                w0 = ow * sw - pw
                ws = max(w0, 0)
                we = min(w0 + kw, W)
                s = _F0
                for h in range(hs, he):
                    for w in range(ws, we):
                        s += x[p, h, w]
                if count_include_pad:
                    y[p, oh, ow] = s * full
                else:
                    y[p, oh, ow] = s / np.float32((he - hs) * (we - ws))


@njit(parallel=True)
def avg_pool2d_bwd_input_cpu(gy, kh, kw, sh, sw, ph, pw, count_include_pad, gx):
    P, H, W = gx.shape
    OH, OW = gy.shape[1], gy.shape[2]
    full = np.float32(1.0) / np.float32(kh * kw)
    fast2x2 = kh == 2 and kw == 2 and ph == 0 and pw == 0
    for p in prange(P):
        for h in range(H):
            for w in range(W):
                gx[p, h, w] = _F0
        if fast2x2:
            for oh in range(OH):
                h = oh * sh
                for ow in range(OW):
                    w = ow * sw
                    g = gy[p, oh, ow] * full
                    gx[p, h, w] += g
                    gx[p, h, w + 1] += g
                    gx[p, h + 1, w] += g
                    gx[p, h + 1, w + 1] += g
            continue
        for oh in range(OH):
            h0 = oh * sh - ph
            hs = max(h0, 0)
            he = min(h0 + kh, H)
            for ow in range(OW):
                w0 = ow * sw - pw
                ws = max(w0, 0)
                we = min(w0 + kw, W)
                if count_include_pad:
                    g = gy[p, oh, ow] * full
                else:
                    g = gy[p, oh, ow] / np.float32((he - hs) * (we - ws))
                for h in range(hs, he):
                    for w in range(ws, we):
                        gx[p, h, w] += g


@njit(parallel=True)
def l2_pool2d_fwd_cpu(x, kh, kw, sh, sw, ph, pw, y):
    P, H, W = x.shape
    OH, OW = y.shape[1], y.shape[2]
    for p in prange(P):
        for oh in range(OH):
            h0 = oh * sh - ph
            hs = max(h0, 0)
            he = min(h0 + kh, H)
            for ow in range(OW):
                w0 = ow * sw - pw
                ws = max(w0, 0)
                we = min(w0 + kw, W)
                s = _F0
                for h in range(hs, he):
                    for w in range(ws, we):
                        v = x[p, h, w]
                        s += v * v
                y[p, oh, ow] = np.sqrt(s)


@njit(parallel=True)
def l2_pool2d_bwd_input_cpu(gy, x, y, kh, kw, sh, sw, ph, pw, gx):
    """d sqrt(sum x^2) / dx = x / y; windows with y == 0 pass no gradient (the subgradient 0)."""
    P, H, W = gx.shape
    OH, OW = gy.shape[1], gy.shape[2]
    for p in prange(P):
        for h in range(H):
            for w in range(W):
                gx[p, h, w] = _F0
        for oh in range(OH):
            h0 = oh * sh - ph
            hs = max(h0, 0)
            he = min(h0 + kh, H)
            for ow in range(OW):
                yv = y[p, oh, ow]
                if yv == _F0:
                    continue
                w0 = ow * sw - pw
                ws = max(w0, 0)
                we = min(w0 + kw, W)
                g = gy[p, oh, ow] / yv
                for h in range(hs, he):
                    for w in range(ws, we):
                        gx[p, h, w] += g * x[p, h, w]


@njit(parallel=True)
def global_avg_pool2d_fwd_cpu(x, y):
    """x (P, HW) -> y (P,)."""
    P, HW = x.shape
    inv = np.float32(1.0) / np.float32(HW)
    for p in prange(P):
        s = _F0
        for i in range(HW):
            s += x[p, i]
        y[p] = s * inv


@njit(parallel=True)
def global_avg_pool2d_bwd_input_cpu(gy, gx):
    P, HW = gx.shape
    inv = np.float32(1.0) / np.float32(HW)
    for p in prange(P):
        g = gy[p] * inv
        for i in range(HW):
            gx[p, i] = g


# ----------------------------------------------------------------------------------------------- host
def _planes(a):
    n, c, h, w = a.shape
    return a.reshape(n * c, h, w)


def max_pool2d_forward(x, kernel_size, stride=None, padding=0, out=None, argmax=None):
    """Max pooling; returns (y, argmax) with argmax int32 = h*W + w inside each (n, c) plane."""
    op = "max_pool2d_forward"
    check_array(op, "x", x, 4)
    dev = _on_device(op, x, out, argmax)
    k, s, p, o = _settings(op, x.shape, kernel_size, stride, padding)
    yshape = tuple(x.shape[:2]) + o
    out = check_out(op, "out", out, yshape, like=x)
    argmax = check_out(op, "argmax", argmax, yshape, dtype=np.int32, like=x)
    if dev:
        from .cuda import pool as _cu
        return _cu.max_pool2d_forward(x, k, s, p, out, argmax)
    max_pool2d_fwd_cpu(_planes(x), k[0], k[1], s[0], s[1], p[0], p[1], _planes(out), _planes(argmax))
    return out, argmax


def max_pool2d_backward(gy, argmax, x_shape, gx=None):
    """Route each gy to the cell argmax names; overlapping windows accumulate."""
    op = "max_pool2d_backward"
    x_shape = _x_shape(op, x_shape)
    check_array(op, "gy", gy, 4)
    check_array(op, "argmax", argmax, 4, dtype=np.int32)
    dev = _on_device(op, gy, argmax, gx)
    check_shape(op, "argmax", argmax, gy.shape)
    if tuple(gy.shape[:2]) != x_shape[:2]:
        raise ValueError(f"{op}: gy shape {tuple(gy.shape)} does not match x_shape {x_shape} in (N, C)")
    gx = check_out(op, "gx", gx, x_shape, like=gy)
    if dev:
        from .cuda import pool as _cu
        return _cu.max_pool2d_backward(gy, argmax, x_shape, gx)
    n, c, h, w = x_shape
    bad = max_pool2d_bwd_input_cpu(gy.reshape(n * c, -1), argmax.reshape(n * c, -1), gx.reshape(n * c, h * w))
    if bad:
        raise ValueError(f"{op}: argmax holds {bad} indices outside [0, {h * w}) for x_shape {x_shape}")
    return gx


def avg_pool2d_forward(x, kernel_size, stride=None, padding=0, count_include_pad=True, out=None):
    op = "avg_pool2d_forward"
    check_array(op, "x", x, 4)
    dev = _on_device(op, x, out)
    k, s, p, o = _settings(op, x.shape, kernel_size, stride, padding)
    out = check_out(op, "out", out, tuple(x.shape[:2]) + o, like=x)
    if dev:
        from .cuda import pool as _cu
        return _cu.avg_pool2d_forward(x, k, s, p, bool(count_include_pad), out)
    avg_pool2d_fwd_cpu(_planes(x), k[0], k[1], s[0], s[1], p[0], p[1], bool(count_include_pad), _planes(out))
    return out


def _check_gy(op, gy, x_shape, o):
    check_array(op, "gy", gy, 4)
    check_shape(op, "gy", gy, tuple(x_shape[:2]) + tuple(o))


def avg_pool2d_backward(gy, x_shape, kernel_size, stride=None, padding=0, count_include_pad=True, gx=None):
    op = "avg_pool2d_backward"
    x_shape = _x_shape(op, x_shape)
    k, s, p, o = _settings(op, x_shape, kernel_size, stride, padding)
    _check_gy(op, gy, x_shape, o)
    dev = _on_device(op, gy, gx)
    gx = check_out(op, "gx", gx, x_shape, like=gy)
    if dev:
        from .cuda import pool as _cu
        return _cu.avg_pool2d_backward(gy, x_shape, k, s, p, bool(count_include_pad), gx)
    avg_pool2d_bwd_input_cpu(_planes(gy), k[0], k[1], s[0], s[1], p[0], p[1], bool(count_include_pad),
                             _planes(gx))
    return gx


def l2_pool2d_forward(x, kernel_size, stride=None, padding=0, out=None):
    """sqrt(sum of squares) over each window (pads count as 0)."""
    op = "l2_pool2d_forward"
    check_array(op, "x", x, 4)
    dev = _on_device(op, x, out)
    k, s, p, o = _settings(op, x.shape, kernel_size, stride, padding)
    out = check_out(op, "out", out, tuple(x.shape[:2]) + o, like=x)
    if dev:
        from .cuda import pool as _cu
        return _cu.l2_pool2d_forward(x, k, s, p, out)
    l2_pool2d_fwd_cpu(_planes(x), k[0], k[1], s[0], s[1], p[0], p[1], _planes(out))
    return out


def l2_pool2d_backward(gy, x, y, kernel_size, stride=None, padding=0, gx=None):
    op = "l2_pool2d_backward"
    check_array(op, "x", x, 4)
    k, s, p, o = _settings(op, x.shape, kernel_size, stride, padding)
    _check_gy(op, gy, x.shape, o)
    check_array(op, "y", y, 4)
    check_shape(op, "y", y, gy.shape)
    dev = _on_device(op, gy, x, y, gx)
    gx = check_out(op, "gx", gx, x.shape, like=x)
    if dev:
        from .cuda import pool as _cu
        return _cu.l2_pool2d_backward(gy, x, y, k, s, p, gx)
    l2_pool2d_bwd_input_cpu(_planes(gy), _planes(x), _planes(y), k[0], k[1], s[0], s[1], p[0], p[1],
                            _planes(gx))
    return gx


def global_avg_pool2d_forward(x, out=None):
    """Mean over H and W: (N, C, H, W) -> (N, C)."""
    op = "global_avg_pool2d_forward"
    check_array(op, "x", x, 4)
    dev = _on_device(op, x, out)
    n, c, h, w = x.shape
    out = check_out(op, "out", out, (n, c), like=x)
    if dev:
        from .cuda import pool as _cu
        return _cu.global_avg_pool2d_forward(x, out)
    global_avg_pool2d_fwd_cpu(x.reshape(n * c, h * w), out.reshape(n * c))
    return out


def global_avg_pool2d_backward(gy, x_shape, gx=None):
    op = "global_avg_pool2d_backward"
    x_shape = _x_shape(op, x_shape)
    check_array(op, "gy", gy, 2)
    check_shape(op, "gy", gy, x_shape[:2])
    dev = _on_device(op, gy, gx)
    gx = check_out(op, "gx", gx, x_shape, like=gy)
    if dev:
        from .cuda import pool as _cu
        return _cu.global_avg_pool2d_backward(gy, x_shape, gx)
    n, c, h, w = x_shape
    global_avg_pool2d_bwd_input_cpu(gy.reshape(n * c), gx.reshape(n * c, h * w))
    return gx
