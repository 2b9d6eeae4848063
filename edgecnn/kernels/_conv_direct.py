"""Direct (loop) conv2d kernels: every setting, no scratch memory.

Used where a GEMM would be mostly overhead: single-channel first layers, depthwise and other
groups with few input channels, tiny problems. Each prange iteration owns a disjoint output
(an output plane, an input-gradient plane, or one weight slice), so there are no races and the
results do not depend on the thread count.

Settings arrive resolved: strides (sh, sw), top/left padding (pt, pl), dilations (dh, dw); the
bottom/right padding is implied by the output size. The kernel is already un-flipped by the host.
"""
import numpy as np
from numba import prange

from edgecnn._jit import njit


@njit
def valid_range(off, s, size, n_out):
    """Output indices o in [lo, hi) with 0 <= o*s + off < size (o in [0, n_out))."""
    lo = 0
    if off < 0:
        lo = (-off + s - 1) // s
    last = size - 1 - off
    hi = 0
    if last >= 0:
        hi = last // s + 1
    if hi > n_out:
        hi = n_out
    if lo > hi:
        lo = hi
    return lo, hi


@njit(parallel=True)
def direct_fwd(x, w, b, has_bias, sh, sw, pt, pl, dh, dw, groups, y):
    N, C, H, W = x.shape
    K, Cg, KH, KW = w.shape
    Ho, Wo = y.shape[2], y.shape[3]
    Kg = K // groups
    for t in prange(N * K):
        n = t // K
        k = t % K
        g = k // Kg
        yp = y[n, k]
        bv = np.float32(0)
        if has_bias:
            bv = b[k]
        for oh in range(Ho):
            for ow in range(Wo):
                yp[oh, ow] = bv
        for c in range(Cg):
            xp = x[n, g * Cg + c]
            for i in range(KH):
                oh_lo, oh_hi = valid_range(i * dh - pt, sh, H, Ho)
                for j in range(KW):
                    offw = j * dw - pl
                    ow_lo, ow_hi = valid_range(offw, sw, W, Wo)
                    wv = w[k, c, i, j]
                    for oh in range(oh_lo, oh_hi):
                        ih = oh * sh + i * dh - pt
                        for ow in range(ow_lo, ow_hi):
                            yp[oh, ow] += wv * xp[ih, ow * sw + offw]


@njit(parallel=True)
def direct_bwd_input(gy, w, sh, sw, pt, pl, dh, dw, groups, gx):
    N, C, H, W = gx.shape
    K, Cg, KH, KW = w.shape
    Ho, Wo = gy.shape[2], gy.shape[3]
    Kg = K // groups
    for t in prange(N * C):
        n = t // C
        c = t % C
        g = c // Cg
        cl = c % Cg
        gxp = gx[n, c]
        for ih in range(H):
            for iw in range(W):
                gxp[ih, iw] = np.float32(0)
        for kl in range(Kg):
            k = g * Kg + kl
            gyp = gy[n, k]
            for i in range(KH):
                oh_lo, oh_hi = valid_range(i * dh - pt, sh, H, Ho)
                for j in range(KW):
                    offw = j * dw - pl
                    ow_lo, ow_hi = valid_range(offw, sw, W, Wo)
                    wv = w[k, cl, i, j]
                    for oh in range(oh_lo, oh_hi):
                        ih = oh * sh + i * dh - pt
                        for ow in range(ow_lo, ow_hi):
                            gxp[ih, ow * sw + offw] += wv * gyp[oh, ow]


@njit(parallel=True)
def direct_bwd_weight(gy, x, sh, sw, pt, pl, dh, dw, groups, gw):
    N, C, H, W = x.shape
    K, Cg, KH, KW = gw.shape
    Ho, Wo = gy.shape[2], gy.shape[3]
    Kg = K // groups
    for t in prange(K * Cg):
        k = t // Cg
        cl = t % Cg
        c = (k // Kg) * Cg + cl
        for i in range(KH):
            oh_lo, oh_hi = valid_range(i * dh - pt, sh, H, Ho)
            for j in range(KW):
                offw = j * dw - pl
                ow_lo, ow_hi = valid_range(offw, sw, W, Wo)
                acc = np.float32(0)
                for n in range(N):
                    gyp = gy[n, k]
                    xp = x[n, c]
                    for oh in range(oh_lo, oh_hi):
                        ih = oh * sh + i * dh - pt
                        row = np.float32(0)
                        for ow in range(ow_lo, ow_hi):
                            row += gyp[oh, ow] * xp[ih, ow * sw + offw]
                        acc += row
                gw[k, cl, i, j] = acc


@njit(parallel=True)
def bias_grad(gy, gb):
    N, K, Ho, Wo = gy.shape
    for k in prange(K):
        acc = np.float32(0)
        for n in range(N):
            gyp = gy[n, k]
            for oh in range(Ho):
                row = np.float32(0)
                for ow in range(Wo):
                    row += gyp[oh, ow]
                acc += row
        gb[k] = acc
