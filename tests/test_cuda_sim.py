"""Runs the CUDA kernel tests under the CUDA simulator, and holds their shared helpers.

NUMBA_ENABLE_CUDASIM must be set before numba.cuda is first imported, so the plain ``python -m pytest``
run cannot switch it on in its own process: ``test_cuda_kernels_under_simulator`` starts a child
pytest over tests/test_cuda_k_*.py with the variable set and fails with the child's output if any test
fails there. In the parent those files skip themselves (unless a real GPU is present, where they run
directly). Block sizes are shrunk (``_launch.shrunk``) so tiny shapes still run multi-block and
multi-tile paths.
"""
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

HERE = pathlib.Path(__file__).resolve().parent
SIM = os.environ.get("NUMBA_ENABLE_CUDASIM", "0") == "1"


def _gpu_present():
    if SIM:
        return False
    try:
        from edgecnn.kernels.cuda import _device
        return _device.is_available()
    except Exception:
        return False


def skip_unless_cuda():
    """Module-level guard for the kernel test files."""
    if not (SIM or _gpu_present()):
        pytest.skip("CUDA kernel tests run under NUMBA_ENABLE_CUDASIM=1 in the child process started by "
                    "tests/test_cuda_sim.py (no GPU here)", allow_module_level=True)


@pytest.fixture
def small_blocks():
    from edgecnn.kernels.cuda import _launch
    with _launch.shrunk(block=32, tile=4, reduce=8):
        yield


def dev(a):
    from numba import cuda
    return cuda.to_device(np.ascontiguousarray(a))


def host(a):
    return None if a is None else a.copy_to_host()


def close(got, want, name=""):
    """float32 CUDA result against the CPU kernel (or float64 reference) within 1e-5."""
    got = host(got) if hasattr(got, "copy_to_host") else np.asarray(got)
    np.testing.assert_allclose(got, np.asarray(want, dtype=np.float64), rtol=1e-5, atol=1e-5, err_msg=name)


def cpu_op(module, name):
    """The CPU host entry point edgecnn.kernels.<module>.<name>, or None when it has not landed."""
    try:
        import importlib
        return getattr(importlib.import_module(f"edgecnn.kernels.{module}"), name)
    except (ImportError, AttributeError):
        return None


def rand(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


@pytest.mark.cudasim
@pytest.mark.skipif(SIM, reason="this is the simulator child already")
def test_cuda_kernels_under_simulator():
    files = sorted(str(p) for p in HERE.glob("test_cuda_k_*.py"))
    assert files, "no CUDA kernel test files found"
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *files],
                       cwd=str(HERE.parent), env=env, capture_output=True, text=True, timeout=1800)
    tail = (r.stdout + r.stderr)[-6000:]
    assert r.returncode == 0, f"CUDA simulator tests failed (child pytest rc={r.returncode}):\n{tail}"
    print(tail)
