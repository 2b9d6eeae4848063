"""float64 activation references from the definitions; backward as d(sum(f(x) * gy))/dx."""
import numpy as np


def _f64(a):
    return np.asarray(a, np.float64)


def relu_ref(x):
    return np.maximum(_f64(x), 0.0)


def relu_bwd_ref(gy, x):
    return _f64(gy) * (_f64(x) > 0)


def leaky_relu_ref(x, alpha=0.01):
    x = _f64(x)
    return np.where(x > 0, x, alpha * x)


def leaky_relu_bwd_ref(gy, x, alpha=0.01):
    return _f64(gy) * np.where(_f64(x) > 0, 1.0, alpha)


def sigmoid_ref(x):
    x = _f64(x)
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def sigmoid_bwd_ref(gy, x):
    s = sigmoid_ref(x)
    return _f64(gy) * s * (1.0 - s)


def tanh_ref(x):
    return np.tanh(_f64(x))


def tanh_bwd_ref(gy, x):
    return _f64(gy) / np.cosh(_f64(x)) ** 2


def identity_ref(x):
    return _f64(x).copy()


def identity_bwd_ref(gy, x):
    return _f64(gy).copy()


def log_softmax_ref(x):
    """log softmax over axis 1: x - logsumexp(x), with the max shifted out first."""
    x = _f64(x)
    m = x.max(axis=1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=1, keepdims=True))


def softmax_ref(x):
    return np.exp(log_softmax_ref(x))


def softmax_bwd_ref(gy, x):
    """The Jacobian diag(s) - s s^T applied to gy, written out per row."""
    s = softmax_ref(x)
    gy = _f64(gy)
    jac = np.einsum("nk,kj->nkj", s, np.eye(s.shape[1])) - np.einsum("nk,nj->nkj", s, s)
    return np.einsum("nkj,nk->nj", jac, gy)


def log_softmax_bwd_ref(gy, x):
    """d log s_k / d x_j = [k == j] - s_j."""
    s = softmax_ref(x)
    gy = _f64(gy)
    return gy - s * gy.sum(axis=1, keepdims=True)
