"""Importing edgecnn where Numba has no writable cache directory (a read-only install, no home).

Numba chooses a function's cache directory when it is decorated and raises RuntimeError when neither
the source's __pycache__ nor its user-wide directory is writable, so `import edgecnn` used to fail
there. Each test runs a copy of the package in a child process in which both locations are blocked
by a plain file where the directory would go (that blocks root as well as other users).
"""
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

import edgecnn

PACKAGE = os.path.dirname(os.path.abspath(edgecnn.__file__))

# ReLU forward and a Sobel filter: the first decorations on import and two compiled calls.
CHILD = """
import json, warnings
import numpy as np
warnings.simplefilter("always")
with warnings.catch_warnings(record=True) as caught:
    import edgecnn.filters as F
    from edgecnn.kernels import activations as A
from edgecnn import _jit, _warm
x = np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4)
y = np.empty_like(x)
with _warm.counting_compiles() as compiled:
    A.relu_forward(x, out=y)
    s = F.apply(np.arange(30, dtype=np.float32).reshape(5, 6), "sobel_x")
print(json.dumps({"warnings": [str(w.message) for w in caught], "caching": _jit.caching(),
                  "fallback": _jit.CACHE_FALLBACK, "compiled": compiled,
                  "relu": y.tolist(), "sobel": s.tolist()}))
"""


@pytest.fixture
def blocked(tmp_path):
    """(root, env): a copy of edgecnn under root whose __pycache__ paths are files, HOME a file."""
    root = tmp_path / "site"
    shutil.copytree(PACKAGE, root / "edgecnn", ignore=shutil.ignore_patterns("__pycache__"))
    for d, _, _ in os.walk(root / "edgecnn"):
        (root / d / "__pycache__").write_text("not a directory")
    home = tmp_path / "home"
    home.write_text("not a directory")
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {k: v for k, v in os.environ.items()
           if k not in ("NUMBA_CACHE_DIR", "XDG_CACHE_HOME", "PYTHONPATH", "NUMBA_DISABLE_JIT")}
    env.update(HOME=str(home), TMPDIR=str(tmp), PYTHONDONTWRITEBYTECODE="1")
    return root, env


def run_child(root, env):
    import json
    r = subprocess.run([sys.executable, "-c", CHILD], cwd=root, env=env, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    x = np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4)
    np.testing.assert_array_equal(np.array(out["relu"], np.float32), np.maximum(x, 0))
    import cv2
    img = np.arange(30, dtype=np.float32).reshape(5, 6)
    np.testing.assert_allclose(np.array(out["sobel"], np.float32), cv2.Sobel(img, -1, 1, 0), rtol=1e-5, atol=1e-5)
    return out


def uid_dir(env):
    return os.path.join(env["TMPDIR"], f"edgecnn-numba-cache-{os.getuid()}")


@pytest.mark.skipif(not hasattr(os, "getuid"), reason="POSIX permissions")
def test_import_falls_back_to_a_private_temporary_cache(blocked):
    root, env = blocked
    first = run_child(root, env)
    cache = uid_dir(env)
    assert first["caching"] and first["fallback"] == cache
    assert len(first["warnings"]) == 1 and f"cached in {cache} instead" in first["warnings"][0]
    assert first["compiled"], "the first process compiles"
    st = os.stat(cache)
    assert st.st_mode & 0o777 == 0o700
    assert any(f.endswith(".nbi") for _, _, fs in os.walk(cache) for f in fs)
    second = run_child(root, env)
    assert second["compiled"] == [], "the next process loads the kernels from the temporary cache"


@pytest.mark.skipif(not hasattr(os, "getuid"), reason="POSIX permissions")
@pytest.mark.parametrize("squatted", ["file", "group-writable dir"])
def test_import_without_any_cache_compiles_and_says_so(blocked, squatted):
    """The temporary directory is unusable: a file in its place, or a directory that others could write
    (Numba's index files are pickles: loading someone else's would run their code)."""
    root, env = blocked
    path = uid_dir(env)
    if squatted == "file":
        with open(path, "w") as f:
            f.write("x")
    else:
        os.mkdir(path)
        os.chmod(path, 0o777)
    out = run_child(root, env)
    assert out["caching"] is False and out["fallback"] == ""
    assert len(out["warnings"]) == 1 and "not cached: every process compiles" in out["warnings"][0]
    assert out["compiled"]
    if squatted != "file":
        assert os.listdir(path) == []


def test_warm_up_skips_the_compile_process_without_a_cache(monkeypatch):
    """The child would compile for nothing: it could not hand its code over through the cache."""
    from edgecnn import _jit, _warm

    monkeypatch.setitem(_jit._OPTIONS, "cache", False)
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: pytest.fail("spawned a compile process"))
    assert _warm.compile_in_child({}, None, "cpu", 1) == "Numba has no writable cache directory"


PROBE_A = """
import numba
from {jit_import}
from .probe_b import helper


@{deco}
def f():
    return helper()
"""
PROBE_B = """
import numba
from {jit_import}


@{deco}
def helper():
    return {value}
"""


def _probe_package(root, pkg, value, ours):
    """pkg/probe_a.f (cached) calls pkg/probe_b.helper, which returns ``value``: inside a copy of
    edgecnn with its decorator (ours) or a plain package with numba.njit(cache=True)."""
    jit_import = "._jit import njit" if ours else "numba import njit"
    deco = "njit" if ours else "njit(cache=True)"
    d = root / pkg
    (d / "probe_a.py").write_text(PROBE_A.format(jit_import=jit_import, deco=deco))
    (d / "probe_b.py").write_text(PROBE_B.format(jit_import=jit_import, deco=deco, value=value))


@pytest.mark.parametrize("ours", [True, False])
def test_editing_a_callees_file_invalidates_the_cached_caller(tmp_path, ours):
    """Numba checks only a cached function's own source file: a caller compiled with the old callee
    kept running it. edgecnn's kernels carry a digest of the whole package in their cache stamp. The
    plain-Numba case shows what the test guards against (it stays stale)."""
    root = tmp_path / "site"
    pkg = "edgecnn" if ours else "plainpkg"
    if ours:
        shutil.copytree(PACKAGE, root / "edgecnn", ignore=shutil.ignore_patterns("__pycache__"))
    else:
        (root / pkg).mkdir(parents=True)
        (root / pkg / "__init__.py").write_text("")
    env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_CACHE_DIR", "PYTHONPATH", "NUMBA_DISABLE_JIT")}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    code = f"from {pkg}.probe_a import f; print(f())"
    seen = []
    for value in (1, 2):
        _probe_package(root, pkg, value, ours)
        r = subprocess.run([sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True,
                           timeout=300)
        assert r.returncode == 0, r.stderr[-2000:]
        seen.append(int(r.stdout.strip().splitlines()[-1]))
    assert seen == ([1, 2] if ours else [1, 1])
