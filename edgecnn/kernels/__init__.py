"""Public kernels: float32, NCHW activations, OIHW weights, C-contiguous.

Each op family has a module with CPU kernels (``<op>_<fwd|bwd_input|bwd_weight>_cpu``, Numba @njit),
CUDA twins under ``edgecnn.kernels.cuda``, and host entry points (``conv2d_forward`` ...) that validate,
allocate (or take preallocated outputs) and dispatch on the array type. Importing compiles nothing.
"""
from ._common import conv_output_size, resolve_padding  # noqa: F401

# Op families (one line each):
from .conv import *  # noqa: F401,F403
from .pool import (avg_pool2d_backward, avg_pool2d_forward, global_avg_pool2d_backward, global_avg_pool2d_forward, l2_pool2d_backward, l2_pool2d_forward, max_pool2d_backward, max_pool2d_forward, pool2d_output_shape)  # noqa: F401,E501
