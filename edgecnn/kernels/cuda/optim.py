"""CUDA twins of the optimizer updates in edgecnn.optim (PyTorch's SGD / Adam / AdamW rules).

One thread per parameter element, in place, over flat views; arguments as edgecnn.optim's
``_sgd_range`` / ``_adam_range`` minus the range (scalars already float32, computed in Python as the
CPU optimizers do), so ``Optimizer.step`` can dispatch per parameter with one line. With parameters,
gradients and state on the device, a training step never copies them to the host.
"""
import math

import numpy as np
from numba import cuda

from ..._jit import cuda_jit
from ...optim import FLUSH_BELOW  # the CPU rule: tiny state values flushed to 0, bit for bit
from . import _device, _launch

_ZERO = np.float32(0.0)


@cuda_jit
def sgd_update_cuda(p, g, buf, lr, momentum, one_m_damp, wd, nesterov, first):
    i = cuda.grid(1)
    if i < p.shape[0]:
        d = g[i] + wd * p[i]
        if momentum != 0:
            if first:
                b = d
            else:
                b = momentum * buf[i] + one_m_damp * d
            b = b if abs(b) >= FLUSH_BELOW else _ZERO
            buf[i] = b
            if nesterov:
                d = d + momentum * b
            else:
                d = b
        p[i] = p[i] - lr * d


@cuda_jit
def adam_update_cuda(p, g, m, v, b1, one_m_b1, b2, one_m_b2, step_size, inv_sqrt_bc2, eps, wd, decay):
    i = cuda.grid(1)
    if i < p.shape[0]:
        gi = g[i] + wd * p[i]  # L2 (Adam's weight_decay); wd = 0 for AdamW
        mi = b1 * m[i] + one_m_b1 * gi
        vi = b2 * v[i] + one_m_b2 * gi * gi
        mi = mi if abs(mi) >= FLUSH_BELOW else _ZERO
        vi = vi if vi >= FLUSH_BELOW else _ZERO
        m[i] = mi
        v[i] = vi
        p[i] = p[i] * decay - step_size * mi / (math.sqrt(vi) * inv_sqrt_bc2 + eps)


def _flat(a):
    return _device.flat(_device.as_device(a))


def sgd_update(p, g, buf, lr, momentum, one_m_damp, wd, nesterov, first):
    pf = _flat(p)
    sgd_update_cuda[_launch.grid1d(pf.shape[0])](pf, _flat(g), _flat(buf), lr, momentum, one_m_damp, wd,
                                                 bool(nesterov), bool(first))


def adam_update(p, g, m, v, b1, one_m_b1, b2, one_m_b2, step_size, inv_sqrt_bc2, eps, wd, decay):
    pf = _flat(p)
    adam_update_cuda[_launch.grid1d(pf.shape[0])](pf, _flat(g), _flat(m), _flat(v), b1, one_m_b1, b2,
                                                  one_m_b2, step_size, inv_sqrt_bc2, eps, wd, decay)


def ptx_cases():
    f = np.zeros(4, np.float32)
    s = np.float32(0.5)
    return [(sgd_update_cuda, (f, f, f, s, s, s, s, True, False)),
            (adam_update_cuda, (f, f, f, f, s, s, s, s, s, s, s, s, s))]
