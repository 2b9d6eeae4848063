"""JIT warm-up for a training run: every run trains on kernels loaded from Numba's disk cache.

Why not compile in the training process itself: a process that compiles a kernel does not always run
the machine code it writes to the cache. Numba compiles a parallel kernel's worker function on its own
and again inside the kernel; the compiling process keeps calling the first copy (already loaded when
the second is linked), a later process loading the cache runs the second. With fastmath reductions the
copies may sum in a different order: BatchNorm's backward gave beta gradients differing in the last
bits, so a run that compiled ended with other weights than the same run with a warm cache, and a run
resumed after a cold start did not match an uninterrupted one. Reloading from the cache in the same
process does not help (the first copy stays loaded), so:

1. the warm-up first runs with compiling forbidden (``cache_only``): everything loads from the cache;
2. when something is missing, a child process (``_CHILD``) runs the same warm-up,
   compiling and writing the cache, and the run then loads what it wrote.

Where the cache cannot be written, the run compiles for itself and says so: such runs still agree with
each other (each runs freshly compiled code), not with runs that load a cache.
"""
import contextlib
import dataclasses
import json
import os
import subprocess
import sys

import numpy as np


class NeedsCompile(RuntimeError):
    """Raised (from Numba's compile event) when cache_only() is active and a kernel is not cached."""


def _name(event):
    return event.data["dispatcher"].py_func.__qualname__


def _listening(on_start):
    """Context manager: on_start(event) before Numba compiles anything inside (it may raise)."""
    from numba.core import event as ev

    class Listener(ev.Listener):
        def on_start(self, event):
            on_start(event)

        def on_end(self, event):
            pass

    return ev.install_listener("numba:compile", Listener())


def _refuse(event):
    raise NeedsCompile(f"{_name(event)} is not in Numba's cache")


def cache_only():
    """Context manager: any Numba compile inside raises NeedsCompile before compiling anything."""
    return _listening(_refuse)


@contextlib.contextmanager
def counting_compiles():
    """Context manager yielding the list of the functions Numba compiles inside (qualified names)."""
    names = []
    with _listening(lambda event: names.append(_name(event))):
        yield names


def warm_job(model_config, config, device):
    """Run every kernel a training run with ``config`` (a resolved TrainConfig) needs once, on a
    throwaway model built from ``model_config``: augmentation, a train step, the optimizer, predict."""
    from . import data as D
    from .graph import Model
    from .train import make_optimizer

    twin = Model.from_config(model_config).to(device)
    opt = make_optimizer(twin, config)
    b = config.batch_size
    x = np.zeros((b,) + tuple(twin.input_shape), np.float32)
    if config.augment:
        u8 = np.zeros((b,) + tuple(twin.input_shape[-2:]), np.uint8)
        D.Augment().apply(u8, out=x, rng=np.random.default_rng(0))
        x[:] = 0
    twin.train_step(x, np.zeros(b, np.int32))
    opt.step()
    twin.predict(x[:min(b, config.eval_batch_size)], batch_size=config.eval_batch_size)


# The child imports edgecnn from the directory the parent's copy was imported from, put first on
# sys.path by hand: ``python -m`` would put the working directory first, and run from a source checkout
# next to an installed edgecnn it imported the checkout and filled another cache than the parent reads.
_CHILD = ("import sys; sys.path.insert(0, sys.argv[1]); "
          "from edgecnn._warm import _main; _main(sys.argv[2])")


def compile_in_child(model_config, config, device, threads, timeout=1800):
    """Run warm_job in a fresh interpreter (the same edgecnn, the same thread count) so that it
    compiles and writes Numba's cache. Returns None on success, else a short reason."""
    import edgecnn
    from ._jit import caching

    if not caching():  # the child could not hand its code over: no need to compile it twice
        return "Numba has no writable cache directory"
    from .train import _jsonable

    spec = json.dumps({"model": model_config, "config": _jsonable(dataclasses.asdict(config)),
                       "device": device, "threads": threads})
    package = os.path.dirname(os.path.abspath(edgecnn.__file__))
    try:
        r = subprocess.run([sys.executable, "-c", _CHILD, os.path.dirname(package), package], input=spec,
                           text=True, capture_output=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"the compile process failed to run: {e}"
    if r.returncode != 0:
        tail = (r.stderr or "").strip().splitlines()[-1:] or [f"exit status {r.returncode}"]
        return f"the compile process failed: {tail[0]}"
    return None


def _main(package=None):
    import edgecnn
    if package is not None and os.path.dirname(os.path.abspath(edgecnn.__file__)) != package:
        raise SystemExit(f"imported edgecnn from {os.path.dirname(edgecnn.__file__)}, not {package}")
    spec = json.loads(sys.stdin.read())
    from ._jit import set_num_threads
    from .train import TrainConfig

    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    config = TrainConfig(**{k: v for k, v in spec["config"].items() if k in fields}).resolved()
    set_num_threads(spec["threads"])
    warm_job(spec["model"], config, spec["device"])


if __name__ == "__main__":
    _main()
