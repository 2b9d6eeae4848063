"""The CUDA availability helper: a clear error with the fix, never a traceback from the driver."""
import os
import subprocess
import sys

import numpy as np
import pytest

from edgecnn.kernels.cuda import _device, _launch

SIM = os.environ.get("NUMBA_ENABLE_CUDASIM", "0") == "1"


@pytest.mark.skipif(SIM or _device.is_available(), reason="a GPU (or the simulator) is present")
def test_require_cuda_without_gpu_says_why_and_how_to_fix():
    with pytest.raises(_device.CudaUnavailableError) as e:
        _device.require_cuda("edgecnn train --device cuda")
    msg = str(e.value)
    assert "--device cuda" in msg and "no usable CUDA GPU" in msg
    assert 'pip install "edgecnn[cuda]"' in msg and "--device cpu" in msg


def test_missing_cuda_package_is_a_clear_error():
    # a numba without a CUDA target (numba.cuda made unimportable) in a child process
    code = ("import sys; sys.modules['numba.cuda'] = None\n"
            "from edgecnn.kernels.cuda import _device\n"
            "try:\n    _device.require_cuda('x')\nexcept _device.CudaUnavailableError as e:\n    print(e)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                       env=dict(os.environ, NUMBA_ENABLE_CUDASIM="0"))
    assert r.returncode == 0, r.stderr
    assert "numba.cuda cannot be imported" in r.stdout and 'pip install "edgecnn[cuda]"' in r.stdout


def test_implementation_is_reported():
    assert _device.implementation() in {"built-in", "numba-cuda", "simulator"}


def test_is_device_array():
    assert not _device.is_device_array(np.zeros(3, np.float32))

    class Fake:
        __cuda_array_interface__ = {}

    assert _device.is_device_array(Fake())


def test_launch_configure_validates_and_restores():
    before = (_launch.BLOCK, _launch.TILE, _launch.REDUCE)
    with pytest.raises(ValueError, match="tile"):
        _launch.configure(tile=_launch.MAX_TILE + 1)
    with pytest.raises(ValueError, match="reduce"):
        _launch.configure(reduce=6)
    with _launch.shrunk():
        assert (_launch.TILE, _launch.REDUCE) == (4, 8)
    assert (_launch.BLOCK, _launch.TILE, _launch.REDUCE) == before
    assert _launch.grid_tiles(rows=5, cols=17, depth=2) == ((2, 1, 2), (16, 16))
