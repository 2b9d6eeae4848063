"""Every CUDA kernel compiles to PTX for compute capability 7.5, 8.0 and 9.0 (no GPU needed: NVVM only).

Runs in the ordinary (non-simulator) process. Each family module lists its kernels with example
arguments (``ptx_cases()``), typed exactly as the entry points launch them. Skips, saying why, when
NVVM is not available (no CUDA toolkit) or under the simulator.

numba's built-in CUDA target asks the driver for the current device's compute capability when it
compiles a device function called from a kernel (numba/cuda/dispatcher.py, compile_device), even inside
compile_ptx; with no GPU there is no driver, so ``_as_if_cc`` answers with the capability being compiled
for. Nothing else is faked: NVVM compiles the whole kernel, device functions included, for that cc.
"""
import contextlib
import importlib
import os
import types

import pytest

if os.environ.get("NUMBA_ENABLE_CUDASIM", "0") == "1":
    pytest.skip("compile_ptx needs the real CUDA target, not the simulator", allow_module_level=True)

FAMILIES = ("activations", "batchnorm", "conv", "dense", "dropout", "filters", "losses", "optim", "pool",
            "tensor")
CCS = [(7, 5), (8, 0), (9, 0)]


def _cases():
    out = []
    for fam in FAMILIES:
        try:
            mod = importlib.import_module(f"edgecnn.kernels.cuda.{fam}")
        except ImportError:
            continue
        for kernel, args in mod.ptx_cases():
            name = f"{fam}.{kernel.py_func.__name__}"
            out.append(pytest.param(kernel, args, id=f"{name}[{len(out)}]"))
    return out


@pytest.fixture(scope="module")
def nvvm():
    import numba
    from numba import cuda

    def probe(x):
        x[0] = 1

    try:
        cuda.compile_ptx(probe, (numba.float32[::1],), cc=(7, 5))
    except Exception as e:  # NvvmSupportError, missing libnvvm, missing NVRTC with numba-cuda
        msg = " ".join(str(e).split())
        pytest.skip(f"PTX cannot be compiled here ({type(e).__name__}: {msg}): numba's built-in CUDA target "
                    "needs NVVM (the CUDA toolkit); numba-cuda also needs NVRTC (pip install "
                    "\"numba-cuda[cu13]\" or [cu12])")
    return cuda


@contextlib.contextmanager
def _as_if_cc(cc):
    from numba.cuda import dispatcher
    real = getattr(dispatcher, "get_current_device", None)
    if real is None:  # numba-cuda: device functions take the cc from compile_ptx itself
        yield
        return
    dispatcher.get_current_device = lambda: types.SimpleNamespace(compute_capability=cc)
    try:
        yield
    finally:
        dispatcher.get_current_device = real


@pytest.mark.parametrize("kernel,args", _cases())
def test_kernel_compiles_to_ptx(nvvm, kernel, args):
    import numba
    sig = tuple(numba.typeof(a) for a in args)
    for cc in CCS:
        with _as_if_cc(cc):
            ptx, restype = nvvm.compile_ptx(kernel.py_func, sig, cc=cc)
        assert f"sm_{cc[0]}{cc[1]}" in ptx
        assert ".entry" in ptx
        assert str(restype) == "none"


def test_every_kernel_has_a_ptx_case():
    """A new @cuda.jit kernel must be added to its module's ptx_cases()."""
    listed = {p.values[0].py_func.__name__ for p in _cases()}
    for fam in FAMILIES:
        try:
            mod = importlib.import_module(f"edgecnn.kernels.cuda.{fam}")
        except ImportError:
            continue
        for name, obj in vars(mod).items():
            if name.endswith("_cuda") and hasattr(obj, "py_func"):
                assert name in listed, f"{fam}.{name} is missing from ptx_cases()"
