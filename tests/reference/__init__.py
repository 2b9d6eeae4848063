"""Plain float64 NumPy reference implementations, written from the definitions (loops or einsum).

Independent of edgecnn's kernels: nothing here imports edgecnn.kernels. Each family has a module;
this package re-exports them so tests can write ``from reference import conv2d_ref``.
"""
from .gradcheck import numeric_grad, max_rel_error  # noqa: F401

# Families (one line each):
from .conv import conv1d_backward_ref, conv1d_ref, conv2d_backward_ref, conv2d_ref  # noqa: F401
from .pool import (avg_pool2d_bwd_ref, avg_pool2d_ref, global_avg_pool2d_bwd_ref, global_avg_pool2d_ref, l2_pool2d_bwd_ref, l2_pool2d_ref, max_pool2d_bwd_ref, max_pool2d_ref)  # noqa: F401,E501
from .activations import (identity_bwd_ref, identity_ref, leaky_relu_bwd_ref, leaky_relu_ref, log_softmax_bwd_ref, log_softmax_ref, relu_bwd_ref, relu_ref, sigmoid_bwd_ref, sigmoid_ref, softmax_bwd_ref, softmax_ref, tanh_bwd_ref, tanh_ref)  # noqa: F401,E501
from .dense import dense_bwd_ref, dense_ref  # noqa: F401
from .losses import (bce_with_logits_grad_ref, bce_with_logits_ref, mse_loss_grad_ref, mse_loss_ref, softmax_cross_entropy_grad_ref, softmax_cross_entropy_ref)  # noqa: F401,E501
from .affine import affine_forward_matrix_ref, bilinear_warp_ref  # noqa: F401
from .dropout import dropout_bwd_ref, dropout_mask_ref, dropout_ref  # noqa: F401
from .batchnorm import batchnorm2d_bwd_ref, batchnorm2d_infer_ref, batchnorm2d_running_ref, batchnorm2d_train_ref  # noqa: F401,E501
