"""CUDA twins of edgecnn.kernels.losses, fused with the gradient w.r.t. the input.

One thread per row (softmax cross-entropy) or per element (BCE, MSE) writes its gradient and its loss
term into a scratch vector; a two-pass block reduction (``_reduce.device_sum``, fixed order, no
atomics) sums the terms. The entry points return the loss as a Python float like the CPU ones (one
4-byte copy to the host, which synchronizes); pass ``loss_out`` (a (1,) device array) to keep the mean
loss on the device instead, as a device-resident training loop wants. Labels are not range-checked
up front (that would cost a copy and a sync every step): a label outside [0, K) makes its row's loss
and gradient NaN, and the float-returning path then checks the labels and raises ValueError.
"""
import math

import numpy as np
from numba import cuda

from ..._jit import cuda_jit
from . import _device, _launch, _reduce

_F0 = np.float32(0.0)
_F1 = np.float32(1.0)


@cuda_jit
def softmax_xent_cuda(logits, labels, scale, grad, terms):
    """Row n: terms[n] = logsumexp(z) - z[label]; grad = (softmax(z) - onehot) * scale (scale = 1/N).
    A label outside [0, K) gives a NaN loss term and a NaN gradient row, never an out-of-range read."""
    n = cuda.grid(1)
    if n < logits.shape[0]:
        K = logits.shape[1]
        lab = labels[n]
        m = logits[n, 0]
        for k in range(1, K):
            if logits[n, k] > m:
                m = logits[n, k]
        s = _F0
        for k in range(K):
            s += math.exp(logits[n, k] - m)
        if lab < 0 or lab >= K:
            nan = np.float32(math.nan)
            terms[n] = nan
            for k in range(K):
                grad[n, k] = nan
            return
        terms[n] = (m - logits[n, lab]) + math.log(s)  # not (m + log s) - z: exact for |z| ~ 1e4
        inv = _F1 / s
        for k in range(K):
            p = math.exp(logits[n, k] - m) * inv
            grad[n, k] = (p - _F1 if k == lab else p) * scale


@cuda_jit
def bce_logits_cuda(z, t, scale, grad, terms):
    """terms = max(z, 0) - z*t + log1p(exp(-|z|)); grad = (sigmoid(z) - t) * scale."""
    i = cuda.grid(1)
    if i < z.shape[0]:
        v = z[i]
        tv = t[i]
        e = math.exp(-abs(v))
        terms[i] = (v if v > _F0 else _F0) - v * tv + math.log1p(e)
        sig = _F1 / (_F1 + e) if v >= _F0 else e / (_F1 + e)
        grad[i] = (sig - tv) * scale


@cuda_jit
def mse_cuda(pred, target, scale, grad, terms):
    """terms = (p - t)^2; grad = 2 (p - t) * scale."""
    i = cuda.grid(1)
    if i < pred.shape[0]:
        d = pred[i] - target[i]
        terms[i] = d * d
        grad[i] = np.float32(2.0) * d * scale


@cuda_jit
def scale_cuda(x, s):
    if cuda.grid(1) == 0:
        x[0] = x[0] * s


def _finish(terms, count, loss_out):
    out = _device.scratch("loss", (1,)) if loss_out is None else _device.as_device(loss_out)
    total = _reduce.device_sum(terms, out)
    scale_cuda[1, 1](total, np.float32(1.0 / count))
    return total if loss_out is not None else float(total.copy_to_host()[0])


def softmax_cross_entropy(logits, labels, grad=None, loss_out=None):
    logits, labels = _device.as_device(logits), _device.as_device(labels)
    n = logits.shape[0]
    grad = _device.out_or_empty(grad, logits.shape)
    terms = _device.scratch("loss terms", (n,))
    softmax_xent_cuda[_launch.grid1d(n)](logits, labels, np.float32(1.0 / n), grad, terms)
    loss = _finish(terms, n, loss_out)
    if loss_out is None and math.isnan(loss):
        # a NaN is either from the logits or from a label out of range: only now look at the labels
        lab = labels.copy_to_host()
        k = logits.shape[1]
        if lab.min() < 0 or lab.max() >= k:
            raise ValueError(f"softmax_cross_entropy: labels must be in [0, {k}) for logits of shape "
                             f"{tuple(logits.shape)}, got values from {lab.min()} to {lab.max()}")
    return loss, grad


def _elementwise(kernel, a, b, grad, loss_out):
    a, b = _device.as_device(a), _device.as_device(b)
    grad = _device.out_or_empty(grad, a.shape)
    size = a.size
    terms = _device.scratch("loss terms", (size,))
    kernel[_launch.grid1d(size)](_device.flat(a), _device.flat(b), np.float32(1.0 / size),
                                 _device.flat(grad), terms)
    return _finish(terms, size, loss_out), grad


def bce_with_logits(logits, targets, grad=None, loss_out=None):
    return _elementwise(bce_logits_cuda, logits, targets, grad, loss_out)


def mse_loss(pred, target, grad=None, loss_out=None):
    return _elementwise(mse_cuda, pred, target, grad, loss_out)


def ptx_cases():
    z = np.zeros((2, 3), np.float32)
    f = np.zeros(3, np.float32)
    s = np.float32(0.5)
    return [(softmax_xent_cuda, (z, np.zeros(2, np.int32), s, z, f)),
            (softmax_xent_cuda, (z, np.zeros(2, np.int64), s, z, f)),
            (bce_logits_cuda, (f, f, s, f, f)), (mse_cuda, (f, f, s, f, f)),
            (scale_cuda, (f, s)), (_reduce.sum_chunks_cuda, (f, 3, f))]
