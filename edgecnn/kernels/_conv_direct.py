"""Direct (loop) conv2d kernels: every setting, no scratch memory.

Used where a GEMM would be mostly overhead: single-channel first layers, depthwise and other
groups with few input channels, tiny problems. The kernels are serial and work on the samples
[lo, hi) of the batch: _conv_threads runs one slice per thread (disjoint outputs; weight and bias
gradients go to one partial buffer per slice, summed by the host in a fixed order).

Settings arrive resolved: strides (sh, sw), top/left padding (pt, pl), dilations (dh, dw); the
bottom/right padding is implied by the output size. The kernel is already un-flipped by the host.
"""
import numpy as np
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


@njit
def direct_fwd(x, w, b, has_bias, sh, sw, pt, pl, dh, dw, groups, lo, hi, y):
    N, C, H, W = x.shape
    K, Cg, KH, KW = w.shape
    Ho, Wo = y.shape[2], y.shape[3]
    Kg = K // groups
    for t in range(lo * K, hi * K):
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


@njit
def direct_bwd_input(gy, w, sh, sw, pt, pl, dh, dw, groups, lo, hi, gx):
    N, C, H, W = gx.shape
    K, Cg, KH, KW = w.shape
    Ho, Wo = gy.shape[2], gy.shape[3]
    Kg = K // groups
    for t in range(lo * C, hi * C):
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


@njit
def direct_bwd_weight(gy, x, sh, sw, pt, pl, dh, dw, groups, lo, hi, gw):
    """gw = the weight gradient summed over samples [lo, hi) (overwritten)."""
    N, C, H, W = x.shape
    K, Cg, KH, KW = gw.shape
    Ho, Wo = gy.shape[2], gy.shape[3]
    Kg = K // groups
    for t in range(K * Cg):
        k = t // Cg
        cl = t % Cg
        c = (k // Kg) * Cg + cl
        for i in range(KH):
            oh_lo, oh_hi = valid_range(i * dh - pt, sh, H, Ho)
            for j in range(KW):
                offw = j * dw - pl
                ow_lo, ow_hi = valid_range(offw, sw, W, Wo)
                acc = np.float32(0)
                for n in range(lo, hi):
                    gyp = gy[n, k]
                    xp = x[n, c]
                    for oh in range(oh_lo, oh_hi):
                        ih = oh * sh + i * dh - pt
                        row = np.float32(0)
                        for ow in range(ow_lo, ow_hi):
                            row += gyp[oh, ow] * xp[ih, ow * sw + offw]
                        acc += row
                gw[k, cl, i, j] = acc


@njit
def bias_grad(gy, lo, hi, gb):
    """gb = gy summed over samples [lo, hi) and space (overwritten)."""
    N, K, Ho, Wo = gy.shape
    for k in range(K):
        acc = np.float32(0)
        for n in range(lo, hi):
            gyp = gy[n, k]
            for oh in range(Ho):
                row = np.float32(0)
                for ow in range(Wo):
                    row += gyp[oh, ow]
                acc += row
        gb[k] = acc


# --- stride 1: "wide rows" ---------------------------------------------------------------------
# With stride 1 every tap (i, j) reads the zero-padded plane at one flat offset
# off = i*dh*Wp + j*dw: computing the output with the padded row pitch Wp ("wide" rows, whose last
# Wp - Wo entries are junk) turns each tap into one long contiguous multiply-add, which LLVM
# vectorizes fully, instead of Ho short rows with bounds checks. Hp = Ho + dh*(KH-1) and
# Wp = Wo + dw*(KW-1) are exactly the padded input sizes when the stride is 1.

@njit
def pad_planes(x, n, pt, pl, Hp, Wp, xpad):
    """xpad[c] = the zero-padded plane x[n, c] (rows of pitch Wp), for every channel c."""
    C, H, W = x.shape[1], x.shape[2], x.shape[3]
    for c in range(C):
        dst = xpad[c]
        for q in range(Hp * Wp):
            dst[q] = np.float32(0)
        for ih in range(H):
            base = (ih + pt) * Wp + pl
            for iw in range(W):
                dst[base + iw] = x[n, c, ih, iw]


@njit
def direct_fwd_s1(x, w, b, has_bias, pt, pl, dh, dw, groups, lo, hi, y):
    N, C, H, W = x.shape
    K, Cg, KH, KW = w.shape
    Ho, Wo = y.shape[2], y.shape[3]
    Kg = K // groups
    Hp, Wp = Ho + dh * (KH - 1), Wo + dw * (KW - 1)
    Lw = (Ho - 1) * Wp + Wo
    xpad = np.empty((C, Hp * Wp), np.float32)
    acc = np.empty(Lw, np.float32)
    for n in range(lo, hi):
        pad_planes(x, n, pt, pl, Hp, Wp, xpad)
        for k in range(K):
            g = k // Kg
            bv = np.float32(0)
            if has_bias:
                bv = b[k]
            for q in range(Lw):
                acc[q] = bv
            for c in range(Cg):
                xf = xpad[g * Cg + c]
                for i in range(KH):
                    for j in range(KW):
                        off = i * dh * Wp + j * dw
                        wv = w[k, c, i, j]
                        src = xf[off:off + Lw]
                        for q in range(Lw):
                            acc[q] += wv * src[q]
            for oh in range(Ho):
                for ow in range(Wo):
                    y[n, k, oh, ow] = acc[oh * Wp + ow]


@njit
def _wide_gy(gy, n, k, Wp, gyw):
    """gyw = gy[n, k] with row pitch Wp; the gap entries stay zero (set once by the caller)."""
    Ho, Wo = gy.shape[2], gy.shape[3]
    for oh in range(Ho):
        for ow in range(Wo):
            gyw[oh * Wp + ow] = gy[n, k, oh, ow]


@njit
def direct_bwd_input_s1(gy, w, pt, pl, dh, dw, groups, lo, hi, gx):
    N, C, H, W = gx.shape
    K, Cg, KH, KW = w.shape
    Ho, Wo = gy.shape[2], gy.shape[3]
    Kg = K // groups
    Hp, Wp = Ho + dh * (KH - 1), Wo + dw * (KW - 1)
    Lw = (Ho - 1) * Wp + Wo
    gxpad = np.empty((C, Hp * Wp), np.float32)
    gyw = np.zeros(Lw, np.float32)
    for n in range(lo, hi):
        for c in range(C):
            for q in range(Hp * Wp):
                gxpad[c, q] = np.float32(0)
        for k in range(K):
            g = k // Kg
            _wide_gy(gy, n, k, Wp, gyw)
            for c in range(Cg):
                d = gxpad[g * Cg + c]
                for i in range(KH):
                    for j in range(KW):
                        off = i * dh * Wp + j * dw
                        wv = w[k, c, i, j]
                        dst = d[off:off + Lw]
                        for q in range(Lw):
                            dst[q] += wv * gyw[q]
        for c in range(C):
            for ih in range(H):
                base = (ih + pt) * Wp + pl
                for iw in range(W):
                    gx[n, c, ih, iw] = gxpad[c, base + iw]


@njit
def direct_bwd_weight_s1(gy, x, pt, pl, dh, dw, groups, lo, hi, gw):
    N, C, H, W = x.shape
    K, Cg, KH, KW = gw.shape
    Ho, Wo = gy.shape[2], gy.shape[3]
    Kg = K // groups
    Hp, Wp = Ho + dh * (KH - 1), Wo + dw * (KW - 1)
    Lw = (Ho - 1) * Wp + Wo
    xpad = np.empty((C, Hp * Wp), np.float32)
    gyw = np.zeros(Lw, np.float32)
    for k in range(K):
        for c in range(Cg):
            for i in range(KH):
                for j in range(KW):
                    gw[k, c, i, j] = np.float32(0)
    for n in range(lo, hi):
        pad_planes(x, n, pt, pl, Hp, Wp, xpad)
        for k in range(K):
            g = k // Kg
            _wide_gy(gy, n, k, Wp, gyw)
            for c in range(Cg):
                xf = xpad[g * Cg + c]
                for i in range(KH):
                    for j in range(KW):
                        off = i * dh * Wp + j * dw
                        src = xf[off:off + Lw]
                        acc = np.float32(0)
                        for q in range(Lw):
                            acc += gyw[q] * src[q]
                        gw[k, c, i, j] += acc
