"""The package contract: cheap import, console script, python -m, version."""
import os
import subprocess
import sys
import time

import pytest

import edgecnn


def _run(*args):
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=120)


def test_import_is_cheap():
    code = ("import sys, edgecnn; "
            "print(','.join(m for m in ('click', 'cv2', 'numba', 'edgecnn_cli') if m in sys.modules))")
    r = _run("-c", code)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "", f"import edgecnn pulled in: {r.stdout.strip()}"


def test_version_matches_package():
    r = _run("-m", "edgecnn", "--version")
    assert r.returncode == 0, r.stderr
    assert edgecnn.__version__ in r.stdout


def test_help_is_fast_and_lists_commands():
    _run("-m", "edgecnn", "--help")  # warm the filesystem cache
    start = time.perf_counter()
    r = _run("-m", "edgecnn", "--help")
    elapsed = time.perf_counter() - start
    assert r.returncode == 0, r.stderr
    assert "Usage:" in r.stdout
    # Generous bound on a shared 2-core machine; the point is that --help imports no numba or cv2.
    assert elapsed < 3.0, f"--help took {elapsed:.2f}s"
    r = _run("-c", "import sys, edgecnn_cli.main; print('numba' in sys.modules, 'cv2' in sys.modules)")
    assert r.stdout.split() == ["False", "False"], r.stdout + r.stderr


def test_unknown_attribute_is_an_attribute_error():
    import pytest
    with pytest.raises(AttributeError, match="no_such_thing"):
        edgecnn.no_such_thing


@pytest.mark.parametrize("given, want", [
    ({}, ("PASSIVE", "3000")),                                  # edgecnn's choice: passive after a short spin
    ({"OMP_WAIT_POLICY": "ACTIVE"}, ("ACTIVE", None)),          # a user's policy: no spin count added
    ({"GOMP_SPINCOUNT": "10"}, ("PASSIVE", "10")),              # a user's spin count wins
])
def test_openmp_wait_settings(given, want):
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    env.update(given)
    code = ("import os, edgecnn._jit; "
            "print(os.environ.get('OMP_WAIT_POLICY'), os.environ.get('GOMP_SPINCOUNT'))")
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [str(w) for w in want]
