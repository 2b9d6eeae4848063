"""The public entry points of edgecnn.kernels hand device arrays to the CUDA twins: device in, device
out, the CPU's result; simulator."""
import numpy as np
import pytest

from test_cuda_sim import close, dev, host, rand, skip_unless_cuda
from test_cuda_sim import small_blocks  # noqa: F401  (fixture)

skip_unless_cuda()

import edgecnn.kernels as K  # noqa: E402
from edgecnn.kernels.cuda import _device  # noqa: E402

pytestmark = [pytest.mark.usefixtures("small_blocks"),
              pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")]


def _both(f, *arrays, **kw):
    """f on host arrays and on device copies; the device results must be device arrays."""
    want = f(*arrays, **kw)
    got = f(*(dev(a) if isinstance(a, np.ndarray) else a for a in arrays), **kw)
    return want, got


def _check(want, got):
    if isinstance(want, tuple):
        for w, g in zip(want, got):
            _check(w, g)
    elif want is None:
        assert got is None
    elif isinstance(want, float):
        np.testing.assert_allclose(got, want, rtol=1e-5)
    else:
        assert _device.is_device_array(got)
        if want.dtype == np.float32:
            close(got, want)
        else:
            np.testing.assert_array_equal(host(got), want)


def test_activations():
    rng = np.random.default_rng(1)
    x, gy = rand(rng, 4, 6), rand(rng, 4, 6)
    for name in ("relu", "leaky_relu", "sigmoid", "tanh", "identity", "softmax", "log_softmax"):
        fwd, bwd = getattr(K, f"{name}_forward"), getattr(K, f"{name}_backward")
        want, got = _both(fwd, x)
        _check(want, got)
        _check(*_both(bwd, gy, x, want))


def test_pool_dense_losses_dropout_batchnorm():
    rng = np.random.default_rng(2)
    x = rand(rng, 2, 3, 5, 4)
    (y, am), got = _both(K.max_pool2d_forward, x, 2, 1, 1)
    _check((y, am), got)
    gy = rand(rng, *y.shape)
    _check(*_both(K.max_pool2d_backward, gy, am, x.shape))
    _check(*_both(K.avg_pool2d_forward, x, 3, 2, 1, count_include_pad=False))
    ya = K.avg_pool2d_forward(x, 3, 2, 1)
    _check(*_both(K.avg_pool2d_backward, rand(rng, *ya.shape), x.shape, 3, 2, 1))
    yl = K.l2_pool2d_forward(x, 2)
    _check(*_both(K.l2_pool2d_forward, x, 2))
    _check(*_both(K.l2_pool2d_backward, rand(rng, *yl.shape), x, yl, 2))
    _check(*_both(K.global_avg_pool2d_forward, x))
    _check(*_both(K.global_avg_pool2d_backward, rand(rng, 2, 3), x.shape))

    a, w, b = rand(rng, 3, 5), rand(rng, 4, 5), rand(rng, 4)
    _check(*_both(K.dense_forward, a, w, b))
    _check(*_both(K.dense_backward, rand(rng, 3, 4), a, w))

    z, labels = rand(rng, 5, 4), np.array([0, 3, 1, 2, 3], np.int32)
    _check(*_both(K.softmax_cross_entropy, z, labels))
    t = rng.random((5, 4)).astype(np.float32)
    _check(*_both(K.bce_with_logits, z, t))
    _check(*_both(K.mse_loss, z, t))

    (yd, mask), got = _both(K.dropout_forward, x, 0.5, 99)
    _check((yd, mask), got)
    _check(*_both(K.dropout_backward, rand(rng, *x.shape), mask, 0.5))

    gamma, beta = rand(rng, 3), rand(rng, 3)
    rm, rv = np.zeros(3, np.float32), np.ones(3, np.float32)
    drm, drv = dev(rm), dev(rv)
    want = K.batchnorm2d_forward(x, gamma, beta, rm, rv)
    got = K.batchnorm2d_forward(dev(x), dev(gamma), dev(beta), drm, drv)
    _check(want, got)
    close(drm, rm)
    close(drv, rv)
    _check(*_both(K.batchnorm2d_backward, rand(rng, *x.shape), x, gamma, want[1], want[2]))


def test_mixed_host_and_device_is_a_type_error():
    x = np.ones((2, 3), np.float32)
    with pytest.raises(TypeError, match="all"):
        K.relu_forward(x, out=dev(x))
    with pytest.raises(TypeError):
        K.dense_forward(dev(x), np.ones((4, 3), np.float32))
