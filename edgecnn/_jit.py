"""The only place where Numba decorators are configured.

* ``cache=True`` everywhere: compiled code is written next to the sources (or under NUMBA_CACHE_DIR)
  and reused by the next process.
* fastmath without ``nnan``/``ninf``: reductions may be reassociated and vectorized, but NaN and inf
  checks (``np.isnan``, the training loop's divergence check) keep working.
* ``error_model="numpy"``: no Python-style ZeroDivisionError checks inside hot loops.
* Nothing is compiled at import: signatures are inferred lazily on first call.
"""
import os

# Numba's OpenMP threading layer spins idle workers by default. With other processes on the cores
# (shared hosts, an edge device also running capture and display) a spinning worker takes the core
# from the next parallel call: measured here, three small parallel kernels in a row took 24-36 ms
# spinning vs 4.5-6.8 ms passive. Set before Numba loads libgomp; a user's own setting wins.
# Passive, but with a short spin first: waking a sleeping worker costs 50-100 us on a VM, and a
# training step runs ~19 parallel kernels with tens of microseconds of Python between them. An
# explicit GOMP_SPINCOUNT overrides the passive policy's zero; libgomp counts ~100 spins per us,
# so 3000 is ~30 us (the 24-36 ms above was its default 3 ms). Measured, default model at 2 threads:
# median 3,270 -> 3,700 img/s over five interleaved runs each.
if "OMP_WAIT_POLICY" not in os.environ:
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    os.environ.setdefault("GOMP_SPINCOUNT", "3000")

import numba  # noqa: E402

FASTMATH = frozenset({"nsz", "arcp", "contract", "reassoc"})

_OPTIONS = dict(cache=True, fastmath=set(FASTMATH), error_model="numpy", nogil=True)


def njit(func=None, *, parallel=False, inline="never"):
    """``numba.njit`` with the project's settings; ``parallel=True`` enables ``prange``."""
    def wrap(f):
        return numba.njit(parallel=parallel, inline=inline, **_OPTIONS)(f)
    return wrap if func is None else wrap(func)


def set_num_threads(n):
    """Set the number of threads for parallel kernels (clamped to what Numba started with)."""
    if n is None:
        return numba.get_num_threads()
    n = int(n)
    if n < 1:
        raise ValueError(f"threads must be >= 1, got {n}")
    n = min(n, numba.config.NUMBA_NUM_THREADS)
    numba.set_num_threads(n)
    return n


def get_num_threads():
    return numba.get_num_threads()


def cuda_simulator_enabled():
    return os.environ.get("NUMBA_ENABLE_CUDASIM", "0") == "1"


def cuda_jit(func=None, *, device=False):
    """``numba.cuda.jit`` with the project's settings (imports numba.cuda only when first used).

    fastmath off: no flush-to-zero and IEEE division/sqrt, so GPU results stay within 1e-5 of the CPU
    kernels; cache=True as for the CPU kernels; signatures inferred lazily at the first launch.
    """
    def wrap(f):
        from numba import cuda
        return cuda.jit(device=device, cache=not cuda_simulator_enabled(), fastmath=False)(f)
    return wrap if func is None else wrap(func)
