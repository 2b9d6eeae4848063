"""Deterministic block reductions: a fixed tree over a shared buffer, no atomics.

Each thread first sums its strided share of the input in index order, then the block folds the
REDUCE partial sums pairwise (tid += tid + s for s = REDUCE/2, ..., 1). The order of additions depends
only on REDUCE and the sizes, so repeated runs give bit-identical results.
"""
import numpy as np
from numba import cuda

from ..._jit import cuda_jit
from . import _device, _launch

_F0 = np.float32(0.0)
_R = _launch.MAX_REDUCE  # a global int: a compile-time constant for the shared array size


@cuda_jit(device=True)
def block_sum(buf, v):
    """Sum ``v`` over the (1-D, power-of-two sized) block; every thread gets the total."""
    tid = cuda.threadIdx.x
    buf[tid] = v
    cuda.syncthreads()
    s = cuda.blockDim.x // 2
    while s > 0:
        if tid < s:
            buf[tid] += buf[tid + s]
        cuda.syncthreads()
        s //= 2
    total = buf[0]
    cuda.syncthreads()  # buf may be reused right after
    return total


@cuda_jit
def sum_chunks_cuda(x, chunk, out):
    """out[b] = sum(x[b*chunk : (b+1)*chunk]) with one block per chunk."""
    buf = cuda.shared.array(_R, np.float32)
    b = cuda.blockIdx.x
    start = b * chunk
    stop = start + chunk if start + chunk < x.shape[0] else x.shape[0]
    acc = _F0
    i = start + cuda.threadIdx.x
    while i < stop:
        acc += x[i]
        i += cuda.blockDim.x
    total = block_sum(buf, acc)
    if cuda.threadIdx.x == 0:
        out[b] = total


def device_sum(x, out=None):
    """Sum of a 1-D float32 device array into a (1,) device array, in two deterministic passes."""
    n = x.shape[0]
    r = _launch.REDUCE
    chunk = r * 8
    blocks = -(-n // chunk)
    if blocks > 1:
        partial = _device.scratch("sum partials", (blocks,))
        sum_chunks_cuda[blocks, r](x, chunk, partial)
        x, n = partial, blocks
    out = _device.empty((1,)) if out is None else out
    sum_chunks_cuda[1, r](x, n, out)
    return out
