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
_TALL = 1024


@njit
def _group(P):
    """Samples per pass; independent of the batch, so scratch memory does not scale with it."""
    return max(1, _TALL // P)


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
def _taps_row4(acc, xf, off, dw, w, k, c, i, Lt):
    """_taps_row for the 4 output channels k..k+3 (acc rows 0..3) in one pass: each x load feeds 4
    FMAs instead of 1 (rows of 3 or 5 taps only; the same per-channel expression as _taps_row)."""
    KW = w.shape[3]
    a0 = acc[0, :Lt]
    a1 = acc[1, :Lt]
    a2 = acc[2, :Lt]
    a3 = acc[3, :Lt]
    s0 = xf[off:off + Lt]
    s1 = xf[off + dw:off + dw + Lt]
    s2 = xf[off + 2 * dw:off + 2 * dw + Lt]
    if KW == 3:
        u0, u1, u2 = w[k, c, i, 0], w[k, c, i, 1], w[k, c, i, 2]
        v0, v1, v2 = w[k + 1, c, i, 0], w[k + 1, c, i, 1], w[k + 1, c, i, 2]
        r0, r1, r2 = w[k + 2, c, i, 0], w[k + 2, c, i, 1], w[k + 2, c, i, 2]
        t0, t1, t2 = w[k + 3, c, i, 0], w[k + 3, c, i, 1], w[k + 3, c, i, 2]
        for q in range(Lt):
            x0 = s0[q]
            x1 = s1[q]
            x2 = s2[q]
            a0[q] += (u0 * x0 + u1 * x1) + u2 * x2
            a1[q] += (v0 * x0 + v1 * x1) + v2 * x2
            a2[q] += (r0 * x0 + r1 * x1) + r2 * x2
            a3[q] += (t0 * x0 + t1 * x1) + t2 * x2
    else:
        s3 = xf[off + 3 * dw:off + 3 * dw + Lt]
        s4 = xf[off + 4 * dw:off + 4 * dw + Lt]
        u0, u1, u2, u3, u4 = w[k, c, i, 0], w[k, c, i, 1], w[k, c, i, 2], w[k, c, i, 3], w[k, c, i, 4]
        v0, v1, v2, v3, v4 = (w[k + 1, c, i, 0], w[k + 1, c, i, 1], w[k + 1, c, i, 2], w[k + 1, c, i, 3],
                              w[k + 1, c, i, 4])
        r0, r1, r2, r3, r4 = (w[k + 2, c, i, 0], w[k + 2, c, i, 1], w[k + 2, c, i, 2], w[k + 2, c, i, 3],
                              w[k + 2, c, i, 4])
        t0, t1, t2, t3, t4 = (w[k + 3, c, i, 0], w[k + 3, c, i, 1], w[k + 3, c, i, 2], w[k + 3, c, i, 3],
                              w[k + 3, c, i, 4])
        for q in range(Lt):
            x0 = s0[q]
            x1 = s1[q]
            x2 = s2[q]
            x3 = s3[q]
            x4 = s4[q]
            a0[q] += ((u0 * x0 + u1 * x1) + (u2 * x2 + u3 * x3)) + u4 * x4
            a1[q] += ((v0 * x0 + v1 * x1) + (v2 * x2 + v3 * x3)) + v4 * x4
            a2[q] += ((r0 * x0 + r1 * x1) + (r2 * x2 + r3 * x3)) + r4 * x4
            a3[q] += ((t0 * x0 + t1 * x1) + (t2 * x2 + t3 * x3)) + t4 * x4


@njit
def direct_fwd_s1(x, w, b, has_bias, pt, pl, dh, dw, groups, lo, hi, y):
    N, C, H, W = x.shape
    K, Cg, KH, KW = w.shape
    Ho, Wo = y.shape[2], y.shape[3]
    Kg = K // groups
    Hp, Wp = Ho + dh * (KH - 1), Wo + dw * (KW - 1)
    P = Hp * Wp
    Lw = (Ho - 1) * Wp + Wo
    G = _group(P)
    four = (KW == 3 or KW == 5) and Kg >= 4   # 4 channels of one group per pass while 4 are left
    xt = np.empty((C, G * P), np.float32)
    acc4 = np.empty((4 if four else 1, G * P), np.float32)
    acc = acc4[0]
    for n0 in range(lo, hi, G):
        gn = min(G, hi - n0)
        _pad_group(x, n0, gn, pt, pl, Hp, Wp, xt)
        Lt = (gn - 1) * P + Lw
        k = 0
        while k < K:
            g = k // Kg
            if four and k - g * Kg + 4 <= Kg:
                for m in range(4):
                    bv = np.float32(0)
                    if has_bias:
                        bv = b[k + m]
                    for q in range(Lt):
                        acc4[m, q] = bv
                for c in range(Cg):
                    xf = xt[g * Cg + c]
                    for i in range(KH):
                        _taps_row4(acc4, xf, i * dh * Wp, dw, w, k, c, i, Lt)
                for m in range(4):
                    am = acc4[m]
                    for s in range(gn):
                        _unwide(am[s * P:s * P + P], Wp, y[n0 + s, k + m])
                k += 4
                continue
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
            k += 1


@njit
def _wide_gy(gy, n, k, Wp, gyw):
    """gyw = gy[n, k] with row pitch Wp; the gap entries stay zero (set once by the caller)."""
    Ho, Wo = gy.shape[2], gy.shape[3]
    gp = gy[n, k]
    for oh in range(Ho):
        _copy_row(gp[oh], gyw[oh * Wp:oh * Wp + Wo])


@njit
def _gather_row4(d, off, gz, Z, dw, w, k, c, i, Lr):
    """d[off + p] += sum over m < 4 and j of w[k+m, c, i, j] * gz[m, Z + p - j*dw] for p < Lr: a row of
    taps of 4 output channels in one pass over d (gz holds gy at offset Z = (KW-1)*dw, zeros around)."""
    KW = w.shape[3]
    dst = d[off:off + Lr]
    g0 = gz[0]
    g1 = gz[1]
    g2 = gz[2]
    g3 = gz[3]
    if KW == 3:
        u0, u1, u2 = w[k, c, i, 0], w[k, c, i, 1], w[k, c, i, 2]
        v0, v1, v2 = w[k + 1, c, i, 0], w[k + 1, c, i, 1], w[k + 1, c, i, 2]
        r0, r1, r2 = w[k + 2, c, i, 0], w[k + 2, c, i, 1], w[k + 2, c, i, 2]
        t0, t1, t2 = w[k + 3, c, i, 0], w[k + 3, c, i, 1], w[k + 3, c, i, 2]
        b0 = g0[Z:Z + Lr]
        b1 = g1[Z:Z + Lr]
        b2 = g2[Z:Z + Lr]
        b3 = g3[Z:Z + Lr]
        e0 = g0[Z - dw:Z - dw + Lr]
        e1 = g1[Z - dw:Z - dw + Lr]
        e2 = g2[Z - dw:Z - dw + Lr]
        e3 = g3[Z - dw:Z - dw + Lr]
        f0 = g0[Z - 2 * dw:Z - 2 * dw + Lr]
        f1 = g1[Z - 2 * dw:Z - 2 * dw + Lr]
        f2 = g2[Z - 2 * dw:Z - 2 * dw + Lr]
        f3 = g3[Z - 2 * dw:Z - 2 * dw + Lr]
        for q in range(Lr):
            dst[q] += (((u0 * b0[q] + v0 * b1[q]) + (r0 * b2[q] + t0 * b3[q]))
                       + ((u1 * e0[q] + v1 * e1[q]) + (r1 * e2[q] + t1 * e3[q]))
                       + ((u2 * f0[q] + v2 * f1[q]) + (r2 * f2[q] + t2 * f3[q])))
    else:
        u0, u1, u2, u3, u4 = w[k, c, i, 0], w[k, c, i, 1], w[k, c, i, 2], w[k, c, i, 3], w[k, c, i, 4]
        v0, v1, v2, v3, v4 = (w[k + 1, c, i, 0], w[k + 1, c, i, 1], w[k + 1, c, i, 2], w[k + 1, c, i, 3],
                              w[k + 1, c, i, 4])
        r0, r1, r2, r3, r4 = (w[k + 2, c, i, 0], w[k + 2, c, i, 1], w[k + 2, c, i, 2], w[k + 2, c, i, 3],
                              w[k + 2, c, i, 4])
        t0, t1, t2, t3, t4 = (w[k + 3, c, i, 0], w[k + 3, c, i, 1], w[k + 3, c, i, 2], w[k + 3, c, i, 3],
                              w[k + 3, c, i, 4])
        o1, o2, o3, o4 = Z - dw, Z - 2 * dw, Z - 3 * dw, Z - 4 * dw
        b0, b1, b2, b3 = g0[Z:Z + Lr], g1[Z:Z + Lr], g2[Z:Z + Lr], g3[Z:Z + Lr]
        e0, e1, e2, e3 = g0[o1:o1 + Lr], g1[o1:o1 + Lr], g2[o1:o1 + Lr], g3[o1:o1 + Lr]
        f0, f1, f2, f3 = g0[o2:o2 + Lr], g1[o2:o2 + Lr], g2[o2:o2 + Lr], g3[o2:o2 + Lr]
        h0, h1, h2, h3 = g0[o3:o3 + Lr], g1[o3:o3 + Lr], g2[o3:o3 + Lr], g3[o3:o3 + Lr]
        l0, l1, l2, l3 = g0[o4:o4 + Lr], g1[o4:o4 + Lr], g2[o4:o4 + Lr], g3[o4:o4 + Lr]
        for q in range(Lr):
            dst[q] += ((((u0 * b0[q] + v0 * b1[q]) + (r0 * b2[q] + t0 * b3[q]))
                        + ((u1 * e0[q] + v1 * e1[q]) + (r1 * e2[q] + t1 * e3[q])))
                       + (((u2 * f0[q] + v2 * f1[q]) + (r2 * f2[q] + t2 * f3[q]))
                          + ((u3 * h0[q] + v3 * h1[q]) + (r3 * h2[q] + t3 * h3[q])))
                       + ((u4 * l0[q] + v4 * l1[q]) + (r4 * l2[q] + t4 * l3[q])))


@njit
def _flip_transpose(w, groups):
    """wt (C, K/groups, KH, KW): wt[c, kk] = w[g*Kg + kk, c - g*Cg] flipped in both axes (g = c // Cg),
    the weights of gx = conv(gy) with 'full' padding."""
    K, Cg, KH, KW = w.shape
    Kg = K // groups
    wt = np.empty((Cg * groups, Kg, KH, KW), np.float32)
    for c in range(Cg * groups):
        g = c // Cg
        for kk in range(Kg):
            for i in range(KH):
                for j in range(KW):
                    wt[c, kk, i, j] = w[g * Kg + kk, c - g * Cg, KH - 1 - i, KW - 1 - j]
    return wt


@njit
def direct_bwd_input_s1(gy, w, pt, pl, dh, dw, groups, lo, hi, gx):
    N, C, H, W = gx.shape
    K, Cg, KH, KW = w.shape
    Ho, Wo = gy.shape[2], gy.shape[3]
    Kg = K // groups
    # gx is the forward conv of gy with the flipped, transposed kernel and padding span - pad on each
    # side: its 4-channel blocks share each gy load among 4 gx channels (C/groups % 4 == 0: with 6,
    # lenet5's 4 + 2 single channels were slower than the gather below). Needs every one of
    # those paddings >= 0 (padding at most the kernel span); otherwise the loops below.
    pb = Ho - 1 + (KH - 1) * dh + 1 - H - pt
    pr = Wo - 1 + (KW - 1) * dw + 1 - W - pl
    sh_, sw_ = (KH - 1) * dh, (KW - 1) * dw
    if (KW == 3 or KW == 5) and Cg % 4 == 0 and pt <= sh_ and pb <= sh_ and pl <= sw_ and pr <= sw_:
        direct_fwd_s1(gy, _flip_transpose(w, groups), w[0, 0, 0], False, sh_ - pt, sw_ - pl, dh, dw,
                      groups, lo, hi, gx)
        return
    Hp, Wp = Ho + dh * (KH - 1), Wo + dw * (KW - 1)
    P = Hp * Wp
    Lw = (Ho - 1) * Wp + Wo
    G = _group(P)
    gxt = np.empty((C, G * P), np.float32)
    four = (KW == 3 or KW == 5) and Kg >= 4
    Z = (KW - 1) * dw
    # gy of 4 channels (or 1) at offset Z, zeros around and outside the valid outputs
    gz = np.zeros((4 if four else 1, Z + G * P + Z), np.float32)
    gyt = gz[0, Z:]
    for n0 in range(lo, hi, G):
        gn = min(G, hi - n0)
        Lt = (gn - 1) * P + Lw
        for c in range(C):
            for q in range(gn * P):
                gxt[c, q] = np.float32(0)
        k = 0
        while k < K:
            g = k // Kg
            if four and k - g * Kg + 4 <= Kg:
                for m in range(4):
                    gm = gz[m]
                    for s in range(gn):
                        _wide_gy(gy, n0 + s, k + m, Wp, gm[Z + s * P:Z + s * P + P])
                for c in range(Cg):
                    d = gxt[g * Cg + c]
                    for i in range(KH):
                        _gather_row4(d, i * dh * Wp, gz, Z, dw, w, k, c, i, Lt + Z)
                k += 4
                continue
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
            k += 1
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
def _dot_row4(gyt, xf, off, dw, Lt, gw, k, c, i):
    """_dot_row for the 4 output channels k..k+3 (gyt rows 0..3) in one pass: each x load feeds 4
    FMAs (rows of 3 or 5 taps only)."""
    KW = gw.shape[3]
    g0 = gyt[0, :Lt]
    g1 = gyt[1, :Lt]
    g2 = gyt[2, :Lt]
    g3 = gyt[3, :Lt]
    s0 = xf[off:off + Lt]
    s1 = xf[off + dw:off + dw + Lt]
    s2 = xf[off + 2 * dw:off + 2 * dw + Lt]
    z = np.float32(0)
    if KW == 3:
        a00 = a01 = a02 = a10 = a11 = a12 = a20 = a21 = a22 = a30 = a31 = a32 = z
        for q in range(Lt):
            x0 = s0[q]
            x1 = s1[q]
            x2 = s2[q]
            v = g0[q]
            a00 += v * x0
            a01 += v * x1
            a02 += v * x2
            v = g1[q]
            a10 += v * x0
            a11 += v * x1
            a12 += v * x2
            v = g2[q]
            a20 += v * x0
            a21 += v * x1
            a22 += v * x2
            v = g3[q]
            a30 += v * x0
            a31 += v * x1
            a32 += v * x2
        gw[k, c, i, 0] += a00
        gw[k, c, i, 1] += a01
        gw[k, c, i, 2] += a02
        gw[k + 1, c, i, 0] += a10
        gw[k + 1, c, i, 1] += a11
        gw[k + 1, c, i, 2] += a12
        gw[k + 2, c, i, 0] += a20
        gw[k + 2, c, i, 1] += a21
        gw[k + 2, c, i, 2] += a22
        gw[k + 3, c, i, 0] += a30
        gw[k + 3, c, i, 1] += a31
        gw[k + 3, c, i, 2] += a32
    else:
        s3 = xf[off + 3 * dw:off + 3 * dw + Lt]
        s4 = xf[off + 4 * dw:off + 4 * dw + Lt]
        a00 = a01 = a02 = a03 = a04 = a10 = a11 = a12 = a13 = a14 = z
        a20 = a21 = a22 = a23 = a24 = a30 = a31 = a32 = a33 = a34 = z
        for q in range(Lt):
            x0 = s0[q]
            x1 = s1[q]
            x2 = s2[q]
            x3 = s3[q]
            x4 = s4[q]
            v = g0[q]
            a00 += v * x0
            a01 += v * x1
            a02 += v * x2
            a03 += v * x3
            a04 += v * x4
            v = g1[q]
            a10 += v * x0
            a11 += v * x1
            a12 += v * x2
            a13 += v * x3
            a14 += v * x4
            v = g2[q]
            a20 += v * x0
            a21 += v * x1
            a22 += v * x2
            a23 += v * x3
            a24 += v * x4
            v = g3[q]
            a30 += v * x0
            a31 += v * x1
            a32 += v * x2
            a33 += v * x3
            a34 += v * x4
        gw[k, c, i, 0] += a00
        gw[k, c, i, 1] += a01
        gw[k, c, i, 2] += a02
        gw[k, c, i, 3] += a03
        gw[k, c, i, 4] += a04
        gw[k + 1, c, i, 0] += a10
        gw[k + 1, c, i, 1] += a11
        gw[k + 1, c, i, 2] += a12
        gw[k + 1, c, i, 3] += a13
        gw[k + 1, c, i, 4] += a14
        gw[k + 2, c, i, 0] += a20
        gw[k + 2, c, i, 1] += a21
        gw[k + 2, c, i, 2] += a22
        gw[k + 2, c, i, 3] += a23
        gw[k + 2, c, i, 4] += a24
        gw[k + 3, c, i, 0] += a30
        gw[k + 3, c, i, 1] += a31
        gw[k + 3, c, i, 2] += a32
        gw[k + 3, c, i, 3] += a33
        gw[k + 3, c, i, 4] += a34


@njit
def direct_bwd_weight_s1(gy, x, pt, pl, dh, dw, groups, lo, hi, gw):
    N, C, H, W = x.shape
    K, Cg, KH, KW = gw.shape
    Ho, Wo = gy.shape[2], gy.shape[3]
    Kg = K // groups
    Hp, Wp = Ho + dh * (KH - 1), Wo + dw * (KW - 1)
    P = Hp * Wp
    Lw = (Ho - 1) * Wp + Wo
    G = _group(P)
    four = (KW == 3 or KW == 5) and Kg >= 4
    xt = np.empty((C, G * P), np.float32)
    gyt4 = np.zeros((4 if four else 1, G * P), np.float32)   # zero outside the valid outputs
    gyt = gyt4[0]
    for k in range(K):
        for c in range(Cg):
            for i in range(KH):
                for j in range(KW):
                    gw[k, c, i, j] = np.float32(0)
    for n0 in range(lo, hi, G):
        gn = min(G, hi - n0)
        _pad_group(x, n0, gn, pt, pl, Hp, Wp, xt)
        Lt = (gn - 1) * P + Lw
        k = 0
        while k < K:
            g = k // Kg
            if four and k - g * Kg + 4 <= Kg:
                for m in range(4):
                    gm = gyt4[m]
                    for s in range(gn):
                        _wide_gy(gy, n0 + s, k + m, Wp, gm[s * P:s * P + P])
                for c in range(Cg):
                    xf = xt[g * Cg + c]
                    for i in range(KH):
                        _dot_row4(gyt4, xf, i * dh * Wp, dw, Lt, gw, k, c, i)
                k += 4
                continue
            for s in range(gn):
                _wide_gy(gy, n0 + s, k, Wp, gyt[s * P:s * P + P])
            for c in range(Cg):
                xf = xt[g * Cg + c]
                for i in range(KH):
                    _dot_row(gyt, xf, i * dh * Wp, dw, Lt, gw[k, c, i])
            k += 1
