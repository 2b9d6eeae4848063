"""Pyflakes-class checks over the whole project (ruff, rules in pyproject.toml): undefined names,
unused imports and variables, names in __all__ that do not exist. Numba reports an undefined global
only when a kernel is first compiled, which may be a code path no other test takes."""
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_ruff_finds_nothing():
    pytest.importorskip("ruff", reason="ruff comes with the test extras: pip install -e '.[test]'")
    r = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "edgecnn", "cli", "tests", "benchmarks"],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
