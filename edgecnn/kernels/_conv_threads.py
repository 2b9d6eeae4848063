"""Coarse parallelism for conv (and split dense products): one slice of the batch per thread, one
join per call.

Why not prange + threaded BLAS: a chunked im2col/GEMM pipeline makes hundreds of parallel
regions and BLAS calls per conv, and every one ends in a barrier. On a quiet machine that costs
a little; on a shared, oversubscribed one (the normal case here) a barrier waits for a
descheduled thread and measured 20x-50x slow-downs. So conv splits the batch into as many
contiguous slices as Numba has threads, runs serial (nogil) Numba kernels and single-threaded
OpenBLAS GEMMs on each slice in persistent worker threads, and synchronises once.

The hand-offs do not go through the kernel's futexes alone: waking a sleeping thread costs 50-100 us
on a VM, twice per call (the worker's start, the caller's return), and a ThreadPoolExecutor call
with no work took 62-92 us. Here the caller waits for the workers in compiled code without the GIL
(PAUSE, then sched_yield), and a worker waits for its next slice the same way for WORKER_SPIN_US
before it sleeps on a condition (consecutive convs of a backward pass come that close).

OpenBLAS is told to use one thread for the duration of the call (through the same C entry points
threadpoolctl uses, see edgecnn._blas), and its previous setting is restored.
If no OpenBLAS is found (NumPy on MKL or Accelerate) conv still works, only less predictably.
"""
import atexit
import os
import threading
import time

import numba
import numpy as np

from .._atomics import atomic_load, atomic_store
from .._blas import numpy_openblas
from .._jit import njit
from .._spin_pool import _idle_round, _load, _wait_change

_lock = threading.Lock()
_blas_depth = 0  # conv calls in flight (any thread)
_blas_prev = None
WORKER_SPIN_US = 300.0
_SLOT = 8  # int64s per worker in the control array: one 64-byte line each
SEQ, DONE, SLEEPING = 0, 1, 2  # per-worker slots: job number posted, job number finished, asleep
_STOP = -1
_MAX_WORKERS = 1024


@njit
def _wait_reach(ctl, i, target, rounds):
    """True once ctl[i] == target, False after ``rounds`` idle rounds without it."""
    for _ in range(rounds):
        if atomic_load(ctl, i) == target:
            return True
        _idle_round()
    return atomic_load(ctl, i) == target


@njit
def _store(ctl, i, v):
    atomic_store(ctl, i, v)


class _Workers:
    """Threads that run fn(part, lo, hi) for run_parts; part 0 runs on the caller."""

    def __init__(self):
        self.pid = os.getpid()
        self.ctl = np.zeros(_SLOT * (_MAX_WORKERS + 1), np.int64)  # slot 0 unused
        self.cond = threading.Condition()
        self.jobs = []
        self.errors = []
        self.threads = []
        self.seq = 0
        self.busy = threading.Lock()
        _wait_change(self.ctl, 0, -2, 1)  # compile (or load) the waits here, not in a worker
        _wait_reach(self.ctl, 0, -2, 1)
        t = time.perf_counter()
        _wait_change(self.ctl, 0, 0, 2000)  # slot 0 stays 0: 2000 idle rounds
        per = (time.perf_counter() - t) / 2000
        self.rounds = max(1000, int(WORKER_SPIN_US * 1e-6 / max(per, 1e-10)))

    def ensure(self, n):
        while len(self.threads) < n:
            w = len(self.threads)
            self.jobs.append(None)
            self.errors.append(None)
            t = threading.Thread(target=self._main, args=(w,), name=f"edgecnn-conv-{w}", daemon=True)
            t.start()
            self.threads.append(t)

    def _main(self, w):
        ctl, base = self.ctl, (w + 1) * _SLOT
        seen = 0
        while True:
            seq = _wait_change(ctl, base + SEQ, seen, self.rounds)
            if seq == seen:
                with self.cond:
                    _store(ctl, base + SLEEPING, 1)
                    while _load(ctl, base + SEQ) == seen:
                        self.cond.wait()
                    _store(ctl, base + SLEEPING, 0)
                continue
            if seq == _STOP:
                return
            seen = seq
            fn, part, lo, hi = self.jobs[w]
            self.jobs[w] = None
            try:
                fn(part, lo, hi)
            except BaseException as e:  # handed to the caller, which re-raises it
                self.errors[w] = e
            _store(ctl, base + DONE, seq)

    def stop(self):
        """End the worker threads (at exit: none is left spinning while the interpreter shuts down)."""
        if self.pid != os.getpid():
            return
        for w in range(len(self.threads)):
            _store(self.ctl, (w + 1) * _SLOT + SEQ, _STOP)
        with self.cond:
            self.cond.notify_all()

    def run(self, fn, bounds):
        """fn(p, *bounds[p]) for every p, p = 0 on this thread; returns False (nothing done) when
        another thread is using the workers."""
        if not self.busy.acquire(blocking=False):
            return False
        try:
            n = len(bounds) - 1
            self.ensure(n)
            self.seq += 1
            seq = self.seq
            wake = False
            for w in range(n):
                self.jobs[w] = (fn, w + 1) + tuple(bounds[w + 1])
                self.errors[w] = None
                base = (w + 1) * _SLOT
                _store(self.ctl, base + SEQ, seq)
                wake = wake or _load(self.ctl, base + SLEEPING) == 1
            if wake:
                with self.cond:
                    self.cond.notify_all()
            err = None
            try:
                fn(0, *bounds[0])
            except BaseException as e:  # still wait for the workers: they write into our outputs
                err = e
            for w in range(n):
                while not _wait_reach(self.ctl, (w + 1) * _SLOT + DONE, seq, self.rounds):
                    time.sleep(0.0002)  # a worker is descheduled or in a long slice: stop spinning
                err = err or self.errors[w]
            if err is not None:
                raise err
            return True
        finally:
            self.busy.release()


_workers = None


def _get_workers():
    global _workers
    with _lock:
        # A forked child inherits the object but not its threads: make new ones there.
        if _workers is None or _workers.pid != os.getpid():
            _workers = _Workers()
            atexit.register(_workers.stop)
        return _workers


def _find_openblas():
    return numpy_openblas()


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
    """Call fn(part, lo, hi) on ``parts`` contiguous slices of range(N); part 0 on this thread. When
    another thread is running parts already, this call's parts run one after another here."""
    bounds = [(p * N // parts, (p + 1) * N // parts) for p in range(parts)]
    _blas_single(True)
    try:
        if parts == 1 or parts > _MAX_WORKERS + 1 or not _get_workers().run(fn, bounds):
            for p, (lo, hi) in enumerate(bounds):
                fn(p, lo, hi)
    finally:
        _blas_single(False)
