"""im2col + GEMM conv2d, a chunk of samples at a time.

Each thread (see _conv_threads) takes a slice [lo, hi) of the batch and cuts it into chunks whose
patch matrix stays in its core's L2; per chunk a serial Numba pass builds the patches, NumPy's
matmul (single-threaded OpenBLAS, called from Python between the Numba stages so SciPy is never
needed) multiplies, and a second Numba pass writes NCHW with the bias fused in.
Patch layout per chunk: cols[g, r, n, p] with r = (c, i, j) and p = (oh, ow), so one group's
patches are a (R, nb*P) matrix and every GEMM has a long inner dimension.

Backward per chunk: gather gy into gyc[g, k, n, p]; gw_g += gyc_g @ cols_g^T (chunks summed
in a fixed order, deterministic); gcols_g = w_g^T @ gyc_g; col2im into gx.
"""
import threading

import numpy as np
from edgecnn._blas import numpy_sgemm
from edgecnn._cblas import sgemm
from edgecnn._jit import njit
from ._conv_direct import pad_planes, valid_range

# Bytes of scratch per chunk and thread (patches and gathered gy): well inside a core's 2 MiB L2,
# leaving room for OpenBLAS's packed panels. Measured (one thread, CPU time): 256-512 KiB beat
# 1-2 MiB on 6->16 5x5 (1.25-1.44 vs 1.87-2.52 ms forward) and tie on the larger layers, whose
# chunks hold a single sample anyway.
CHUNK_BYTES = 1 << 19
USE_CBLAS = True  # stride-1 drivers call sgemm from compiled code (edgecnn._cblas); False: np.matmul
_F0 = np.float32(0)
_F1 = np.float32(1)

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


@njit
def im2col(x, n0, KH, KW, sh, sw, pt, pl, dh, dw, Ho, Wo, cols):
    N, C, H, W = x.shape
    G, R, nb = cols.shape[0], cols.shape[1], cols.shape[2]
    Cg = C // G
    for t in range(G * R * nb):
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


@njit
def scatter_bias(tmp, b, has_bias, n0, y):
    """y[n0+n, g*Kg+k, :] = tmp[g, k, n*P:(n+1)*P] + b."""
    G, Kg = tmp.shape[0], tmp.shape[1]
    P = y.shape[2] * y.shape[3]
    nb = tmp.shape[2] // P
    K = G * Kg
    yf = y.reshape(y.shape[0], K, P)
    for t in range(nb * K):
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


@njit
def gather_gy(gy, n0, gyc):
    """gyc[g, k, n, :] = gy[n0+n, g*Kg+k, :]."""
    G, Kg, nb, P = gyc.shape
    K = G * Kg
    gyf = gy.reshape(gy.shape[0], K, P)
    for t in range(nb * K):
        nl = t // K
        k = t % K
        src = gyf[n0 + nl, k]
        dst = gyc[k // Kg, k % Kg, nl]
        for p in range(P):
            dst[p] = src[p]


@njit
def col2im(gcols, n0, KH, KW, sh, sw, pt, pl, dh, dw, Ho, Wo, gx):
    N, C, H, W = gx.shape
    G, nb = gcols.shape[0], gcols.shape[2]
    Cg = C // G
    for t in range(nb * C):
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


# --- stride 1: wide rows (see _conv_direct) ----------------------------------------------------
# Each patch row (c, i, j) of a sample is ONE contiguous slice of the padded plane, of length
# Lw = (Ho-1)*Wp + Wo: im2col becomes a memcpy per row. The GEMM also computes the Wp - Wo junk
# columns of each output row (a few % more flops; the scatter drops them); gy is gathered with
# zeros there, so they add nothing to gw, and gcols = w^T gy is zero there too.

@njit
def im2col_s1(x, n0, m, KH, KW, pt, pl, dh, dw, Hp, Wp, xpad, cols):
    """cols[g, r, n, :] for samples n0 .. n0 + m (cols may hold more samples: the rest is left)."""
    G, R, Lw = cols.shape[0], cols.shape[1], cols.shape[3]
    Cg = x.shape[1] // G
    for nl in range(m):
        pad_planes(x, n0 + nl, pt, pl, Hp, Wp, xpad)
        for g in range(G):
            for r in range(R):
                c = r // (KH * KW)
                i = (r // KW) % KH
                j = r % KW
                off = i * dh * Wp + j * dw
                src = xpad[g * Cg + c, off:off + Lw]
                dst = cols[g, r, nl]
                for q in range(Lw):
                    dst[q] = src[q]


@njit
def scatter_bias_s1(tmp, b, has_bias, n0, m, Wp, Lw, y):
    """y[n0+n, g*Kg+k, oh, ow] = tmp[g, k, n*Lw + oh*Wp + ow] + b for n < m."""
    G, Kg = tmp.shape[0], tmp.shape[1]
    Ho, Wo = y.shape[2], y.shape[3]
    for nl in range(m):
        for k in range(G * Kg):
            src = tmp[k // Kg, k % Kg]
            bv = np.float32(0)
            if has_bias:
                bv = b[k]
            for oh in range(Ho):
                base = nl * Lw + oh * Wp
                for ow in range(Wo):
                    y[n0 + nl, k, oh, ow] = src[base + ow] + bv


@njit
def gather_gy_s1(gy, n0, m, Wp, gyc):
    """gyc[g, k, n, oh*Wp + ow] = gy[n0+n, g*Kg+k, oh, ow] for n < m, zeros in the junk columns."""
    G, Kg = gyc.shape[0], gyc.shape[1]
    Ho, Wo = gy.shape[2], gy.shape[3]
    for g in range(G):
        for kl in range(Kg):
            for nl in range(m):
                dst = gyc[g, kl, nl]
                for oh in range(Ho):
                    base = oh * Wp
                    for ow in range(Wo):
                        dst[base + ow] = gy[n0 + nl, g * Kg + kl, oh, ow]
                    if oh < Ho - 1:
                        for ow in range(Wo, Wp):
                            dst[base + ow] = np.float32(0)


@njit
def col2im_s1(gcols, n0, m, KH, KW, pt, pl, dh, dw, Hp, Wp, gxpad, gx):
    G, R, Lw = gcols.shape[0], gcols.shape[1], gcols.shape[3]
    N, C, H, W = gx.shape
    Cg = C // G
    for nl in range(m):
        for c in range(C):
            for q in range(Hp * Wp):
                gxpad[c, q] = np.float32(0)
        for g in range(G):
            for r in range(R):
                c = r // (KH * KW)
                i = (r // KW) % KH
                j = r % KW
                off = i * dh * Wp + j * dw
                dst = gxpad[g * Cg + c, off:off + Lw]
                src = gcols[g, r, nl]
                for q in range(Lw):
                    dst[q] += src[q]
        for c in range(C):
            for ih in range(H):
                base = (ih + pt) * Wp + pl
                for iw in range(W):
                    gx[n0 + nl, c, ih, iw] = gxpad[c, base + iw]


def _s1_dims(Ho, Wo, KH, KW, dh, dw):
    Hp, Wp = Ho + dh * (KH - 1), Wo + dw * (KW - 1)
    return Hp, Wp, (Ho - 1) * Wp + Wo


@njit
def _fwd_s1_chunks(x, w, b, has_bias, pt, pl, dh, dw, lo, hi, nb, Hp, Wp, Lw, xpad, cols, tmp, y, fn, bits):
    G, R, Kg = cols.shape[0], cols.shape[1], tmp.shape[1]
    KH, KW = w.shape[2], w.shape[3]
    ld = nb * Lw
    for n0 in range(lo, hi, nb):
        m = min(nb, hi - n0)
        im2col_s1(x, n0, m, KH, KW, pt, pl, dh, dw, Hp, Wp, xpad, cols)
        for g in range(G):  # tmp[g] (Kg, m Lw) = w[g] (Kg, R) @ cols[g] (R, m Lw)
            sgemm(fn, bits, False, False, Kg, m * Lw, R, w, g * Kg * R, R, cols, g * R * ld, ld,
                  _F0, tmp, g * Kg * ld, ld)
        scatter_bias_s1(tmp, b, has_bias, n0, m, Wp, Lw, y)


@njit
def _bwd_s1_chunks(gy, x, w, pt, pl, dh, dw, lo, hi, nb, Hp, Wp, Lw, xpad, gyc, cols,
                   want_gx, gx, want_gw, gw, fn, bits):
    G, Kg, R = gyc.shape[0], gyc.shape[1], cols.shape[1]
    KH, KW = (gw if want_gw else w).shape[2], (gw if want_gw else w).shape[3]
    ld = nb * Lw
    for n0 in range(lo, hi, nb):
        m = min(nb, hi - n0)
        gather_gy_s1(gy, n0, m, Wp, gyc)
        if want_gw:  # gw[g] (Kg, R) (+)= gyc[g] (Kg, m Lw) @ cols[g]^T
            im2col_s1(x, n0, m, KH, KW, pt, pl, dh, dw, Hp, Wp, xpad, cols)
            beta = _F0 if n0 == lo else _F1
            for g in range(G):
                sgemm(fn, bits, False, True, Kg, R, m * Lw, gyc, g * Kg * ld, ld, cols, g * R * ld, ld,
                      beta, gw, g * Kg * R, R)
        if want_gx:  # the patch gradient reuses cols: gcols[g] (R, m Lw) = w[g]^T @ gyc[g]
            for g in range(G):
                sgemm(fn, bits, True, False, R, m * Lw, Kg, w, g * Kg * R, R, gyc, g * Kg * ld, ld,
                      _F0, cols, g * R * ld, ld)
            col2im_s1(cols, n0, m, KH, KW, pt, pl, dh, dw, Hp, Wp, xpad, gx)


_NONE4 = np.zeros((1, 1, 1, 1), np.float32)  # stands for an output not wanted


def gemm_fwd_s1(x, w, b, has_bias, pt, pl, dh, dw, groups, lo, hi, y):
    N, C, H, W = x.shape
    K, Cg, KH, KW = w.shape
    Ho, Wo = y.shape[2], y.shape[3]
    Hp, Wp, Lw = _s1_dims(Ho, Wo, KH, KW, dh, dw)
    R, Kg = Cg * KH * KW, K // groups
    w2 = w.reshape(groups, Kg, R)
    nb = chunk_size(hi - lo, R + Kg, Lw, groups)
    xpad = scratch("xpad", (C, Hp * Wp))
    fn, bits = numpy_sgemm() if USE_CBLAS else (0, 0)
    if fn:
        _fwd_s1_chunks(x, w, b, has_bias, pt, pl, dh, dw, lo, hi, nb, Hp, Wp, Lw, xpad,
                       scratch("cols", (groups, R, nb, Lw)), scratch("ytmp", (groups, Kg, nb * Lw)), y, fn, bits)
        return
    for n0 in range(lo, hi, nb):
        m = min(nb, hi - n0)
        cols = scratch("cols", (groups, R, m, Lw))
        tmp = scratch("ytmp", (groups, Kg, m * Lw))
        im2col_s1(x, n0, m, KH, KW, pt, pl, dh, dw, Hp, Wp, xpad, cols)
        for g in range(groups):
            np.matmul(w2[g], cols[g].reshape(R, m * Lw), out=tmp[g])
        scatter_bias_s1(tmp, b, has_bias, n0, m, Wp, Lw, y)


def gemm_bwd_s1(gy, x, w, pt, pl, dh, dw, groups, lo, hi, gx, gw):
    N, K, Ho, Wo = gy.shape
    _, Cg, KH, KW = (w if w is not None else gw).shape
    C = Cg * groups
    Hp, Wp, Lw = _s1_dims(Ho, Wo, KH, KW, dh, dw)
    R, Kg = Cg * KH * KW, K // groups
    w2 = None if w is None else w.reshape(groups, Kg, R)
    gw2 = None if gw is None else gw.reshape(groups, Kg, R)
    # The patch gradient reuses the patch buffer (the gw GEMM is done with it by then): a smaller
    # per-chunk working set, so more of it stays in L2 next to OpenBLAS's packing buffers.
    nb = chunk_size(hi - lo, Kg + R, Lw, groups)
    xpad = scratch("xpad", (C, Hp * Wp))
    fn, bits = numpy_sgemm() if USE_CBLAS else (0, 0)
    if fn:
        _bwd_s1_chunks(gy, x if gw is not None else _NONE4, w if gx is not None else gw, pt, pl, dh, dw, lo, hi,
                       nb, Hp, Wp, Lw, xpad, scratch("gyc", (groups, Kg, nb, Lw)),
                       scratch("cols", (groups, R, nb, Lw)), gx is not None, _NONE4 if gx is None else gx,
                       gw is not None, w if gw is None else gw, fn, bits)
        return
    for n0 in range(lo, hi, nb):
        m = min(nb, hi - n0)
        gyc = scratch("gyc", (groups, Kg, m, Lw))
        gather_gy_s1(gy, n0, m, Wp, gyc)
        cols = scratch("cols", (groups, R, m, Lw))
        if gw is not None:
            im2col_s1(x, n0, m, KH, KW, pt, pl, dh, dw, Hp, Wp, xpad, cols)
            part = scratch("gwpart", (groups, Kg, R))
            for g in range(groups):
                a = gyc[g].reshape(Kg, m * Lw)
                target = gw2[g] if n0 == lo else part[g]
                np.matmul(a, cols[g].reshape(R, m * Lw).T, out=target)
                if n0 != lo:
                    gw2[g] += part[g]
        if gx is not None:
            gcols = cols
            for g in range(groups):
                np.matmul(w2[g].T, gyc[g].reshape(Kg, m * Lw), out=gcols[g].reshape(R, m * Lw))
            col2im_s1(gcols, n0, m, KH, KW, pt, pl, dh, dw, Hp, Wp, xpad, gx)


def gemm_fwd(x, w, b, has_bias, sh, sw, pt, pl, dh, dw, groups, lo, hi, y):
    """y[lo:hi] = conv(x[lo:hi], w) + b."""
    N, C, H, W = x.shape
    K, Cg, KH, KW = w.shape
    Ho, Wo = y.shape[2], y.shape[3]
    P, R, Kg = Ho * Wo, Cg * KH * KW, K // groups
    w2 = w.reshape(groups, Kg, R)
    nb = chunk_size(hi - lo, R + Kg, P, groups)
    for n0 in range(lo, hi, nb):
        m = min(nb, hi - n0)
        cols = scratch("cols", (groups, R, m, P))
        tmp = scratch("ytmp", (groups, Kg, m * P))
        im2col(x, n0, KH, KW, sh, sw, pt, pl, dh, dw, Ho, Wo, cols)
        for g in range(groups):
            np.matmul(w2[g], cols[g].reshape(R, m * P), out=tmp[g])
        scatter_bias(tmp, b, has_bias, n0, y)


def gemm_bwd(gy, x, w, sh, sw, pt, pl, dh, dw, groups, lo, hi, gx, gw):
    """gx[lo:hi] (if gx is not None) and gw = weight gradient over samples [lo, hi) (if gw is
    not None; overwritten)."""
    N, K, Ho, Wo = gy.shape
    _, Cg, KH, KW = (w if w is not None else gw).shape
    P, R, Kg = Ho * Wo, Cg * KH * KW, K // groups
    w2 = None if w is None else w.reshape(groups, Kg, R)
    gw2 = None if gw is None else gw.reshape(groups, Kg, R)
    rows = Kg + (R if gw is not None else 0) + (R if gx is not None else 0)
    nb = chunk_size(hi - lo, rows, P, groups)
    for n0 in range(lo, hi, nb):
        m = min(nb, hi - n0)
        gyc = scratch("gyc", (groups, Kg, m, P))
        gather_gy(gy, n0, gyc)
        if gw is not None:
            cols = scratch("cols", (groups, R, m, P))
            im2col(x, n0, KH, KW, sh, sw, pt, pl, dh, dw, Ho, Wo, cols)
            part = scratch("gwpart", (groups, Kg, R))
        if gx is not None:
            gcols = scratch("gcols", (groups, R, m, P))
        for g in range(groups):
            a = gyc[g].reshape(Kg, m * P)
            if gw is not None:
                target = gw2[g] if n0 == lo else part[g]
                np.matmul(a, cols[g].reshape(R, m * P).T, out=target)
                if n0 != lo:
                    gw2[g] += part[g]
            if gx is not None:
                np.matmul(w2[g].T, a, out=gcols[g].reshape(R, m * P))
        if gx is not None:
            col2im(gcols, n0, KH, KW, sh, sw, pt, pl, dh, dw, Ho, Wo, gx)
