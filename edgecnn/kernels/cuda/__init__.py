"""CUDA twins of the kernels in edgecnn.kernels, one module per op family (``from edgecnn.kernels.cuda
import conv``). Importing a family imports numba.cuda (numba-cuda's or numba's built-in target) but
compiles nothing; kernels compile at their first launch. The CPU host entry points import these
modules only when they are given device arrays, so the CPU path needs no CUDA package.

``_device`` tells whether CUDA can run here (``require_cuda()`` raises with the fix), ``_launch``
holds the block sizes.
"""
FAMILIES = ("activations", "batchnorm", "conv", "dense", "dropout", "losses", "optim", "pool", "tensor")


def _quiet_occupancy_warnings():
    # Small launches (batch-1 inference, per-channel reductions) are expected; numba would warn
    # "Grid size N will likely result in GPU under-utilization" on each, and the test suite turns
    # NumbaPerformanceWarning into an error. An explicit NUMBA_CUDA_LOW_OCCUPANCY_WARNINGS wins.
    import os
    if "NUMBA_CUDA_LOW_OCCUPANCY_WARNINGS" in os.environ:
        return
    try:
        from numba.core import config
        config.CUDA_LOW_OCCUPANCY_WARNINGS = 0
    except Exception:
        pass


_quiet_occupancy_warnings()
