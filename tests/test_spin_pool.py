"""edgecnn._spin_pool and edgecnn._atomics: atomic operations, chunk claiming (every chunk runs
exactly once, whoever runs it), sleeping and waking workers, switching kernels, fallbacks, fork."""
import multiprocessing
import threading
import time

import numpy as np
import pytest

from edgecnn import _spin_pool as S
from edgecnn._atomics import atomic_add, atomic_cas, atomic_load, atomic_store
from edgecnn._filter_kernels import _chunk, chunk_first, chunk_stop
from edgecnn._jit import njit


@njit
def _add_rows(src, scale, out, nchunks):
    """out[y] += scale * src[y] over the chunks given: a chunk run twice or never shows."""
    H = out.shape[0]
    for c in range(chunk_first(nchunks), chunk_stop(nchunks)):
        y0, y1 = _chunk(c, nchunks, H)
        for y in range(y0, y1):
            for x in range(out.shape[1]):
                out[y, x] += src[y, x] * scale


@njit
def _count_rows(src, out, nchunks):
    """out[y, 0] += 1 for the rows of the chunks given (a second kernel, other arguments)."""
    H = out.shape[0]
    for c in range(chunk_first(nchunks), chunk_stop(nchunks)):
        y0, y1 = _chunk(c, nchunks, H)
        for y in range(y0, y1):
            out[y, 0] += np.int64(1) + src[y, 0] * 0


@njit
def _hammer(ctl, n):
    for _ in range(n):
        atomic_add(ctl, 0, 1)
    return n


@njit
def _ops(ctl):
    atomic_store(ctl, 1, 5)
    a = atomic_cas(ctl, 1, 4, 9)   # fails: 5 stays
    b = atomic_cas(ctl, 1, 5, 7)   # succeeds: 7
    c = atomic_add(ctl, 1, 3)      # returns 7, leaves 10
    return a, b, c, atomic_load(ctl, 1)


def test_atomic_operations():
    ctl = np.zeros(4, np.int64)
    assert _ops(ctl) == (5, 5, 7, 10)
    assert ctl[1] == 10


def test_atomic_add_loses_no_update_across_threads():
    ctl = np.zeros(8, np.int64)
    n = 200_000
    _hammer(ctl, 1)
    ctl[0] = 0
    threads = [threading.Thread(target=_hammer, args=(ctl, n)) for _ in range(3)]
    for t in threads:
        t.start()
    _hammer(ctl, n)
    for t in threads:
        t.join()
    assert ctl[0] == 4 * n


def test_chunk_range_encoding():
    assert (chunk_first(7), chunk_stop(7)) == (0, 7)          # a plain count: all chunks
    packed = 7 | (3 << 16) | (5 << 32)
    assert (chunk_first(packed), chunk_stop(packed)) == (3, 5)
    assert _chunk(3, packed, 70) == (30, 40)


@pytest.mark.parametrize("total", [1, 2, 3, 16, 37])
def test_every_chunk_runs_exactly_once(total):
    pool = S.SpinPool()
    rng = np.random.default_rng(total)
    src = rng.standard_normal((total * 3 + 1, 5)).astype(np.float32)
    for call in range(200):  # back to back: the worker spins between calls and joins
        out = np.zeros_like(src)
        assert pool.run(1, _add_rows, src, (np.float32(2),), out, total, 2)
        np.testing.assert_array_equal(out, 2 * src)
    pool.stop()


def test_worker_sleeps_when_idle_and_wakes_for_the_next_call():
    pool = S.SpinPool()
    src = np.ones((64, 4), np.float32)
    out = np.zeros_like(src)
    # one call id, one set of fixed arguments (run's contract: a worker woken for call 1 serves it
    # with the arguments it last saw for call 1; with (1,) here and (3,) below, a chunk it got to
    # before the caller finished came out as 1s)
    pool.run(1, _add_rows, src, (np.float32(3),), out, 8, 2)
    np.testing.assert_array_equal(out, 3 * src)
    deadline = time.time() + 10
    while S._load(pool.ctl, S.SLEEPERS) != 1 and time.time() < deadline:
        time.sleep(0.01)  # SPIN_US after the call it goes to sleep
    assert S._load(pool.ctl, S.SLEEPERS) == 1
    for _ in range(20):
        out[:] = 0
        assert pool.run(1, _add_rows, src, (np.float32(3),), out, 8, 2)
        np.testing.assert_array_equal(out, 3 * src)
        time.sleep(0.002)
    pool.stop()


def test_alternating_kernels_and_shapes():
    pool = S.SpinPool()
    a = np.arange(96 * 3, dtype=np.float32).reshape(96, 3)
    b = np.zeros((50, 2), np.int64)
    for i in range(100):
        out_a = np.zeros_like(a)
        pool.run(1, _add_rows, a, (np.float32(-1),), out_a, 12, 2)
        np.testing.assert_array_equal(out_a, -a)
        out_b = np.zeros_like(b)
        pool.run(2, _count_rows, b, (), out_b, 5, 2)
        assert (out_b[:, 0] == 1).all()
    pool.stop()


def test_busy_pool_returns_false_and_does_nothing():
    pool = S.SpinPool()
    src = np.ones((8, 2), np.float32)
    out = np.zeros_like(src)
    with pool._busy:
        assert pool.run(1, _add_rows, src, (np.float32(1),), out, 4, 2) is False
    assert not out.any()


def test_chunk_counts_outside_the_packed_range_are_refused():
    pool = S.SpinPool()
    src = np.ones((8, 2), np.float32)
    for total in (0, 1 << 16):
        with pytest.raises(ValueError, match="total must be between 1 and 65535"):
            pool.run(1, _add_rows, src, (np.float32(1),), np.zeros_like(src), total, 2)


def test_one_thread_runs_everything_on_the_caller():
    pool = S.SpinPool()
    src = np.ones((40, 2), np.float32)
    out = np.zeros_like(src)
    assert pool.run(1, _add_rows, src, (np.float32(5),), out, 10, 1)
    np.testing.assert_array_equal(out, 5 * src)
    assert pool._workers == []


def _child(q):
    src = np.arange(64, dtype=np.float32).reshape(32, 2)
    out = np.zeros_like(src)
    ok = S.POOL.run(S.new_call_id(), _add_rows, src, (np.float32(2),), out, 8, 2)
    q.put(bool(ok and np.array_equal(out, 2 * src)))


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="no fork here")
def test_pool_works_in_a_forked_child():
    src = np.ones((16, 2), np.float32)
    S.POOL.run(S.new_call_id(), _add_rows, src, (np.float32(1),), np.zeros_like(src), 4, 2)  # threads started
    ctx = multiprocessing.get_context("fork")
    q = ctx.Queue()
    p = ctx.Process(target=_child, args=(q,))
    p.start()
    p.join(60)
    assert p.exitcode == 0
    assert q.get(timeout=5) is True


def test_parallel_filter_calls_run_on_the_spin_pool():
    """filters.apply's parallel way uses this pool (not silently the OpenMP fallback), and the
    result equals the serial one."""
    import numba
    from edgecnn import filters as F
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("one thread: filters never run parallel")
    img = np.random.default_rng(2).integers(0, 256, (240, 320), dtype=np.uint8)
    threads = numba.get_num_threads()
    F.set_parallel(False)
    try:
        want = F.apply(img, "sobel_x")
        F.set_parallel("always")
        numba.set_num_threads(2)
        before = S.POOL._seq
        got = F.apply(img, "sobel_x")
    finally:
        F.set_parallel(True)
        numba.set_num_threads(threads)
    assert S.POOL._seq > before
    np.testing.assert_array_equal(got, want)


_KERNEL_SRC = '''
from edgecnn._jit import njit
from edgecnn._filter_kernels import _chunk, chunk_first, chunk_stop


@njit
def scale_rows(src, out, nchunks):
    for c in range(chunk_first(nchunks), chunk_stop(nchunks)):
        y0, y1 = _chunk(c, nchunks, out.shape[0])
        for y in range(y0, y1):
            for x in range(out.shape[1]):
                out[y, x] = src[y, x] * FACTOR
'''

_RUN_SRC = '''
import numpy as np
from edgecnn import _spin_pool as S
import kmod
src = np.ones((64, 8), np.float32)
out = np.zeros_like(src)
assert S.POOL.run(S.new_call_id(), kmod.scale_rows, src, (), out, 8, 2)
print(float(out.min()), float(out.max()))
'''


def test_pool_loops_recompile_when_the_kernels_file_changes(tmp_path):
    """The pool's loops are cached on disk with the kernel compiled in; Numba checks only the
    cached function's own file, so the loops are filed under the kernel's module: editing the
    kernel must not leave the pool running the old one."""
    import os
    import subprocess
    import sys
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"), NUMBA_NUM_THREADS="2",
               PYTHONPATH=str(tmp_path) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    (tmp_path / "run.py").write_text(_RUN_SRC)
    results = []
    for factor, stamp in ((2, 1_000_000_000), (3, 1_000_000_100), (3, 1_000_000_100)):
        kfile = tmp_path / "kmod.py"
        kfile.write_text(f"FACTOR = {factor}\n" + _KERNEL_SRC)
        os.utime(kfile, (stamp, stamp))
        r = subprocess.run([sys.executable, str(tmp_path / "run.py")], env=env, capture_output=True,
                           text=True, timeout=300)
        assert r.returncode == 0, r.stderr[-2000:]
        results.append(r.stdout.split())
    assert results == [["2.0", "2.0"], ["3.0", "3.0"], ["3.0", "3.0"]]
    assert any(p.name.startswith("kmod.spin_run_") for p in (tmp_path / "cache").rglob("*.nbi"))
