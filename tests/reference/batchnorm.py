"""float64 batch-norm references from the definitions (per channel over N, H, W)."""
import numpy as np


def _f64(a):
    return np.asarray(a, np.float64)


def _c(v):
    return _f64(v)[None, :, None, None]


def batchnorm2d_train_ref(x, gamma, beta, eps=1e-5):
    """(y, mean, biased var) with batch statistics."""
    x = _f64(x)
    mean = x.mean(axis=(0, 2, 3))
    var = ((x - _c(mean)) ** 2).mean(axis=(0, 2, 3))
    y = (x - _c(mean)) / np.sqrt(_c(var) + eps) * _c(gamma) + _c(beta)
    return y, mean, var


def batchnorm2d_running_ref(running_mean, running_var, mean, var, m, momentum=0.1):
    """PyTorch's update: r = (1 - momentum) r + momentum * stat, the variance unbiased by m / (m - 1)."""
    return ((1 - momentum) * _f64(running_mean) + momentum * mean,
            (1 - momentum) * _f64(running_var) + momentum * var * m / (m - 1))


def batchnorm2d_infer_ref(x, gamma, beta, running_mean, running_var, eps=1e-5):
    return (_f64(x) - _c(running_mean)) / np.sqrt(_c(running_var) + eps) * _c(gamma) + _c(beta)


def batchnorm2d_bwd_ref(gy, x, gamma, eps=1e-5):
    """(gx, ggamma, gbeta) of sum(y * gy) for the training forward, from the chain rule through the
    batch mean and variance."""
    x, gy = _f64(x), _f64(gy)
    m = x.shape[0] * x.shape[2] * x.shape[3]
    _, mean, var = batchnorm2d_train_ref(x, gamma, np.zeros_like(_f64(gamma)), eps)
    invstd = 1.0 / np.sqrt(var + eps)
    xhat = (x - _c(mean)) * _c(invstd)
    gbeta = gy.sum(axis=(0, 2, 3))
    ggamma = (gy * xhat).sum(axis=(0, 2, 3))
    gxhat = gy * _c(gamma)
    gvar = (gxhat * (x - _c(mean))).sum(axis=(0, 2, 3)) * -0.5 * invstd ** 3
    gmean = -(gxhat * _c(invstd)).sum(axis=(0, 2, 3)) + gvar * -2.0 * (x - _c(mean)).sum(axis=(0, 2, 3)) / m
    gx = gxhat * _c(invstd) + _c(gvar) * 2.0 * (x - _c(mean)) / m + _c(gmean) / m
    return gx, ggamma, gbeta
