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
            gyp = gy[n, k].reshape(Ho * Wo)   # one long vectorized sum per plane, not Ho short ones
            row = np.float32(0)
            for q in range(Ho * Wo):
                row += gyp[q]
            acc += row
        gb[k] = acc


# --- stride 1: "wide rows" ---------------------------------------------------------------------
# With stride 1 every tap (i, j) reads the zero-padded plane at one flat offset
# off = i*dh*Wp + j*dw: computing the output with the padded row pitch Wp ("wide" rows, whose last
# Wp - Wo entries are junk) turns each tap into one long contiguous multiply-add, which LLVM
# vectorizes fully, instead of Ho short rows with bounds checks. Hp = Ho + dh*(KH-1) and
# Wp = Wo + dw*(KW-1) are exactly the padded input sizes when the stride is 1.

# Row copies go through 1-D slices indexed from 0: with a 4-D index (y[n, k, oh, ow] = acc[oh*Wp + ow])
# the copy did not vectorize and took half of a single-channel forward (keras-mnist's 1->32 3x3: 0.93 of
# 1.75 ms per 64 samples; 0.36 ms with row slices).
@njit(inline="always")
def _copy_row(src, dst):
    for q in range(dst.size):
        dst[q] = src[q]


@njit
def _unwide(acc, Wp, yp):
    """yp (Ho, Wo) = the rows of acc, pitch Wp."""
    Ho, Wo = yp.shape
    for oh in range(Ho):
        _copy_row(acc[oh * Wp:oh * Wp + Wo], yp[oh])


@njit
def pad_planes(x, n, pt, pl, Hp, Wp, xpad):
    """xpad[c] = the zero-padded plane x[n, c] (rows of pitch Wp), for every channel c."""
    C, H, W = x.shape[1], x.shape[2], x.shape[3]
    for c in range(C):
        dst = xpad[c]
        for q in range(Hp * Wp):
            dst[q] = np.float32(0)
        xp = x[n, c]
        for ih in range(H):
            base = (ih + pt) * Wp + pl
            _copy_row(xp[ih], dst[base:base + W])


@njit
def _taps_row(acc, xf, off, dw, wr, Lw):
    """acc[:Lw] += sum_j wr[j] * xf[off + j*dw:][:Lw]: one row of taps per pass over acc (3- and
    5-wide rows in one pass: fewer load/store round trips of acc)."""
    KW = wr.size
    a = acc[:Lw]
    if KW == 3:
        w0, w1, w2 = wr[0], wr[1], wr[2]
        s0 = xf[off:off + Lw]
        s1 = xf[off + dw:off + dw + Lw]
        s2 = xf[off + 2 * dw:off + 2 * dw + Lw]
        for q in range(Lw):
            a[q] += (w0 * s0[q] + w1 * s1[q]) + w2 * s2[q]
    elif KW == 5:
        w0, w1, w2, w3, w4 = wr[0], wr[1], wr[2], wr[3], wr[4]
        s0 = xf[off:off + Lw]
        s1 = xf[off + dw:off + dw + Lw]
        s2 = xf[off + 2 * dw:off + 2 * dw + Lw]
        s3 = xf[off + 3 * dw:off + 3 * dw + Lw]
        s4 = xf[off + 4 * dw:off + 4 * dw + Lw]
        for q in range(Lw):
            a[q] += ((w0 * s0[q] + w1 * s1[q]) + (w2 * s2[q] + w3 * s3[q])) + w4 * s4[q]
    else:
        for j in range(KW):
            wv = wr[j]
            src = xf[off + j * dw:off + j * dw + Lw]
            for q in range(Lw):
                a[q] += wv * src[q]


# Several samples per pass ("tall" planes): the padded planes of G samples are stacked in one buffer,
# pitch P = Hp*Wp per sample, and every tap is one contiguous run over all of them (the outputs between
# two samples' valid regions are junk, dropped on the way out; gy is zero there on the way back). With
# one sample per pass, lenet5's 6->16 5x5 on 14x14 ran 136-element loops and the per-pass setup
# dominated. G keeps a plane group near _TALL floats (L1-sized), at least one sample.
_TALL = 2048


@njit
def _group(n, P):
    return max(1, min(n, _TALL // P))


@njit
def _pad_group(x, n0, gn, pt, pl, Hp, Wp, xt):
    """xt[c, s*P:(s+1)*P] = the zero-padded plane x[n0 + s, c] (pitch Wp), for s < gn and every c."""
    C, H, W = x.shape[1], x.shape[2], x.shape[3]
    P = Hp * Wp
    for c in range(C):
        dst = xt[c]
        for q in range(gn * P):
            dst[q] = np.float32(0)
        for s in range(gn):
            xp = x[n0 + s, c]
            for ih in range(H):
                base = s * P + (ih + pt) * Wp + pl
                _copy_row(xp[ih], dst[base:base + W])


@njit
def direct_fwd_s1(x, w, b, has_bias, pt, pl, dh, dw, groups, lo, hi, y):
    N, C, H, W = x.shape
    K, Cg, KH, KW = w.shape
    Ho, Wo = y.shape[2], y.shape[3]
    Kg = K // groups
    Hp, Wp = Ho + dh * (KH - 1), Wo + dw * (KW - 1)
    P = Hp * Wp
    Lw = (Ho - 1) * Wp + Wo
    G = _group(hi - lo, P)
    xt = np.empty((C, G * P), np.float32)
    acc = np.empty(G * P, np.float32)
    for n0 in range(lo, hi, G):
        gn = min(G, hi - n0)
        _pad_group(x, n0, gn, pt, pl, Hp, Wp, xt)
        Lt = (gn - 1) * P + Lw
        for k in range(K):
            g = k // Kg
            bv = np.float32(0)
            if has_bias:
                bv = b[k]
            for q in range(Lt):
                acc[q] = bv
            for c in range(Cg):
                xf = xt[g * Cg + c]
                for i in range(KH):
                    _taps_row(acc, xf, i * dh * Wp, dw, w[k, c, i], Lt)
            for s in range(gn):
                _unwide(acc[s * P:s * P + P], Wp, y[n0 + s, k])


@njit
def _wide_gy(gy, n, k, Wp, gyw):
    """gyw = gy[n, k] with row pitch Wp; the gap entries stay zero (set once by the caller)."""
    Ho, Wo = gy.shape[2], gy.shape[3]
    gp = gy[n, k]
    for oh in range(Ho):
        _copy_row(gp[oh], gyw[oh * Wp:oh * Wp + Wo])


@njit
def direct_bwd_input_s1(gy, w, pt, pl, dh, dw, groups, lo, hi, gx):
    N, C, H, W = gx.shape
    K, Cg, KH, KW = w.shape
    Ho, Wo = gy.shape[2], gy.shape[3]
    Kg = K // groups
    Hp, Wp = Ho + dh * (KH - 1), Wo + dw * (KW - 1)
    P = Hp * Wp
    Lw = (Ho - 1) * Wp + Wo
    G = _group(hi - lo, P)
    gxt = np.empty((C, G * P), np.float32)
    gyt = np.zeros(G * P, np.float32)   # entries outside the valid outputs stay zero
    for n0 in range(lo, hi, G):
        gn = min(G, hi - n0)
        Lt = (gn - 1) * P + Lw
        for c in range(C):
            for q in range(gn * P):
                gxt[c, q] = np.float32(0)
        for k in range(K):
            g = k // Kg
            for s in range(gn):
                _wide_gy(gy, n0 + s, k, Wp, gyt[s * P:s * P + P])
            src = gyt[:Lt]
            for c in range(Cg):
                d = gxt[g * Cg + c]
                for i in range(KH):
                    for j in range(KW):
                        off = i * dh * Wp + j * dw
                        wv = w[k, c, i, j]
                        dst = d[off:off + Lt]
                        for q in range(Lt):
                            dst[q] += wv * src[q]
        for s in range(gn):
            for c in range(C):
                sp = gxt[c]
                gp = gx[n0 + s, c]
                for ih in range(H):
                    base = s * P + (ih + pt) * Wp + pl
                    _copy_row(sp[base:base + W], gp[ih])


@njit
def _dot_row(gyw, xf, off, dw, Lw, gr):
    """gr[j] += dot(gyw[:Lw], xf[off + j*dw:][:Lw]) for every j: a row of taps per pass over gyw."""
    KW = gr.size
    g = gyw[:Lw]
    if KW == 3:
        s0 = xf[off:off + Lw]
        s1 = xf[off + dw:off + dw + Lw]
        s2 = xf[off + 2 * dw:off + 2 * dw + Lw]
        a0 = np.float32(0)
        a1 = np.float32(0)
        a2 = np.float32(0)
        for q in range(Lw):
            v = g[q]
            a0 += v * s0[q]
            a1 += v * s1[q]
            a2 += v * s2[q]
        gr[0] += a0
        gr[1] += a1
        gr[2] += a2
    elif KW == 5:
        s0 = xf[off:off + Lw]
        s1 = xf[off + dw:off + dw + Lw]
        s2 = xf[off + 2 * dw:off + 2 * dw + Lw]
        s3 = xf[off + 3 * dw:off + 3 * dw + Lw]
        s4 = xf[off + 4 * dw:off + 4 * dw + Lw]
        a0 = np.float32(0)
        a1 = np.float32(0)
        a2 = np.float32(0)
        a3 = np.float32(0)
        a4 = np.float32(0)
        for q in range(Lw):
            v = g[q]
            a0 += v * s0[q]
            a1 += v * s1[q]
            a2 += v * s2[q]
            a3 += v * s3[q]
            a4 += v * s4[q]
        gr[0] += a0
        gr[1] += a1
        gr[2] += a2
        gr[3] += a3
        gr[4] += a4
    else:
        for j in range(KW):
            src = xf[off + j * dw:off + j * dw + Lw]
            a = np.float32(0)
            for q in range(Lw):
                a += g[q] * src[q]
            gr[j] += a


@njit
def direct_bwd_weight_s1(gy, x, pt, pl, dh, dw, groups, lo, hi, gw):
    N, C, H, W = x.shape
    K, Cg, KH, KW = gw.shape
    Ho, Wo = gy.shape[2], gy.shape[3]
    Kg = K // groups
    Hp, Wp = Ho + dh * (KH - 1), Wo + dw * (KW - 1)
    P = Hp * Wp
    Lw = (Ho - 1) * Wp + Wo
    G = _group(hi - lo, P)
    xt = np.empty((C, G * P), np.float32)
    gyt = np.zeros(G * P, np.float32)   # entries outside the valid outputs stay zero
    for k in range(K):
        for c in range(Cg):
            for i in range(KH):
                for j in range(KW):
                    gw[k, c, i, j] = np.float32(0)
    for n0 in range(lo, hi, G):
        gn = min(G, hi - n0)
        _pad_group(x, n0, gn, pt, pl, Hp, Wp, xt)
        Lt = (gn - 1) * P + Lw
        for k in range(K):
            g = k // Kg
            for s in range(gn):
                _wide_gy(gy, n0 + s, k, Wp, gyt[s * P:s * P + P])
            for c in range(Cg):
                xf = xt[g * Cg + c]
                for i in range(KH):
                    _dot_row(gyt, xf, i * dh * Wp, dw, Lt, gw[k, c, i])
