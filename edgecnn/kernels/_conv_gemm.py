"""im2col + GEMM conv2d, a chunk of samples at a time.

The batch is cut into chunks whose patch matrix stays in L2; per chunk a parallel Numba pass
builds the patches, NumPy's matmul (OpenBLAS, called from Python between the Numba stages so
SciPy is never needed) multiplies, and a second Numba pass writes NCHW with the bias fused in.
Patch layout per chunk: cols[g, r, n, p] with r = (c, i, j) and p = (oh, ow), so one group's
patches are a (R, nb*P) matrix and every GEMM has a long inner dimension.

Backward per chunk: gather gy into gyc[g, k, n, p]; gw_g += gyc_g @ cols_g^T (chunks summed
in a fixed order, deterministic); gcols_g = w_g^T @ gyc_g; col2im into gx, parallel over
(n, c) planes, which are disjoint.
"""
import threading

import numpy as np
from numba import prange

from edgecnn._jit import njit
from ._conv_direct import valid_range

# Bytes of patch matrix per chunk: two cores with 2 MiB of L2 each.
CHUNK_BYTES = 1 << 20

_local = threading.local()


def scratch(name, shape):
    """A reused float32 buffer viewed as ``shape`` (per thread; grows, never shrinks)."""
    bufs = getattr(_local, "bufs", None)
    if bufs is None:
        bufs = _local.bufs = {}
    size = 1
    for d in shape:
        size *= int(d)
    buf = bufs.get(name)
    if buf is None or buf.size < size:
        buf = bufs[name] = np.empty(size, np.float32)
    return buf[:size].reshape(shape)


def chunk_size(N, rows, P, groups, budget=None):
    per_sample = groups * rows * P * 4
    nb = (CHUNK_BYTES if budget is None else budget) // max(per_sample, 1)
    return int(max(1, min(N, nb)))


@njit(parallel=True)
def im2col(x, n0, KH, KW, sh, sw, pt, pl, dh, dw, Ho, Wo, cols):
    N, C, H, W = x.shape
    G, R, nb = cols.shape[0], cols.shape[1], cols.shape[2]
    Cg = C // G
    for t in prange(G * R * nb):
        nl = t % nb
        r = (t // nb) % R
        g = t // (nb * R)
        c = r // (KH * KW)
        i = (r // KW) % KH
        j = r % KW
        xp = x[n0 + nl, g * Cg + c]
        dst = cols[g, r, nl]
        offw = j * dw - pl
        ow_lo, ow_hi = valid_range(offw, sw, W, Wo)
        for oh in range(Ho):
            ih = oh * sh + i * dh - pt
            base = oh * Wo
            if ih < 0 or ih >= H:
                for ow in range(Wo):
                    dst[base + ow] = np.float32(0)
            else:
                for ow in range(ow_lo):
                    dst[base + ow] = np.float32(0)
                for ow in range(ow_lo, ow_hi):
                    dst[base + ow] = xp[ih, ow * sw + offw]
                for ow in range(ow_hi, Wo):
                    dst[base + ow] = np.float32(0)


@njit(parallel=True)
def scatter_bias(tmp, b, has_bias, n0, y):
    """y[n0+n, g*Kg+k, :] = tmp[g, k, n*P:(n+1)*P] + b."""
    G, Kg = tmp.shape[0], tmp.shape[1]
    P = y.shape[2] * y.shape[3]
    nb = tmp.shape[2] // P
    K = G * Kg
    yf = y.reshape(y.shape[0], K, P)
    for t in prange(nb * K):
        nl = t // K
        k = t % K
        src = tmp[k // Kg, k % Kg]
        dst = yf[n0 + nl, k]
        bv = np.float32(0)
        if has_bias:
            bv = b[k]
        base = nl * P
        for p in range(P):
            dst[p] = src[base + p] + bv


@njit(parallel=True)
def gather_gy(gy, n0, gyc):
    """gyc[g, k, n, :] = gy[n0+n, g*Kg+k, :]."""
    G, Kg, nb, P = gyc.shape
    K = G * Kg
    gyf = gy.reshape(gy.shape[0], K, P)
    for t in prange(nb * K):
        nl = t // K
        k = t % K
        src = gyf[n0 + nl, k]
        dst = gyc[k // Kg, k % Kg, nl]
        for p in range(P):
            dst[p] = src[p]


@njit(parallel=True)
def col2im(gcols, n0, KH, KW, sh, sw, pt, pl, dh, dw, Ho, Wo, gx):
    N, C, H, W = gx.shape
    G, R, nb = gcols.shape[0], gcols.shape[1], gcols.shape[2]
    Cg = C // G
    for t in prange(nb * C):
        nl = t // C
        c = t % C
        g = c // Cg
        cl = c % Cg
        gxp = gx[n0 + nl, c]
        for ih in range(H):
            for iw in range(W):
                gxp[ih, iw] = np.float32(0)
        for i in range(KH):
            oh_lo, oh_hi = valid_range(i * dh - pt, sh, H, Ho)
            for j in range(KW):
                offw = j * dw - pl
                ow_lo, ow_hi = valid_range(offw, sw, W, Wo)
                src = gcols[g, (cl * KH + i) * KW + j, nl]
                for oh in range(oh_lo, oh_hi):
                    ih = oh * sh + i * dh - pt
                    base = oh * Wo
                    for ow in range(ow_lo, ow_hi):
                        gxp[ih, ow * sw + offw] += src[base + ow]


def gemm_fwd(x, w, b, has_bias, sh, sw, pt, pl, dh, dw, groups, y):
    N, C, H, W = x.shape
    K, Cg, KH, KW = w.shape
    Ho, Wo = y.shape[2], y.shape[3]
    P, R, Kg = Ho * Wo, Cg * KH * KW, K // groups
    w2 = w.reshape(groups, Kg, R)
    nb = chunk_size(N, R, P, groups)
    for n0 in range(0, N, nb):
        m = min(nb, N - n0)
        cols = scratch("cols", (groups, R, m, P))
        tmp = scratch("ytmp", (groups, Kg, m * P))
        im2col(x, n0, KH, KW, sh, sw, pt, pl, dh, dw, Ho, Wo, cols)
        for g in range(groups):
            np.matmul(w2[g], cols[g].reshape(R, m * P), out=tmp[g])
        scatter_bias(tmp, b, has_bias, n0, y)


def gemm_bwd(gy, x, w, sh, sw, pt, pl, dh, dw, groups, need_gx, gx, gw):
    N, C, H, W = x.shape
    K, Cg, KH, KW = w.shape
    Ho, Wo = gy.shape[2], gy.shape[3]
    P, R, Kg = Ho * Wo, Cg * KH * KW, K // groups
    w2 = w.reshape(groups, Kg, R)
    gw2 = gw.reshape(groups, Kg, R)
    # Budget shared by cols, gcols and the gathered gy.
    nb = chunk_size(N, 2 * R + Kg, P, groups)
    part = scratch("gwpart", (groups, Kg, R))
    for n0 in range(0, N, nb):
        m = min(nb, N - n0)
        cols = scratch("cols", (groups, R, m, P))
        gyc = scratch("gyc", (groups, Kg, m, P))
        im2col(x, n0, KH, KW, sh, sw, pt, pl, dh, dw, Ho, Wo, cols)
        gather_gy(gy, n0, gyc)
        if need_gx:
            gcols = scratch("gcols", (groups, R, m, P))
        for g in range(groups):
            a = gyc[g].reshape(Kg, m * P)
            if n0 == 0:
                np.matmul(a, cols[g].reshape(R, m * P).T, out=gw2[g])
            else:
                np.matmul(a, cols[g].reshape(R, m * P).T, out=part[g])
                gw2[g] += part[g]
            if need_gx:
                np.matmul(w2[g].T, a, out=gcols[g].reshape(R, m * P))
        if need_gx:
            col2im(gcols, n0, KH, KW, sh, sw, pt, pl, dh, dw, Ho, Wo, gx)
