"""Coarse parallelism for conv: one slice of the batch per thread, one join per call.

Why not prange + threaded BLAS: a chunked im2col/GEMM pipeline makes hundreds of parallel
regions and BLAS calls per conv, and every one ends in a barrier. On a quiet machine that costs
a little; on a shared, oversubscribed one (the normal case here) a barrier waits for a
descheduled thread and measured 20x-50x slow-downs. So conv splits the batch into as many
contiguous slices as Numba has threads, runs serial (nogil) Numba kernels and single-threaded
OpenBLAS GEMMs on each slice in a persistent thread pool, and synchronises once.

OpenBLAS is told to use one thread for the duration of the call (through the same C entry points
threadpoolctl uses, see edgecnn._blas), and its previous setting is restored.
If no OpenBLAS is found (NumPy on MKL or Accelerate) conv still works, only less predictably.
"""
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numba

from .._blas import numpy_openblas

_lock = threading.Lock()
_pool = None
_pool_size = 0
_pool_pid = None
_blas_depth = 0  # conv calls in flight (any thread)
_blas_prev = None


def _find_openblas():
    return numpy_openblas()


def _executor(workers):
    global _pool, _pool_size, _pool_pid
    with _lock:
        # A forked child inherits the pool object but not its threads: make a new one there.
        if _pool is None or _pool_size != workers or _pool_pid != os.getpid():
            if _pool is not None and _pool_pid == os.getpid():
                _pool.shutdown(wait=True)
            _pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="edgecnn-conv")
            _pool_size, _pool_pid = workers, os.getpid()
        return _pool


def _blas_single(enter):
    """OpenBLAS to 1 thread while any conv call runs; the caller's setting back after the last."""
    global _blas_depth, _blas_prev
    blas = _find_openblas()
    if not blas:
        return
    with _lock:
        if enter:
            if _blas_depth == 0:
                _blas_prev = blas[0]()
                if _blas_prev != 1:
                    blas[1](1)
            _blas_depth += 1
        else:
            _blas_depth -= 1
            if _blas_depth == 0 and _blas_prev not in (None, 1):
                blas[1](_blas_prev)


def n_parts(N, min_per_part=1):
    """How many batch slices to use: Numba's thread count, at most N // min_per_part."""
    return max(1, min(numba.get_num_threads(), N // max(1, min_per_part)))


def run_parts(fn, N, parts):
    """Call fn(part, lo, hi) on ``parts`` contiguous slices of range(N); part 0 on this thread."""
    bounds = [(p * N // parts, (p + 1) * N // parts) for p in range(parts)]
    _blas_single(True)
    try:
        if parts == 1:
            fn(0, 0, N)
            return
        pool = _executor(parts - 1)
        futures = [pool.submit(fn, p, lo, hi) for p, (lo, hi) in enumerate(bounds) if p > 0]
        err = None
        try:
            fn(0, *bounds[0])
        except BaseException as e:  # still wait for the workers: they write into our outputs
            err = e
        for f in futures:
            try:
                f.result()
            except BaseException as e:
                err = err or e
        if err is not None:
            raise err
    finally:
        _blas_single(False)
