"""CUDA implicit-GEMM conv kernels equal the CPU kernels (float32 within 1e-5); simulator.

The adapters conv2d_forward_device / conv2d_backward_device are called the way edgecnn.kernels.conv
calls them, with its own resolved settings; conv1d is checked against the float64 reference."""
import types

import numpy as np
import pytest

from test_cuda_sim import close, dev, rand, skip_unless_cuda
from test_cuda_sim import small_blocks  # noqa: F401  (fixture)

skip_unless_cuda()

from reference import conv1d_backward_ref, conv1d_ref  # noqa: E402

from edgecnn.kernels import conv as C  # noqa: E402
from edgecnn.kernels._common import resolve_padding  # noqa: E402
from edgecnn.kernels.cuda import conv as G  # noqa: E402

pytestmark = pytest.mark.usefixtures("small_blocks")


def _pair(v):
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


def _settings(w_shape, stride=1, padding=0, dilation=1, groups=1, flip=False):
    s = types.SimpleNamespace(stride=_pair(stride), dilation=_pair(dilation), groups=groups)
    s.pads = resolve_padding("test", padding, w_shape[2:], s.dilation)
    return s


CASES = [  # x shape, w shape, settings: groups, "same" (asymmetric), stride, dilation, flip, 1x1
    ((2, 4, 6, 5), (6, 2, 3, 3), dict(stride=1, padding=1, groups=2)),
    ((1, 3, 7, 7), (4, 3, 2, 2), dict(stride=(2, 1), padding="same", dilation=(1, 2), flip=True)),
    ((2, 2, 5, 6), (3, 2, 2, 3), dict(stride=2, padding=(0, 1))),
    ((1, 5, 3, 4), (2, 5, 1, 1), dict()),
]


@pytest.mark.parametrize("xs,ws,kw", CASES)
def test_conv2d_forward_backward(xs, ws, kw):
    rng = np.random.default_rng(sum(xs) + sum(ws))
    x, w, b = rand(rng, *xs), rand(rng, *ws), rand(rng, ws[0])
    y = C.conv2d_forward(x, w, b, **kw)
    gy = rand(rng, *y.shape)
    gx, gw, gb = C.conv2d_backward(gy, x, w, **kw)
    s, flip = _settings(ws, **kw), kw.get("flip", False)
    from numba import cuda
    yd = G.conv2d_forward_device(dev(x), dev(w), dev(b), s, flip, cuda.device_array(y.shape, np.float32))
    close(yd, y, "y")
    d = G.conv2d_backward_device(dev(gy), dev(x), dev(w), s, flip, cuda.device_array(xs, np.float32),
                                 cuda.device_array(ws, np.float32), cuda.device_array(ws[:1], np.float32))
    for got, want, name in zip(d, (gx, gw, gb), ("gx", "gw", "gb")):
        close(got, want, name)


def test_conv2d_direct_entry_without_bias_or_grads():
    rng = np.random.default_rng(11)
    x, w = rand(rng, 1, 2, 5, 5), rand(rng, 3, 2, 3, 3)
    y = C.conv2d_forward(x, w, None, padding="full")
    s = _settings(w.shape, padding="full")
    yd = G.conv2d_forward(dev(x), dev(w), None, s.stride, s.pads, s.dilation, 1, False)
    close(yd, y)
    gy = rand(rng, *y.shape)
    gx, gw, gb = G.conv2d_backward(dev(gy), dev(x), dev(w), s.stride, s.pads, s.dilation, 1, False,
                                   need_input_grad=False, need_bias_grad=False)
    assert gx is None and gb is None
    close(gw, C.conv2d_backward(gy, x, w, padding="full", need_input_grad=False)[1])


def test_conv1d_against_reference():
    rng = np.random.default_rng(12)
    x, w, b = rand(rng, 2, 4, 9), rand(rng, 2, 2, 3), rand(rng, 2)
    kw = dict(stride=2, padding="same", dilation=2, groups=2, flip=True)
    y = conv1d_ref(x, w, b, **kw)
    pads = resolve_padding("test", "same", (3,), (2,))
    yd = G.conv1d_forward(dev(x), dev(w), dev(b), 2, pads, 2, 2, True)
    close(yd, y)
    gy = rand(rng, *y.shape)
    want = conv1d_backward_ref(gy, x, w, **kw)
    got = G.conv1d_backward(dev(gy), dev(x), dev(w), 2, pads, 2, 2, True)
    for g, r_, name in zip(got, want, ("gx", "gw", "gb")):
        close(g, r_, name)


def test_weight_gradient_split_k_is_deterministic_and_exact():
    from edgecnn.kernels.cuda import _launch
    rng = np.random.default_rng(13)
    x, w = rand(rng, 2, 1, 6, 6), rand(rng, 2, 1, 3, 3)
    gy = rand(rng, 2, 2, 4, 4)
    assert _launch.split_k(3, 2 * 16)[0] > 1  # this shape takes the split-K path
    want = C.conv2d_backward(gy, x, w, need_input_grad=False, need_bias_grad=False)[1]
    s = _settings(w.shape)
    args = (s.stride, s.pads, s.dilation, 1, False, False, False)
    first = G.conv2d_backward(dev(gy), dev(x), dev(w), *args)[1]
    again = G.conv2d_backward(dev(gy), dev(x), dev(w), *args)[1]
    close(first, want)
    np.testing.assert_array_equal(first.copy_to_host(), again.copy_to_host())


def test_public_entry_points_dispatch_device_arrays():
    """edgecnn.kernels.conv2d_forward/backward hand device arrays to the twins and return device arrays."""
    from edgecnn.kernels.cuda import _device
    rng = np.random.default_rng(14)
    x, w, b = rand(rng, 2, 2, 5, 5), rand(rng, 4, 1, 3, 3), rand(rng, 4)
    kw = dict(padding="same", groups=2, stride=2)
    y = C.conv2d_forward(dev(x), dev(w), dev(b), **kw)
    assert _device.is_device_array(y)
    close(y, C.conv2d_forward(x, w, b, **kw))
    gy = rand(rng, *y.shape)
    got = C.conv2d_backward(dev(gy), dev(x), dev(w), **kw)
    for g, want in zip(got, C.conv2d_backward(gy, x, w, **kw)):
        close(g, want)
    x1, w1 = rand(rng, 2, 2, 7), rand(rng, 3, 2, 3)
    y1 = C.conv1d_forward(dev(x1), dev(w1), None, padding=1)
    close(y1, C.conv1d_forward(x1, w1, None, padding=1))
