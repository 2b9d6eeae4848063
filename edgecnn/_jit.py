"""The only place where Numba decorators are configured.

* ``cache=True`` everywhere: compiled code is written next to the sources (or under NUMBA_CACHE_DIR)
  and reused by the next process. Where neither that nor Numba's user-wide cache directory is
  writable (a read-only install, no home), Numba refuses to decorate and importing edgecnn would
  fail; the kernels are then cached in a private temporary directory, or not at all (see
  _cache_fallback), with a warning saying which.
* fastmath without ``nnan``/``ninf``: reductions may be reassociated and vectorized, but NaN and inf
  checks (``np.isnan``, the training loop's divergence check) keep working.
* ``error_model="numpy"``: no Python-style ZeroDivisionError checks inside hot loops.
* Nothing is compiled at import: signatures are inferred lazily on first call.
"""
import os
import stat
import tempfile
import warnings

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

# Where kernels are cached when Numba finds no writable location of its own: None until needed, then
# the directory, or "" for no cache at all.
CACHE_FALLBACK = None

_PACKAGE = os.path.dirname(os.path.abspath(__file__))
_PACKAGE_DIGEST = []


def package_digest():
    """sha1 of every .py file of edgecnn (paths and contents), computed once per process."""
    if not _PACKAGE_DIGEST:
        import hashlib
        h = hashlib.sha1()
        for root, dirs, files in os.walk(_PACKAGE):
            dirs[:] = sorted(d for d in dirs if d != "__pycache__")
            for name in sorted(f for f in files if f.endswith(".py")):
                path = os.path.join(root, name)
                h.update(os.path.relpath(path, _PACKAGE).encode() + b"\0")
                with open(path, "rb") as f:
                    h.update(f.read())
        _PACKAGE_DIGEST.append(h.hexdigest())
    return _PACKAGE_DIGEST[0]


def _stamp_with_the_package():
    """Numba keeps a cached function until its own source file changes; the functions it calls from
    other files are compiled into it, so after an edit or an upgrade that changed only a callee's
    file (say edgecnn/strokes.py under live_mnist's normalizer) the cache kept running the old
    callee. For edgecnn's files the cache's source stamp also carries package_digest(): any change
    to the package's code invalidates its cached kernels. Numba's own locators, subclassed, with
    their order kept; other files are left to them."""
    from numba.core import caching

    impl = getattr(caching, "CacheImpl", None) or getattr(caching, "_CacheImpl", None)
    bases = [getattr(caching, n, None) for n in ("UserProvidedCacheLocator", "InTreeCacheLocator",
                                                 "UserWideCacheLocator")]
    if impl is None or None in bases or not isinstance(getattr(impl, "_locator_classes", None), list):
        warnings.warn_explicit("this Numba's cache internals are not the ones edgecnn knows: cached kernels "
                               "are not tied to edgecnn's version (after editing or upgrading edgecnn, delete "
                               "its __pycache__ folders)", RuntimeWarning, "edgecnn", 0)
        return
    if getattr(impl, "_edgecnn_stamped", False):
        return

    def stamped(base):
        class Locator(base):
            def get_source_stamp(self):
                return (super().get_source_stamp(), package_digest())

            @classmethod
            def from_function(cls, py_func, py_file):
                inside = os.path.abspath(py_file).startswith(_PACKAGE + os.sep)
                return super().from_function(py_func, py_file) if inside else None
        Locator.__name__ = Locator.__qualname__ = "Edgecnn" + base.__name__
        return Locator

    ours = [stamped(c) for c in bases]
    impl._locator_classes[0:0] = ours  # in place: subclasses sharing the list see them too
    impl._edgecnn_stamped = True


_stamp_with_the_package()


def njit(func=None, *, parallel=False, inline="never", fastmath=None):
    """``numba.njit`` with the project's settings; ``parallel=True`` enables ``prange``; ``fastmath``
    overrides FASTMATH (kernels that must round exactly like OpenCV pass False)."""
    opts = dict(_OPTIONS) if fastmath is None else dict(_OPTIONS, fastmath=fastmath)

    def wrap(f):
        return _with_cache(lambda cache: numba.njit(parallel=parallel, inline=inline,
                                                    **dict(opts, cache=cache))(f))
    return wrap if func is None else wrap(func)


def caching():
    """Whether compiled kernels are written to a disk cache (False only when no location is writable)."""
    return bool(_OPTIONS["cache"])


def _with_cache(make):
    """make(cache) -> dispatcher. Numba chooses a function's cache directory when it is decorated and
    raises RuntimeError when none is writable; then fall back once and decorate again."""
    try:
        return make(_OPTIONS["cache"])
    except RuntimeError as e:
        if "no locator available" not in str(e) or CACHE_FALLBACK == "":
            raise
        _cache_fallback(str(e))
    try:
        return make(_OPTIONS["cache"])
    except RuntimeError as e:  # the fallback directory stopped working meanwhile
        if "no locator available" not in str(e):
            raise
        _cache_fallback(str(e), allow_dir=False)
        return make(False)


def _private_cache_dir():
    """<tempdir>/edgecnn-numba-cache-<uid>, created 0700, or None. Numba's index files are pickles, so
    a directory that another user could write (or swap for a symlink) would let them run code here."""
    uid = os.getuid() if hasattr(os, "getuid") else None
    path = os.path.join(tempfile.gettempdir(), f"edgecnn-numba-cache-{uid if uid is not None else 'user'}")
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
        st = os.lstat(path)
        if not stat.S_ISDIR(st.st_mode) or (uid is not None and (st.st_uid != uid or st.st_mode & 0o022)):
            return None
        tempfile.TemporaryFile(dir=path).close()
        return path
    except OSError:
        return None


def _cache_fallback(why, allow_dir=True):
    """Cache in a private temporary directory (numba.config.CACHE_DIR, what NUMBA_CACHE_DIR sets) or,
    when there is none, not at all; say so once."""
    global CACHE_FALLBACK
    path = _private_cache_dir() if allow_dir else None
    CACHE_FALLBACK = path or ""
    if path:
        numba.config.CACHE_DIR = path
        what = f"compiled kernels are cached in {path} instead"
    else:
        _OPTIONS["cache"] = False
        what = ("compiled kernels are not cached: every process compiles the kernels it uses "
                "(about 30 s before the first training step)")
    # warn_explicit: the decorating line deep inside an import would only confuse
    warnings.warn_explicit(f"Numba has no writable cache directory ({why}); {what}. Set NUMBA_CACHE_DIR "
                           "to a writable directory to choose one.", RuntimeWarning, "edgecnn", 0)


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
        if cuda_simulator_enabled():
            return cuda.jit(device=device, cache=False, fastmath=False)(f)
        return _with_cache(lambda cache: cuda.jit(device=device, cache=cache, fastmath=False)(f))
    return wrap if func is None else wrap(func)
