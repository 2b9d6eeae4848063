"""Timing helpers for noisy shared machines: interleaved repeats, medians, first-call time apart.

The host is shared and its speed drifts within seconds, so the sides of a comparison are timed in
turns (A B A B ..., the order rotated every round so that neither always runs right after the
other), and each side's figure is the median of its rounds. Ratios from one run are meaningful;
absolute times between runs much less so.
"""
import statistics
import time


def first_call(fn):
    """Seconds taken by the first call (JIT compile or on-disk cache load, page faults...)."""
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _inner_count(fn, target):
    """How many calls make one timed sample last about ``target`` seconds (at least 1)."""
    t0 = time.perf_counter()
    fn()
    dt = time.perf_counter() - t0
    return max(1, min(1000, int(target / max(dt, 1e-7))))


def interleaved(fns, repeats=15, warmup=2, target=0.02, settle=0.0):
    """Time every callable in ``fns`` ({name: fn}) in interleaved rounds.

    Each round times every function once (a sample is ``inner`` back-to-back calls, so that fast
    calls are not dominated by timer resolution). ``settle``: seconds of untimed calls before each
    sample, so that a sample measures its library as it runs alone: the threads the previous
    sample's library left spinning would otherwise hold a core (onnxruntime's do for ~40 ms after
    its last call, and edgecnn's inference plan measured 1.75x slower in their wake).
    Returns {name: {"median": s, "min": s, "samples": [s, ...]}} in seconds per call.
    """
    names = list(fns)
    for _ in range(warmup):
        for n in names:
            fns[n]()
    inner = {n: _inner_count(fns[n], target) for n in names}
    samples = {n: [] for n in names}
    for r in range(repeats):
        order = names[r % len(names):] + names[:r % len(names)]
        for n in order:
            fn, k = fns[n], inner[n]
            t_end = time.perf_counter() + settle
            while settle and time.perf_counter() < t_end:
                fn()
            t0 = time.perf_counter()
            for _ in range(k):
                fn()
            samples[n].append((time.perf_counter() - t0) / k)
    return {n: {"median": statistics.median(s), "min": min(s), "samples": s} for n, s in samples.items()}
