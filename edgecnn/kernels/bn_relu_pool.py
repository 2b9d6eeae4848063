"""Batch norm (+ ReLU) followed by 2x2 max pooling (stride 2, no padding), as one op.

Why: the default model's conv-BN-ReLU-pool blocks spent ~20 % of a training step in batch norm and
pooling, bound by memory traffic. Run apart, the forward writes the full-size normalized tensor
and pooling reads it back; the backward writes a full-size, mostly zero gradient and batch norm
reads it twice. Fused, the forward writes only the pooled output and argmax, and the backward
sums over the argmax cells only: about 6.5 full-size passes instead of 11.

The results are those of batchnorm2d_forward(relu=...) then max_pool2d_forward (same arithmetic,
same first-maximum rule), and of their backwards, up to the order of the sums.
On CUDA the two ops run one after the other (no fused device kernel yet).
"""
import numpy as np
from numba import prange

from .._jit import njit
from ._common import check_array, check_out, check_shape, check_writable
from .batchnorm import _channel_stats, _channel_vec, _on_device, _real, bwd_coefficients
from .pool import _wins

_F0 = np.float32(0.0)
_F1 = np.float32(1.0)


@njit(inline="always")
def _bn(x, m, a, b, relu):
    """batchnorm2d's own expression (then its ReLU), so both paths round alike."""
    v = (x - m) * a + b
    return max(v, _F0) if relu else v


@njit(parallel=True)
def bn_relu_pool_fwd_cpu(x, mean, invstd, gamma, beta, relu, y, argmax):
    """y[n, c, oh, ow] = max over the 2x2 window of bn(x) (then max(., 0) when ``relu``), with
    bn(x) = (x - mean) * gamma * invstd + beta; argmax = h * W + w of the first maximum."""
    N, C, H, W = x.shape
    OH, OW = y.shape[2], y.shape[3]
    one = np.int32(1)
    for n in prange(N):
        for c in range(C):
            m = mean[c]
            a = gamma[c] * invstd[c]
            b = beta[c]
            for oh in range(OH):
                b0 = np.int32(2 * oh * W)
                b1 = np.int32(b0 + W)
                for ow in range(OW):
                    w = np.int32(2 * ow)
                    best = _bn(x[n, c, 2 * oh, 2 * ow], m, a, b, relu)
                    i = b0 + w
                    v = _bn(x[n, c, 2 * oh, 2 * ow + 1], m, a, b, relu)
                    t = _wins(v, best)
                    best = v if t else best
                    i = b0 + w + one if t else i
                    v = _bn(x[n, c, 2 * oh + 1, 2 * ow], m, a, b, relu)
                    t = _wins(v, best)
                    best = v if t else best
                    i = b1 + w if t else i
                    v = _bn(x[n, c, 2 * oh + 1, 2 * ow + 1], m, a, b, relu)
                    t = _wins(v, best)
                    best = v if t else best
                    i = b1 + w + one if t else i
                    y[n, c, oh, ow] = best
                    argmax[n, c, oh, ow] = i


@njit(parallel=True)
def bn_relu_pool_bwd_cpu(gy, y, argmax, x, gamma, mean, invstd, relu, gx, ggamma, gbeta):
    """Backward of bn_relu_pool_fwd_cpu in training mode. The gradient reaching batch norm's output,
    g, is gy at each window's argmax cell (zero where the ReLU was off: y <= 0) and zero elsewhere,
    so gbeta = sum g and ggamma = sum g * xhat run over the argmax cells only; then
    gx = gamma * invstd * (g - gbeta / M - xhat * ggamma / M) everywhere. Returns the number of
    argmax entries outside the plane (skipped: nothing is written out of bounds)."""
    N, C, H, W = x.shape
    OH, OW = gy.shape[2], gy.shape[3]
    HW = H * W
    inv_m = _F1 / np.float32(N * HW)
    x3 = x.reshape(N, C, HW)
    gx3 = gx.reshape(N, C, HW)
    bad = np.zeros(C, np.int64)  # per channel: a prange reduction here broke Numba's parfor pass
    for c in prange(C):
        mu = mean[c]
        sb = _F0
        sg = _F0
        cnt = 0
        for n in range(N):
            pb = _F0
            pg = _F0
            for oh in range(OH):
                for ow in range(OW):
                    i = argmax[n, c, oh, ow]
                    if i < 0 or i >= HW:
                        cnt += 1
                    elif not relu or y[n, c, oh, ow] > _F0:
                        g = gy[n, c, oh, ow]
                        pb += g
                        pg += g * (x3[n, c, i] - mu)
            sb += pb
            sg += pg
        gbeta[c] = sb
        ggamma[c] = sg * invstd[c]
        bad[c] = cnt
    for n in prange(N):
        for c in range(C):
            mu, a, mb, mg = bwd_coefficients(c, gamma, mean, invstd, gbeta, ggamma, inv_m)
            for i in range(HW):  # every cell as if g were 0 ...
                gx3[n, c, i] = a * (_F0 - mb - (x3[n, c, i] - mu) * mg)
            for oh in range(OH):  # ... then the argmax cells again, with their g
                for ow in range(OW):
                    i = argmax[n, c, oh, ow]
                    if i >= 0 and i < HW and (not relu or y[n, c, oh, ow] > _F0):
                        gx3[n, c, i] = a * (gy[n, c, oh, ow] - mb - (x3[n, c, i] - mu) * mg)
    return bad.sum()


def _pooled_shape(x_shape):
    n, c, h, w = x_shape
    return (n, c, h // 2, w // 2)


def bn_relu_pool_forward(x, gamma, beta, running_mean, running_var, training=True, momentum=0.1, eps=1e-5,
                         relu=True, out=None, argmax=None, save_mean=None, save_invstd=None):
    """max_pool2d(2) of batchnorm2d (then ReLU when ``relu``) in one pass over the normalized values:
    returns (y, argmax, save_mean, save_invstd), y and argmax of shape (N, C, H // 2, W // 2).
    Training and the running statistics as in batchnorm2d_forward."""
    op = "bn_relu_pool_forward"
    check_array(op, "x", x, 4)
    n, c, h, w = x.shape
    if h < 2 or w < 2:
        raise ValueError(f"{op}: x must be at least 2x2 for 2x2 pooling, got shape {tuple(x.shape)}")
    for name, a in (("gamma", gamma), ("beta", beta), ("running_mean", running_mean),
                    ("running_var", running_var)):
        if a is None and (name in ("gamma", "beta") or not training):
            raise TypeError(f"{op}: {name} is required{' in inference mode' * (name[0] == 'r')} "
                            f"(x shape {tuple(x.shape)})")
        if a is not None:
            _channel_vec(op, name, a, c, x.shape)
            if training and name[0] == "r":  # running statistics are updated in place
                check_writable(op, name, a)
    if (running_mean is None) != (running_var is None):
        raise TypeError(f"{op}: running_mean and running_var must both be arrays or both be None")
    momentum = _real(op, "momentum", momentum, 0.0, False, 1.0)
    eps = _real(op, "eps", eps, 0.0, True)
    if not isinstance(relu, (bool, np.bool_)):
        raise TypeError(f"{op}: relu must be a bool, got {relu!r}")
    if training and n * h * w < 2:
        raise ValueError(f"{op}: training needs more than 1 value per channel to estimate a variance, "
                         f"got x of shape {tuple(x.shape)}")
    dev = _on_device(op, x, gamma, beta, running_mean, running_var, out, argmax, save_mean, save_invstd)
    pshape = _pooled_shape(x.shape)
    out = check_out(op, "out", out, pshape, like=x)
    argmax = check_out(op, "argmax", argmax, pshape, dtype=np.int32, like=x)
    save_mean = check_out(op, "save_mean", save_mean, (c,), like=x)
    save_invstd = check_out(op, "save_invstd", save_invstd, (c,), like=x)
    if dev:
        from .batchnorm import batchnorm2d_forward
        from .pool import max_pool2d_forward
        z, _, _ = batchnorm2d_forward(x, gamma, beta, running_mean, running_var, training, momentum, eps,
                                      save_mean=save_mean, save_invstd=save_invstd, relu=bool(relu))
        max_pool2d_forward(z, 2, out=out, argmax=argmax)
        return out, argmax, save_mean, save_invstd
    if training:
        update = running_mean is not None
        _channel_stats(x.reshape(n, c, h * w), eps, momentum, update,
                       running_mean if update else save_mean, running_var if update else save_invstd,
                       save_mean, save_invstd)
    else:
        np.copyto(save_mean, running_mean)  # invstd in place: the same float32 steps, no temporaries
        np.add(running_var, eps, out=save_invstd)
        np.sqrt(save_invstd, out=save_invstd)
        np.divide(np.float32(1), save_invstd, out=save_invstd)
    bn_relu_pool_fwd_cpu(x, save_mean, save_invstd, gamma, beta, bool(relu), out, argmax)
    return out, argmax, save_mean, save_invstd


def bn_relu_pool_backward(gy, y, argmax, x, gamma, save_mean, save_invstd, relu=True, gx=None, ggamma=None,
                          gbeta=None):
    """(gx, ggamma, gbeta) of a training-mode bn_relu_pool_forward; ``y`` and ``argmax`` are what it
    returned (y > 0 is the ReLU's mask), gy = dL/dy. ggamma / gbeta are overwritten."""
    op = "bn_relu_pool_backward"
    check_array(op, "x", x, 4)
    n, c, h, w = x.shape
    pshape = _pooled_shape(x.shape)
    check_array(op, "gy", gy, 4)
    check_shape(op, "gy", gy, pshape)
    check_array(op, "y", y, 4)
    check_shape(op, "y", y, pshape)
    check_array(op, "argmax", argmax, 4, dtype=np.int32)
    check_shape(op, "argmax", argmax, pshape)
    for name, a in (("gamma", gamma), ("save_mean", save_mean), ("save_invstd", save_invstd)):
        _channel_vec(op, name, a, c, x.shape)
    if not isinstance(relu, (bool, np.bool_)):
        raise TypeError(f"{op}: relu must be a bool, got {relu!r}")
    dev = _on_device(op, gy, y, argmax, x, gamma, save_mean, save_invstd, gx, ggamma, gbeta)
    gx = check_out(op, "gx", gx, x.shape, like=x)
    ggamma = check_out(op, "ggamma", ggamma, (c,), like=x)
    gbeta = check_out(op, "gbeta", gbeta, (c,), like=x)
    if dev:
        from numba import cuda
        from .activations import relu_backward
        from .batchnorm import batchnorm2d_backward
        from .pool import max_pool2d_backward
        g = max_pool2d_backward(gy, argmax, x.shape, gx=gx)
        if relu:  # the mask is y > 0 at each window's argmax cell: rebuild the ReLU output there
            z = max_pool2d_backward(y, argmax, x.shape, gx=cuda.device_array(x.shape, np.float32))
            relu_backward(g, z, z, gx=g)
        return batchnorm2d_backward(g, x, gamma, save_mean, save_invstd, gx=gx, ggamma=ggamma, gbeta=gbeta)
    for name, a in (("x", x), ("gy", gy), ("y", y)):  # gx is written while all three are read
        if np.may_share_memory(gx, a):
            raise ValueError(f"{op}: gx must not overlap {name} (x shape {tuple(x.shape)})")
    bad = bn_relu_pool_bwd_cpu(gy, y, argmax, x, gamma, save_mean, save_invstd, bool(relu), gx, ggamma, gbeta)
    if bad:
        raise ValueError(f"{op}: argmax holds {bad} indices outside [0, {h * w}) for x of shape {tuple(x.shape)}")
    return gx, ggamma, gbeta
