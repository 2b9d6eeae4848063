"""Public kernels: float32, NCHW activations, OIHW weights, C-contiguous.

Each op family has a module with CPU kernels (``<op>_<fwd|bwd_input|bwd_weight>_cpu``, Numba @njit),
CUDA twins under ``edgecnn.kernels.cuda``, and host entry points (``conv2d_forward`` ...) that validate,
allocate (or take preallocated outputs) and dispatch on the array type. Importing compiles nothing.
"""
from ._common import conv_output_size, resolve_padding  # noqa: F401

# Op families (one line each):
from .conv import *  # noqa: F401,F403
from .pool import (avg_pool2d_backward, avg_pool2d_forward, global_avg_pool2d_backward, global_avg_pool2d_forward, l2_pool2d_backward, l2_pool2d_forward, max_pool2d_backward, max_pool2d_forward, pool2d_output_shape)  # noqa: F401,E501
from .activations import (identity_backward, identity_forward, leaky_relu_backward, leaky_relu_forward, log_softmax_backward, log_softmax_forward, relu_backward, relu_forward, sigmoid_backward, sigmoid_forward, softmax_backward, softmax_forward, tanh_backward, tanh_forward)  # noqa: F401,E501
from .dense import dense_backward, dense_forward  # noqa: F401
from .losses import bce_with_logits, mse_loss, softmax_cross_entropy  # noqa: F401
from .dropout import dropout_backward, dropout_forward  # noqa: F401
from .batchnorm import batchnorm2d_backward, batchnorm2d_forward  # noqa: F401
from .bn_relu_pool import bn_relu_pool_backward, bn_relu_pool_forward  # noqa: F401
