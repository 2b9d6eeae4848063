"""A read-only buffer handed to a kernel to write is refused with a ValueError naming it (Numba
would otherwise fail with a typing error deep inside), and nothing is written."""
import numpy as np
import pytest

from edgecnn import filters as F
from edgecnn import kernels as K


def _ro(shape, dtype=np.float32):
    a = np.zeros(shape, dtype)
    a.flags.writeable = False
    return a


def _x(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


CALLS = {
    "relu_forward out": lambda: K.relu_forward(_x((2, 3)), out=_ro((2, 3))),
    "sigmoid_backward gx": lambda: K.sigmoid_backward(_x((4,)), _x((4,)), _x((4,)), gx=_ro((4,))),
    "dense_forward out": lambda: K.dense_forward(_x((2, 3)), _x((4, 3)), out=_ro((2, 4))),
    "dense_backward gw": lambda: K.dense_backward(_x((2, 4)), _x((2, 3)), _x((4, 3)), gw=_ro((4, 3))),
    "conv2d_forward out": lambda: K.conv2d_forward(_x((1, 1, 5, 5)), _x((2, 1, 3, 3)), out=_ro((1, 2, 3, 3))),
    "max_pool2d_forward out": lambda: K.max_pool2d_forward(_x((1, 1, 4, 4)), 2, out=_ro((1, 1, 2, 2))),
    "softmax_cross_entropy grad": lambda: K.softmax_cross_entropy(_x((2, 3)), np.array([0, 2], np.int64),
                                                                  grad=_ro((2, 3))),
    "batchnorm2d_forward running_mean": lambda: K.batchnorm2d_forward(
        _x((2, 3, 2, 2)), np.ones(3, np.float32), np.zeros(3, np.float32), _ro(3), np.ones(3, np.float32)),
    "bn_relu_pool_forward running_var": lambda: K.bn_relu_pool_forward(
        _x((2, 3, 2, 2)), np.ones(3, np.float32), np.zeros(3, np.float32), np.zeros(3, np.float32), _ro(3)),
}


@pytest.mark.parametrize("what", sorted(CALLS))
def test_read_only_output_is_refused_by_name(what):
    name = what.split()[-1]
    with pytest.raises(ValueError, match=rf"{name} is read-only"):
        CALLS[what]()


def test_batchnorm_inference_reads_read_only_running_statistics():
    # inference only reads them: a frozen model's arrays may be read-only
    x = _x((2, 3, 2, 2))
    rm, rv = _ro(3), np.ones(3, np.float32)
    rv.flags.writeable = False
    y, _, _ = K.batchnorm2d_forward(x, np.ones(3, np.float32), np.zeros(3, np.float32), rm, rv, training=False)
    np.testing.assert_allclose(y, x / np.sqrt(np.float32(1 + 1e-5)), rtol=1e-6)


@pytest.mark.parametrize("first_call_writable", [False, True], ids=["first-call", "after-a-call"])
def test_filter_read_only_out_is_refused_on_both_paths(first_call_writable):
    # apply() checks a call like an earlier one on a shorter path: that path refuses it too
    img = (np.random.default_rng(1).random((9, 11, 3)) * 255).astype(np.float32)
    if first_call_writable:
        F.apply(img, "gray", out=np.empty((9, 11), np.float32))
    out = _ro((9, 11))
    with pytest.raises(ValueError, match=r"out is read-only"):
        F.apply(img, "gray", out=out)
    assert not out.any()
