"""float64 pooling references from the definitions: windows are visited offset by offset on a padded copy.

Max: padded cells hold -inf and a cell replaces the running max only when strictly greater, visiting the
window in raster order, so the first maximum wins. Avg: pads are zeros; the divisor is kh*kw or the count
of real cells. L2: sqrt of the sum of squares, pads are zeros.
"""
import numpy as np


def _pair(v):
    return (v, v) if np.isscalar(v) else tuple(v)


def pool_out_size(n, k, s, p):
    return (n + 2 * p - k) // s + 1


def _geometry(x_shape, k, s, p):
    k = _pair(k)
    s = k if s is None else _pair(s)
    p = _pair(p)
    oh = pool_out_size(x_shape[2], k[0], s[0], p[0])
    ow = pool_out_size(x_shape[3], k[1], s[1], p[1])
    return k, s, p, oh, ow


def _pad(x, p, value):
    return np.pad(np.asarray(x, np.float64), ((0, 0), (0, 0), (p[0], p[0]), (p[1], p[1])),
                  constant_values=value)


def _window(a, i, j, s, oh, ow):
    """The (N, C, oh, ow) view of offset (i, j) of every window of the padded array ``a``."""
    return a[:, :, i:i + s[0] * (oh - 1) + 1:s[0], j:j + s[1] * (ow - 1) + 1:s[1]]


def max_pool2d_ref(x, k, s=None, p=0):
    """(y, argmax) with argmax = h*W + w in unpadded coordinates."""
    n, c, h, w = x.shape
    k, s, p, oh, ow = _geometry(x.shape, k, s, p)
    xp = _pad(x, p, -np.inf)
    rows = np.arange(-p[0], h + p[0])[:, None]
    cols = np.arange(-p[1], w + p[1])[None, :]
    flat = np.broadcast_to(rows * w + cols, xp.shape)
    best = np.full((n, c, oh, ow), -np.inf)
    arg = np.full((n, c, oh, ow), -1, np.int64)
    for i in range(k[0]):
        for j in range(k[1]):
            v = _window(xp, i, j, s, oh, ow)
            wins = v > best
            best = np.where(wins, v, best)
            arg = np.where(wins, _window(flat, i, j, s, oh, ow), arg)
    return best, arg


def max_pool2d_bwd_ref(gy, argmax, x_shape):
    n, c, h, w = x_shape
    gx = np.zeros((n * c, h * w))
    planes = np.repeat(np.arange(n * c), gy[0, 0].size)
    np.add.at(gx, (planes, np.asarray(argmax).reshape(-1)), np.asarray(gy, np.float64).reshape(-1))
    return gx.reshape(x_shape)


def _counts(x_shape, k, s, p, oh, ow, count_include_pad):
    if count_include_pad:
        return float(k[0] * k[1])
    ones = _pad(np.ones((1, 1) + tuple(x_shape[2:])), p, 0.0)
    total = 0.0
    for i in range(k[0]):
        for j in range(k[1]):
            total = total + _window(ones, i, j, s, oh, ow)
    return total


def avg_pool2d_ref(x, k, s=None, p=0, count_include_pad=True):
    k, s, p, oh, ow = _geometry(x.shape, k, s, p)
    xp = _pad(x, p, 0.0)
    total = 0.0
    for i in range(k[0]):
        for j in range(k[1]):
            total = total + _window(xp, i, j, s, oh, ow)
    return total / _counts(x.shape, k, s, p, oh, ow, count_include_pad)


def avg_pool2d_bwd_ref(gy, x_shape, k, s=None, p=0, count_include_pad=True):
    k, s, p, oh, ow = _geometry(x_shape, k, s, p)
    g = np.asarray(gy, np.float64) / _counts(x_shape, k, s, p, oh, ow, count_include_pad)
    gxp = np.zeros(_pad(np.zeros(x_shape), p, 0.0).shape)
    for i in range(k[0]):
        for j in range(k[1]):
            _window(gxp, i, j, s, oh, ow)[...] += g
    return gxp[:, :, p[0]:p[0] + x_shape[2], p[1]:p[1] + x_shape[3]]


def l2_pool2d_ref(x, k, s=None, p=0):
    k, s, p, oh, ow = _geometry(x.shape, k, s, p)
    xp = _pad(x, p, 0.0)
    total = 0.0
    for i in range(k[0]):
        for j in range(k[1]):
            total = total + _window(xp, i, j, s, oh, ow) ** 2
    return np.sqrt(total)


def l2_pool2d_bwd_ref(gy, x, k, s=None, p=0):
    """d/dx_i sqrt(sum x^2) = x_i / y (0 where y == 0)."""
    k, s, p, oh, ow = _geometry(x.shape, k, s, p)
    y = l2_pool2d_ref(x, k, s, p)
    g = np.divide(np.asarray(gy, np.float64), y, out=np.zeros_like(y), where=y != 0)
    xp = _pad(x, p, 0.0)
    gxp = np.zeros_like(xp)
    for i in range(k[0]):
        for j in range(k[1]):
            _window(gxp, i, j, s, oh, ow)[...] += g * _window(xp, i, j, s, oh, ow)
    return gxp[:, :, p[0]:p[0] + x.shape[2], p[1]:p[1] + x.shape[3]]


def global_avg_pool2d_ref(x):
    return np.asarray(x, np.float64).mean(axis=(2, 3))


def global_avg_pool2d_bwd_ref(gy, x_shape):
    g = np.asarray(gy, np.float64)[:, :, None, None] / (x_shape[2] * x_shape[3])
    return np.broadcast_to(g, x_shape).copy()
