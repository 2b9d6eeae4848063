"""CUDA twins of edgecnn.kernels.batchnorm (NCHW, per channel), in two launches per pass.

* statistics: one block of REDUCE threads per channel; each thread sums its strided share of the
  channel's N*H*W values, then a fixed-order tree (``_reduce.block_sum``). Two passes over the data
  (mean, then the mean squared deviation) as the float32 CPU kernels do, for accuracy. Thread 0 writes
  save_mean / save_invstd and updates the running statistics (unbiased variance, PyTorch semantics).
* normalize / input gradient: one thread per element.
The reductions are deterministic (no atomics). Arrays are viewed as (N, C, H*W).
"""
import math

import numpy as np
from numba import cuda

from ..._jit import cuda_jit
from . import _device, _launch
from ._reduce import block_sum

_F0 = np.float32(0.0)
_R = _launch.MAX_REDUCE  # a global int: a compile-time constant for the shared array size
_F1 = np.float32(1.0)


@cuda_jit(device=True)
def _channel_sum(x3, c, shift, square):
    """This thread's share of sum over (n, i) of x3[n, c, i] - shift (squared if asked)."""
    N, _, HW = x3.shape
    acc = _F0
    j = cuda.threadIdx.x
    while j < N * HW:
        v = x3[j // HW, c, j % HW] - shift
        acc += v * v if square else v
        j += cuda.blockDim.x
    return acc


@cuda_jit
def bn_stats_cuda(x3, momentum, eps, update, running_mean, running_var, save_mean, save_invstd):
    buf = cuda.shared.array(_R, np.float32)
    c = cuda.blockIdx.x
    N, _, HW = x3.shape
    count = N * HW
    mean = block_sum(buf, _channel_sum(x3, c, _F0, False)) / np.float32(count)
    var = block_sum(buf, _channel_sum(x3, c, mean, True)) / np.float32(count)
    if cuda.threadIdx.x == 0:
        save_mean[c] = mean
        save_invstd[c] = _F1 / math.sqrt(var + eps)
        if update:
            unbias = np.float32(count) / np.float32(count - 1 if count > 1 else 1)
            running_mean[c] = (_F1 - momentum) * running_mean[c] + momentum * mean
            running_var[c] = (_F1 - momentum) * running_var[c] + momentum * var * unbias


@cuda_jit
def bn_running_params_cuda(running_mean, running_var, eps, save_mean, save_invstd):
    """Inference: the running statistics as (mean, invstd)."""
    c = cuda.grid(1)
    if c < running_mean.shape[0]:
        save_mean[c] = running_mean[c]
        save_invstd[c] = _F1 / math.sqrt(running_var[c] + eps)


@cuda_jit
def bn_apply_cuda(x3, mean, invstd, gamma, beta, y3):
    N, C, HW = x3.shape
    i = cuda.grid(1)
    if i < N * C * HW:
        n = i // (C * HW)
        c = (i // HW) % C
        j = i % HW
        y3[n, c, j] = (x3[n, c, j] - mean[c]) * (gamma[c] * invstd[c]) + beta[c]


@cuda_jit
def bn_bwd_reduce_cuda(gy3, x3, save_mean, save_invstd, ggamma, gbeta):
    """gbeta[c] = sum gy; ggamma[c] = sum gy * xhat, one block per channel."""
    buf = cuda.shared.array(_R, np.float32)
    c = cuda.blockIdx.x
    N, _, HW = x3.shape
    m = save_mean[c]
    sg = _F0
    sgx = _F0
    j = cuda.threadIdx.x
    while j < N * HW:
        g = gy3[j // HW, c, j % HW]
        sg += g
        sgx += g * (x3[j // HW, c, j % HW] - m)
        j += cuda.blockDim.x
    tg = block_sum(buf, sg)
    tgx = block_sum(buf, sgx)
    if cuda.threadIdx.x == 0:
        gbeta[c] = tg
        ggamma[c] = tgx * save_invstd[c]


@cuda_jit
def bn_bwd_input_cuda(gy3, x3, gamma, save_mean, save_invstd, ggamma, gbeta, gx3):
    """gx = gamma * invstd * (gy - gbeta/M - (x - mean) * ggamma/M * invstd), M = N*H*W (the CPU's
    grouping of the same formula)."""
    N, C, HW = x3.shape
    i = cuda.grid(1)
    if i < N * C * HW:
        n = i // (C * HW)
        c = (i // HW) % C
        j = i % HW
        inv_m = _F1 / np.float32(N * HW)
        s = save_invstd[c]
        mg = ggamma[c] * inv_m * s
        gx3[n, c, j] = gamma[c] * s * (gy3[n, c, j] - gbeta[c] * inv_m - (x3[n, c, j] - save_mean[c]) * mg)


# ------------------------------------------------------------------------------------------ entry points
def _3d(a):
    n, c, h, w = a.shape
    return a.reshape(n, c, h * w)


def batchnorm2d_forward(x, gamma, beta, running_mean, running_var, training=True, momentum=0.1, eps=1e-5,
                        out=None, save_mean=None, save_invstd=None):
    x, gamma, beta, running_mean, running_var = (_device.as_device(a) for a in
                                                 (x, gamma, beta, running_mean, running_var))
    c = x.shape[1]
    out = _device.out_or_empty(out, x.shape)
    save_mean = _device.out_or_empty(save_mean, (c,))
    save_invstd = _device.out_or_empty(save_invstd, (c,))
    if training:  # running_mean / running_var None: no update (as on the CPU)
        update = running_mean is not None
        rm, rv = (running_mean, running_var) if update else (_device.dummy(), _device.dummy())
        bn_stats_cuda[_launch.grid_reduce(c)](_3d(x), np.float32(momentum), np.float32(eps), update, rm, rv,
                                              save_mean, save_invstd)
    else:
        bn_running_params_cuda[_launch.grid1d(c)](running_mean, running_var, np.float32(eps), save_mean,
                                                  save_invstd)
    bn_apply_cuda[_launch.grid1d(x.size)](_3d(x), save_mean, save_invstd, gamma, beta, _3d(out))
    return out, save_mean, save_invstd


def batchnorm2d_backward(gy, x, gamma, save_mean, save_invstd, gx=None, ggamma=None, gbeta=None):
    gy, x, gamma, save_mean, save_invstd = (_device.as_device(a) for a in (gy, x, gamma, save_mean,
                                                                           save_invstd))
    c = x.shape[1]
    gx = _device.out_or_empty(gx, x.shape)
    ggamma = _device.out_or_empty(ggamma, (c,))
    gbeta = _device.out_or_empty(gbeta, (c,))
    bn_bwd_reduce_cuda[_launch.grid_reduce(c)](_3d(gy), _3d(x), save_mean, save_invstd, ggamma, gbeta)
    bn_bwd_input_cuda[_launch.grid1d(x.size)](_3d(gy), _3d(x), gamma, save_mean, save_invstd, ggamma, gbeta,
                                              _3d(gx))
    return gx, ggamma, gbeta


def ptx_cases():
    x = np.zeros((2, 3, 4), np.float32)
    v = np.zeros(3, np.float32)
    f = np.float32(0.1)
    return [(bn_stats_cuda, (x, f, f, True, v, v, v, v)), (bn_running_params_cuda, (v, v, f, v, v)),
            (bn_apply_cuda, (x, v, v, v, v, x)), (bn_bwd_reduce_cuda, (x, x, v, v, v, v)),
            (bn_bwd_input_cuda, (x, x, v, v, v, v, v, x))]
