"""Losses fused with their gradient w.r.t. the input: one pass computes both.

* softmax_cross_entropy: logits (N, K), integer labels (N,), mean over the batch.
* bce_with_logits: binary cross-entropy on logits, any shape, mean over all elements.
* mse_loss: mean squared error, any shape, mean over all elements.

Each returns (loss as a Python float, grad float32 like the input). ``grad`` may be preallocated, and
may be the input itself (every element is read before it is written). Sums run in float32 in a fixed
order, over blocks of _BLOCK elements then over blocks, which keeps large means accurate.
"""
import numpy as np

from .._jit import njit
from ._common import check_array, check_out, check_shape, is_device_array

_F0 = np.float32(0.0)
_F1 = np.float32(1.0)
_F2 = np.float32(2.0)
_BLOCK = 1024


@njit
def softmax_cross_entropy_fwd_cpu(x, labels, grad):
    """Mean over rows of logsumexp(x_n) - x_n[label_n]; grad = (softmax(x) - onehot) / N."""
    N, K = x.shape
    inv_n = _F1 / np.float32(N)
    total = _F0
    for n in range(N):
        m = x[n, 0]
        for k in range(1, K):
            m = max(m, x[n, k])
        s = _F0
        for k in range(K):
            d = x[n, k] - m
            grad[n, k] = d           # x - m, kept in memory so the loss below is (log s) - (x_l - m)
            s += np.exp(d)
        ls = np.log(s)
        lab = labels[n]
        total += ls - grad[n, lab]
        scale = inv_n / s
        for k in range(K):
            grad[n, k] = np.exp(grad[n, k]) * scale
        grad[n, lab] -= inv_n
    return total * inv_n


@njit
def bce_with_logits_fwd_cpu(x, t, grad):
    """Flat x, t: mean of max(x, 0) - x t + log1p(exp(-|x|)); grad = (sigmoid(x) - t) / size."""
    size = x.size
    inv = _F1 / np.float32(size)
    total = _F0
    for lo in range(0, size, _BLOCK):
        part = _F0
        for i in range(lo, min(size, lo + _BLOCK)):
            v = x[i]
            tv = t[i]
            z = np.exp(-abs(v))
            part += max(v, _F0) - v * tv + np.log1p(z)
            r = _F1 / (_F1 + z)
            sig = r if v >= _F0 else z * r
            grad[i] = (sig - tv) * inv
        total += part
    return total * inv


@njit
def mse_loss_fwd_cpu(p, t, grad):
    """Flat p, t: mean of (p - t)^2; grad = 2 (p - t) / size."""
    size = p.size
    inv = _F1 / np.float32(size)
    total = _F0
    for lo in range(0, size, _BLOCK):
        part = _F0
        for i in range(lo, min(size, lo + _BLOCK)):
            d = p[i] - t[i]
            part += d * d
            grad[i] = _F2 * d * inv
        total += part
    return total * inv


def _on_device(op, *arrays):
    """True when every array given is a CUDA device array (dispatch to edgecnn.kernels.cuda), False when
    all are NumPy arrays; TypeError when they are mixed."""
    dev = [is_device_array(a) for a in arrays if a is not None]
    if any(dev) and not all(dev):
        raise TypeError(f"{op}: the arrays must all be NumPy arrays or all CUDA device arrays")
    return bool(dev) and all(dev)


def softmax_cross_entropy(logits, labels, grad=None):
    """(mean cross-entropy of softmax(logits) against integer labels, d loss / d logits)."""
    op = "softmax_cross_entropy"
    check_array(op, "logits", logits, 2)
    if not (isinstance(labels, np.ndarray) or is_device_array(labels)) \
            or np.dtype(labels.dtype) not in (np.int32, np.int64):
        raise TypeError(f"{op}: labels must be an int32 or int64 array, got "
                        f"{getattr(labels, 'dtype', type(labels).__name__)} "
                        f"with shape {tuple(getattr(labels, 'shape', ()))}")
    check_array(op, "labels", labels, 1, dtype=labels.dtype)
    n, k = logits.shape
    check_shape(op, "labels", labels, (n,))
    dev = _on_device(op, logits, labels, grad)
    grad = check_out(op, "grad", grad, logits.shape, like=logits)
    if dev:   # the twin checks the label range itself (no host copy of the labels)
        from .cuda import losses as _cu
        return _cu.softmax_cross_entropy(logits, labels, grad)
    lo, hi = int(labels.min()), int(labels.max())
    if lo < 0 or hi >= k:
        raise ValueError(f"{op}: labels must be in [0, {k}) for logits of shape {tuple(logits.shape)}, "
                         f"got values from {lo} to {hi}")
    return float(softmax_cross_entropy_fwd_cpu(logits, labels, grad)), grad


def _pair(op, a_name, a, b_name, b, grad):
    check_array(op, a_name, a)
    check_array(op, b_name, b)
    check_shape(op, b_name, b, a.shape)
    dev = _on_device(op, a, b, grad)
    return check_out(op, "grad", grad, a.shape, like=a), dev


def bce_with_logits(logits, targets, grad=None):
    """(mean binary cross-entropy of sigmoid(logits) against targets in [0, 1], d loss / d logits).

    Written as max(x, 0) - x t + log1p(exp(-|x|)): no overflow for any finite logit."""
    op = "bce_with_logits"
    grad, dev = _pair(op, "logits", logits, "targets", targets, grad)
    if dev:
        from .cuda import losses as _cu
        return _cu.bce_with_logits(logits, targets, grad)
    loss = bce_with_logits_fwd_cpu(logits.reshape(-1), targets.reshape(-1), grad.reshape(-1))
    return float(loss), grad


def mse_loss(pred, target, grad=None):
    """(mean of (pred - target)^2 over all elements, d loss / d pred)."""
    op = "mse_loss"
    grad, dev = _pair(op, "pred", pred, "target", target, grad)
    if dev:
        from .cuda import losses as _cu
        return _cu.mse_loss(pred, target, grad)
    return float(mse_loss_fwd_cpu(pred.reshape(-1), target.reshape(-1), grad.reshape(-1))), grad
