"""float64 reference conv2d / conv1d, forward and backward, written from the definition.

y[n, k, oh, ow] = b[k] + sum_{c, i, j} w[k, c, i, j] * xpad[n, g*Cg + c, oh*sh + i*dh, ow*sw + j*dw]
with g = k // (K / groups), xpad the zero-padded input (top/left/bottom/right pads given
explicitly), and w flipped in both spatial axes when flip=True. The backward passes are the
same sum read the other way: each term sends w*gy to xpad and xpad*gy to w.
Independent of edgecnn: padding modes are resolved here from their definitions too.
"""
import numpy as np


def ref_pads(padding, kernel, dilation):
    """((lo, hi), ...) per axis: int / tuple, "valid", "same" (odd pixel at the high end), "full"."""
    out = []
    for ax, (k, d) in enumerate(zip(kernel, dilation)):
        span = d * (k - 1)
        if padding == "valid":
            out.append((0, 0))
        elif padding == "same":
            out.append((span // 2, span - span // 2))
        elif padding == "full":
            out.append((span, span))
        elif isinstance(padding, (tuple, list)):
            out.append((padding[ax], padding[ax]))
        else:
            out.append((padding, padding))
    return tuple(out)


def _pair(v):
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


def _geometry(x_shape, w_shape, stride, padding, dilation):
    sh, sw = _pair(stride)
    dh, dw = _pair(dilation)
    KH, KW = w_shape[2], w_shape[3]
    (pt, pb), (pl, pr) = ref_pads(padding, (KH, KW), (dh, dw))
    H, W = x_shape[2] + pt + pb, x_shape[3] + pl + pr
    Ho = (H - dh * (KH - 1) - 1) // sh + 1
    Wo = (W - dw * (KW - 1) - 1) // sw + 1
    return sh, sw, dh, dw, pt, pb, pl, pr, Ho, Wo


def conv2d_ref(x, w, b=None, stride=1, padding=0, dilation=1, groups=1, flip=False):
    x, w = np.asarray(x, np.float64), np.asarray(w, np.float64)
    if flip:
        w = w[:, :, ::-1, ::-1]
    N, C = x.shape[:2]
    K, Cg, KH, KW = w.shape
    sh, sw, dh, dw, pt, pb, pl, pr, Ho, Wo = _geometry(x.shape, w.shape, stride, padding, dilation)
    xp = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)))
    Kg = K // groups
    y = np.zeros((N, K, Ho, Wo))
    for k in range(K):
        g = k // Kg
        for i in range(KH):
            for j in range(KW):
                # window of xpad seen by tap (i, j) at every output position
                patch = xp[:, g * Cg:(g + 1) * Cg,
                           i * dh:i * dh + sh * (Ho - 1) + 1:sh,
                           j * dw:j * dw + sw * (Wo - 1) + 1:sw]
                y[:, k] += np.einsum("nchw,c->nhw", patch, w[k, :, i, j])
    if b is not None:
        y += np.asarray(b, np.float64)[None, :, None, None]
    return y


def conv2d_backward_ref(gy, x, w, stride=1, padding=0, dilation=1, groups=1, flip=False):
    """(gx, gw, gb) of sum(conv2d_ref(x, w, b) * gy)."""
    gy, x, w = (np.asarray(a, np.float64) for a in (gy, x, w))
    wf = w[:, :, ::-1, ::-1] if flip else w
    N, C, H, W = x.shape
    K, Cg, KH, KW = w.shape
    sh, sw, dh, dw, pt, pb, pl, pr, Ho, Wo = _geometry(x.shape, w.shape, stride, padding, dilation)
    xp = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)))
    gxp = np.zeros_like(xp)
    gwf = np.zeros_like(wf)
    Kg = K // groups
    for k in range(K):
        g = k // Kg
        cs = slice(g * Cg, (g + 1) * Cg)
        for i in range(KH):
            for j in range(KW):
                hs = slice(i * dh, i * dh + sh * (Ho - 1) + 1, sh)
                ws = slice(j * dw, j * dw + sw * (Wo - 1) + 1, sw)
                gwf[k, :, i, j] = np.einsum("nchw,nhw->c", xp[:, cs, hs, ws], gy[:, k])
                gxp[:, cs, hs, ws] += np.einsum("c,nhw->nchw", wf[k, :, i, j], gy[:, k])
    gx = gxp[:, :, pt:pt + H, pl:pl + W]
    gw = gwf[:, :, ::-1, ::-1] if flip else gwf
    gb = gy.sum(axis=(0, 2, 3))
    return np.ascontiguousarray(gx), np.ascontiguousarray(gw), gb


def _to2d(stride, padding, dilation, k):
    """conv1d settings as conv2d settings with a height of 1 (no padding along the height)."""
    s = stride[0] if isinstance(stride, (tuple, list)) else stride
    d = dilation[0] if isinstance(dilation, (tuple, list)) else dilation
    if isinstance(padding, str):
        (lo, hi), = ref_pads(padding, (k,), (d,))
    else:
        p = padding[0] if isinstance(padding, (tuple, list)) else padding
        lo = hi = p
    return s, d, lo, hi


def _conv2d_asym(x, w, b, s, d, lo, hi, groups, flip):
    """conv2d_ref on (N, C, 1, L) with explicit asymmetric padding along L."""
    xp = np.pad(np.asarray(x, np.float64)[:, :, None, :], ((0, 0), (0, 0), (0, 0), (lo, hi)))
    return conv2d_ref(xp, np.asarray(w)[:, :, None, :], b, (1, s), 0, (1, d), groups, flip)[:, :, 0, :]


def conv1d_ref(x, w, b=None, stride=1, padding=0, dilation=1, groups=1, flip=False):
    s, d, lo, hi = _to2d(stride, padding, dilation, np.shape(w)[2])
    return _conv2d_asym(x, w, b, s, d, lo, hi, groups, flip)


def conv1d_backward_ref(gy, x, w, stride=1, padding=0, dilation=1, groups=1, flip=False):
    s, d, lo, hi = _to2d(stride, padding, dilation, np.shape(w)[2])
    L = np.shape(x)[2]
    xp = np.pad(np.asarray(x, np.float64), ((0, 0), (0, 0), (lo, hi)))
    gxp, gw, gb = conv2d_backward_ref(np.asarray(gy)[:, :, None, :], xp[:, :, None, :],
                                      np.asarray(w)[:, :, None, :], (1, s), 0, (1, d), groups, flip)
    return np.ascontiguousarray(gxp[:, :, 0, lo:lo + L]), gw[:, :, 0, :], gb
