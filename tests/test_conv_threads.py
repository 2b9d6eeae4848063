"""run_parts (edgecnn.kernels._conv_threads): every slice runs once, errors reach the caller after all
slices finished, concurrent callers, sleeping workers, fork."""
import os
import subprocess
import sys
import threading
import time

import pytest

from edgecnn.kernels import _conv_threads as T


def _record(N, parts):
    seen = []
    lock = threading.Lock()

    def fn(p, lo, hi):
        with lock:
            seen.append((p, lo, hi, threading.get_ident()))
    T.run_parts(fn, N, parts)
    return seen


@pytest.mark.parametrize("parts", [2, 3, 5])
def test_every_slice_runs_once(parts):
    for _ in range(200):  # back to back: workers still spinning from the last call
        seen = _record(101, parts)
        want = [(p, p * 101 // parts, (p + 1) * 101 // parts) for p in range(parts)]
        assert sorted(s[:3] for s in seen) == want
    threads = {s[3] for s in seen}
    assert threading.get_ident() in threads and len(threads) == parts  # part 0 here, the rest on workers


def test_sleeping_workers_wake_up():
    for _ in range(5):
        time.sleep(T.WORKER_SPIN_US * 1e-6 * 3)  # longer than a worker spins: it sleeps on the condition
        assert len(_record(10, 2)) == 2


@pytest.mark.parametrize("failing", [0, 1])
def test_an_error_reaches_the_caller_after_every_slice_finished(failing):
    done = []

    def fn(p, lo, hi):
        if p == failing:
            raise KeyError(f"part {p}")
        time.sleep(0.01)
        done.append(p)
    with pytest.raises(KeyError, match=f"part {failing}"):
        T.run_parts(fn, 30, 3)
    assert sorted(done) == [p for p in range(3) if p != failing]
    assert len(_record(30, 3)) == 3  # the workers are still usable


def test_concurrent_callers():
    errors = []

    def caller(k):
        try:
            for _ in range(100):
                out = [0] * 64

                def fn(p, lo, hi):
                    for i in range(lo, hi):
                        out[i] = i + k
                T.run_parts(fn, 64, 2)
                assert out == [i + k for i in range(64)]
        except BaseException as e:
            errors.append(e)
    ts = [threading.Thread(target=caller, args=(k,)) for k in range(3)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")
def test_after_fork_the_child_gets_its_own_workers():
    code = (
        "import os\n"
        "from edgecnn.kernels import _conv_threads as T\n"
        "seen = []\n"
        "T.run_parts(lambda p, lo, hi: seen.append(p), 8, 2)\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    seen.clear()\n"
        "    T.run_parts(lambda p, lo, hi: seen.append(p), 8, 2)\n"
        "    os._exit(0 if sorted(seen) == [0, 1] else 3)\n"
        "_, status = os.waitpid(pid, 0)\n"
        "raise SystemExit(os.waitstatus_to_exitcode(status))\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
