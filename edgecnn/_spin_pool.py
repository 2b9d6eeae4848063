"""A thread pool for the filter kernels whose idle workers spin briefly before they sleep.

Why not Numba's OpenMP pool: edgecnn runs it with OMP_WAIT_POLICY=passive (see _jit.py), and
waking a sleeping OpenMP worker costs 50-100 us per parallel region on a VM, more than most
640x480 filters take. Spinning OpenMP workers would fix that but take the core from everything
else (training's conv threads, other processes), because the setting is process-wide.

Here a call is split into row chunks that the caller and the workers claim one at a time from
a shared counter (compare-and-swap), so:
* a worker that is still spinning from the last call joins within ~2 us;
* the caller never waits for a wake-up or for a descheduled worker: it runs the unclaimed
  chunks itself and only waits for chunks a worker has already started;
* a worker spins for SPIN_US after its last chunk, then sleeps on a condition variable; a call
  that finds it asleep wakes it afterwards, ready for the next call.

Workers never touch the GIL while serving: each kernel gets a compiled serve loop that reads the
job's array addresses from the control array and runs the kernel's serial variant on the chunks
it claims. A job for another kernel makes the loop return to Python once, to switch loops.

Kernels must take (src, *args, out, nchunks) and process the chunks [first, stop) of total,
packed as nchunks = total | first << 16 | stop << 32 (see _filter_kernels.chunk_first/_stop).
"""
import atexit
import hashlib
import itertools
import os
import threading
import time
import types as pytypes

import numba
import numpy as np

from . import _atomics
from ._atomics import (address_as_pointer, atomic_add, atomic_cas, atomic_load, atomic_store, os_yield,
                       spin_pause)
from ._jit import njit

# Control slots, one cache line apart (the caller and the workers write different ones).
SEQ, NEXT, FIN, CALL, SRC, OUT, TOTAL, SLEEPERS, NWORK = (8 * i for i in range(9))
CTL_SIZE = 8 * 9
IDLE, OTHER, STOP = 0, 1, 2  # how a worker's serve loop ended
SPIN_US = 300.0  # after a call; covers the gaps between the filter calls of one frame


@njit
def _load(ctl, i):
    return atomic_load(ctl, i)


@njit
def _add(ctl, i, v):
    return atomic_add(ctl, i, v)


@njit
def _idle_round():
    """One round of waiting: a few PAUSEs, then give the core to any other runnable thread (a
    spinning OpenCV worker, say: two spinners that never yield take turns only at scheduler
    ticks, milliseconds apart)."""
    for _ in range(4):
        spin_pause()
    os_yield()


@njit
def _wait_change(ctl, i, seen, spins):
    """Spin until ctl[i] != seen (returns it) or ``spins`` rounds pass (returns ctl[i]). Also used by
    the conv workers (edgecnn.kernels._conv_threads)."""
    for _ in range(spins):
        v = atomic_load(ctl, i)
        if v != seen:
            return v
        _idle_round()
    return atomic_load(ctl, i)


@njit
def _wait_finished(ctl, total, spins):
    for _ in range(spins):
        if atomic_load(ctl, FIN) >= total:
            return True
        _idle_round()
    return atomic_load(ctl, FIN) >= total


@njit
def _claim(ctl, seq, total):
    """The next unclaimed chunk of job ``seq``, or -1 when none is left (or the job is over)."""
    while True:
        v = atomic_load(ctl, NEXT)
        c = v & 0xFFFF
        if (v >> 16) != seq or c >= total:
            return -1
        if atomic_cas(ctl, NEXT, v, v + 1) == v:
            return c


def _work(ctl, seq, total, src, fixed, out):
    """Run chunks of job ``seq`` until none is left to claim."""
    n = 0
    while True:
        c = _claim(ctl, seq, total)
        if c < 0:
            return n
        KERNEL(src, *fixed, out, total | (c << 16) | ((c + 1) << 32))  # noqa: F821 (bound per kernel)
        atomic_add(ctl, FIN, 1)
        n += 1


def _run_job(ctl, seq, call, src, fixed, out, total, nwork, spins):
    """The caller's side of one call, in one compiled function (each dispatch from Python costs
    about a microsecond): describe job ``seq``, open its chunks, announce it (in that order: a
    worker that sees SEQ finds the rest in place), run chunks until none is left, then wait for
    the chunks workers have started. Returns how many workers were asleep (the caller wakes them
    afterwards, for the next call: waking takes longer than a chunk), or -1 if the wait outlasted
    ``spins`` rounds (the caller then waits with the GIL released)."""
    atomic_store(ctl, FIN, 0)
    atomic_store(ctl, CALL, call)
    atomic_store(ctl, SRC, src.ctypes.data)
    atomic_store(ctl, OUT, out.ctypes.data)
    atomic_store(ctl, TOTAL, total)
    atomic_store(ctl, NWORK, nwork)
    atomic_store(ctl, NEXT, seq << 16)
    atomic_store(ctl, SEQ, seq)
    sleepers = atomic_load(ctl, SLEEPERS)
    WORK(ctl, seq, total, src, fixed, out)  # noqa: F821 (bound per kernel)
    for _ in range(spins):
        if atomic_load(ctl, FIN) >= total:
            return sleepers
        _idle_round()
    return sleepers if atomic_load(ctl, FIN) >= total else -1


def _serve(ctl, seen, spins, index, call, src_like, fixed, out_like):
    """A worker's loop for one bound call: run the chunks it can claim of every job for ``call``.
    Returns (IDLE, last job seen) after ``spins`` idle rounds, (OTHER, seq) at a job for another
    call, or (STOP, seq)."""
    idle = 0
    while idle < spins:
        v = atomic_load(ctl, SEQ)
        if v == seen:
            _idle_round()
            idle += 1
            continue
        if v < 0:
            return STOP, v
        if atomic_load(ctl, CALL) != call:
            return OTHER, v
        if index < atomic_load(ctl, NWORK):
            total = atomic_load(ctl, TOTAL)
            src = numba.carray(address_as_pointer(atomic_load(ctl, SRC), src_like), src_like.shape)
            out = numba.carray(address_as_pointer(atomic_load(ctl, OUT), out_like), out_like.shape)
            WORK(ctl, v, total, src, fixed, out)  # noqa: F821 (bound per kernel)
        seen = v
        idle = 0
    return IDLE, seen


_LOOPS = {}
_LOOPS_LOCK = threading.Lock()


def _source_tag():
    """A digest of this module and _atomics: part of the loops' names, so their disk cache is
    never reused across changes to this code."""
    h = hashlib.sha1()
    for mod in (__file__, _atomics.__file__):
        with open(mod, "rb") as f:
            h.update(f.read())
    return h.hexdigest()[:10]


_TAG = _source_tag()


def _rebind(f, name, env, kernel):
    """f compiled with the globals ``env`` under ``name``, filed (for Numba's disk cache) as if it
    were defined in the kernel's module. Numba invalidates a cache entry only when the source
    file of the cached function itself changes, not the files of what it calls: filed under this
    module, a loop would keep running a kernel compiled before the kernel's file was edited."""
    code = f.__code__.replace(co_name=name, co_qualname=name,
                              co_filename=kernel.py_func.__code__.co_filename)
    g = pytypes.FunctionType(code, env, name)
    g.__qualname__ = name
    return njit(g)


def loops(kernel):
    """(run_job, serve) compiled for ``kernel`` (a serial Numba dispatcher); distinct names keep
    the on-disk caches of different kernels apart."""
    name = kernel.py_func.__name__
    with _LOOPS_LOCK:
        pair = _LOOPS.get(name)
        if pair is None:
            env = dict(globals(), KERNEL=kernel)
            tag = f"{name}_{_TAG}"
            env["WORK"] = _rebind(_work, "spin_work_" + tag, env, kernel)
            pair = (_rebind(_run_job, "spin_run_" + tag, env, kernel),
                    _rebind(_serve, "spin_serve_" + tag, env, kernel))
            _LOOPS[name] = pair
        return pair


_nthreads = []  # numba's C getter for the calling thread's count (numba.get_num_threads costs 2-10 us)


def thread_count():
    """numba.get_num_threads() for the calling thread, cheaply (it is asked once per parallel call)."""
    if not _nthreads:
        numba.get_num_threads()  # starts the pool: the getter below is valid from here on
        try:
            from numba.np.ufunc.parallel import _get_num_threads
            _nthreads.append(_get_num_threads)
        except ImportError:  # private name moved: the public (slower) call
            _nthreads.append(numba.get_num_threads)
    return _nthreads[0]()


_CALL_IDS = itertools.count(1)


def new_call_id():
    """A fresh id for a bound call (one kernel, fixed arguments and array shapes)."""
    return next(_CALL_IDS)


class SpinPool:
    """``run`` splits a kernel call into chunks over the calling thread and the workers."""

    def __init__(self):
        self._pid = None
        self._init()
        if hasattr(os, "register_at_fork"):  # a forked child has the pool's state but not its
            os.register_at_fork(after_in_child=self._init)  # threads (no getpid() per call)

    def _init(self):
        self.ctl = np.zeros(CTL_SIZE, np.int64)
        self._cond = threading.Condition()
        self._busy = threading.Lock()
        self._workers = []
        self._job = None
        self._ready = {}  # call -> (kernel, its run_job, its serve loop), compiled for its arguments
        self._seq = 0
        self._spins = 0
        self._pid = os.getpid()

    def _calibrate(self):
        """Idle rounds in SPIN_US (a PAUSE takes from ~10 to ~150 cycles depending on the CPU)."""
        n = 2000
        _wait_change(self.ctl, SEQ, -2, 10)
        t = time.perf_counter()
        _wait_change(self.ctl, SEQ, _load(self.ctl, SEQ), n)
        per = (time.perf_counter() - t) / n
        self._spins = max(1000, int(SPIN_US * 1e-6 / max(per, 1e-10)))

    def _ensure_workers(self, n):
        while len(self._workers) < n:
            t = threading.Thread(target=self._worker_main, args=(len(self._workers),),
                                 name=f"edgecnn-filter-{len(self._workers)}", daemon=True)
            t.start()
            self._workers.append(t)

    def run(self, call, kernel, src, fixed, out, total, threads):
        """kernel(src, *fixed, out, chunk range) over ``total`` chunks with up to ``threads``
        threads (this one included). ``call`` identifies the bound call (same kernel, fixed
        arguments and array shapes each time). src and out must be C-contiguous. Returns False,
        having done nothing, when the pool is busy with another thread's call."""
        if not 1 <= total <= 0xFFFF:
            raise ValueError(f"SpinPool.run: total must be between 1 and 65535 chunks, got {total}")
        return self.runner(call, kernel, src, fixed, out)(src, out, total, threads)

    def runner(self, call, kernel, src, fixed, out):
        """go(src, out, total, threads): run() for one bound call (the same kernel, fixed
        arguments and array shapes every time), with its lookups done here once. A filter call
        runs right after its frame has streamed through the caches, and each Python step then
        costs ~0.1-0.5 us: the filters keep one of these per bound call."""
        ready = self._ready.get(call)
        if ready is None or ready[0] is not kernel:
            ready = self._prepare(call, kernel, src, fixed, out)
        _, run_job, serve = ready
        pool = self

        def go(src, out, total, threads):
            busy = pool._busy  # read per call: a forked child has new ones (see _init)
            if not busy.acquire(False):
                return False
            try:
                if len(pool._workers) < threads - 1:
                    pool._ensure_workers(threads - 1)
                    if not pool._spins:  # a forked child's first call
                        pool._calibrate()
                seq = pool._seq = pool._seq + 1
                pool._job = (seq, call, serve, src, fixed, out)
                r = run_job(pool.ctl, seq, call, src, fixed, out, total, threads - 1, pool._spins)
                if r:
                    pool._after(r, total)
                return True
            finally:
                busy.release()
        return go

    def _after(self, r, total):
        """The rare ends of a call: wait (without spinning) for a worker still in a chunk
        (descheduled?), and wake the workers that were asleep, for the next call."""
        while r < 0:
            time.sleep(0)
            r = 0 if _wait_finished(self.ctl, total, self._spins) else -1
        if r > 0:
            with self._cond:
                self._cond.notify_all()

    def _prepare(self, call, kernel, src, fixed, out):
        """Compile (or load) the loops for a new call here, not in a worker: compiling holds the
        GIL for up to seconds, and the first timed calls would see a worker-less pool."""
        if not self._spins:
            self._calibrate()
        run_job, serve = loops(kernel)
        serve(self.ctl, -5, 0, 0, call, src, fixed, out)
        if len(self._ready) > 1024:  # one entry per bound call: a folder of odd-sized photos
            self._ready.clear()       # would grow it forever (runners keep their own)
        self._ready[call] = (kernel, run_job, serve)
        return self._ready[call]

    def _worker_main(self, index):
        ctl, seen, serve, args = self.ctl, 0, None, None
        while True:
            if serve is None:
                v = _wait_change(ctl, SEQ, seen, self._spins)
                how = IDLE if v == seen else (STOP if v < 0 else OTHER)
            else:
                how, v = serve(ctl, seen, self._spins, index, *args)
            if how == IDLE:  # nothing for SPIN_US: sleep until the next job
                seen = v
                with self._cond:
                    _add(ctl, SLEEPERS, 1)
                    while _load(ctl, SEQ) == seen:
                        self._cond.wait()
                    _add(ctl, SLEEPERS, -1)
                continue
            if how == STOP:
                return
            job = self._job  # a job for another call: switch to its loop (once)
            seen = job[0] - 1
            serve, args = job[2], (job[1], job[3], job[4], job[5])

    def stop(self):
        if self._pid == os.getpid() and self._workers:
            atomic_stop(self.ctl)
            with self._cond:
                self._cond.notify_all()


@njit
def atomic_stop(ctl):
    atomic_store(ctl, SEQ, -1)


POOL = SpinPool()
atexit.register(POOL.stop)
