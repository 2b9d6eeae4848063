"""A run that compiles its kernels ends with the same weights as one that loads them from the cache.

Without edgecnn._warm this failed: the compiling process ran another copy of BatchNorm's backward than
the one Numba cached, and the default model's weights differed in the last bits.
"""
import os
import subprocess
import sys

import numpy as np
import pytest
from numba import njit

import edgecnn
from edgecnn import _warm


def test_cache_only_refuses_to_compile_and_counting_records():
    @njit  # not cached: any first call compiles
    def twice(a):
        return a * 2

    with pytest.raises(_warm.NeedsCompile, match="twice"):
        with _warm.cache_only():
            twice(1.5)
    with _warm.counting_compiles() as compiled:
        assert twice(1.5) == 3.0
        assert twice(2.5) == 5.0  # same signature: compiled once
    assert compiled == [twice.py_func.__qualname__]
    with _warm.cache_only():
        assert twice(4.0) == 8.0  # already in this process: nothing to compile


def _train(tmp_path, mnist_dir, name):
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "numba-cache"))
    out = tmp_path / f"{name}.ecnn"
    r = subprocess.run([sys.executable, "-m", "edgecnn", "train", "--limit", "640", "--epochs", "1",
                        "--batch-size", "64", "--threads", "2", "--seed", "3", "--data-dir", str(mnist_dir),
                        "--output", str(out), "--run-dir", str(tmp_path / f"{name}.run")],
                       env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    return edgecnn.load(out), r.stderr


def test_cold_cache_run_equals_warm_cache_run(tmp_path, mnist_dir):
    cold, cold_log = _train(tmp_path, mnist_dir, "cold")
    warm, warm_log = _train(tmp_path, mnist_dir, "warm")
    assert "compiled in a child process" in cold_log
    assert "no kernel needed compiling" in warm_log
    a, b = cold.model.state_dict(), warm.model.state_dict()
    assert a.keys() == b.keys() and any("batch_norm" in k for k in a)
    for k in a:
        np.testing.assert_array_equal(np.asarray(a[k]), np.asarray(b[k]), err_msg=k)


def test_the_compile_process_imports_the_callers_edgecnn(tmp_path, monkeypatch):
    # run from a source checkout beside an installed edgecnn, a child started with `python -m` imported
    # the checkout (the working directory comes first) and filled a cache the caller never read
    decoy = tmp_path / "edgecnn"
    decoy.mkdir()
    (decoy / "__init__.py").write_text("raise ImportError('the decoy package in the working directory')\n")
    monkeypatch.chdir(tmp_path)
    from edgecnn.models import build
    from edgecnn.train import TrainConfig
    config = TrainConfig(model="lenet5", batch_size=8, eval_batch_size=8, augment=False).resolved()
    assert _warm.compile_in_child(build("lenet5").get_config(), config, "cpu", 1) is None
