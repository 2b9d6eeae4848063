"""CUDA activation kernels equal the CPU kernels (float32 within 1e-5); run under the simulator."""
import numpy as np
import pytest

from test_cuda_sim import close, cpu_op, dev, host, rand, skip_unless_cuda
from test_cuda_sim import small_blocks  # noqa: F401  (fixture)

skip_unless_cuda()

from edgecnn.kernels.cuda import activations as G  # noqa: E402

pytestmark = pytest.mark.usefixtures("small_blocks")


def _ref(name, x, alpha=0.01):
    """float64 definitions: (forward, backward given gy) for when a CPU kernel is missing."""
    x = x.astype(np.float64)
    if name == "relu":
        y = np.maximum(x, 0)
        return y, lambda g: g * (x > 0)
    if name == "leaky_relu":
        y = np.where(x > 0, x, alpha * x)
        return y, lambda g: np.where(x > 0, g, alpha * g)
    if name == "sigmoid":
        y = 1 / (1 + np.exp(-x))
        return y, lambda g: g * y * (1 - y)
    if name == "tanh":
        y = np.tanh(x)
        return y, lambda g: g * (1 - y * y)
    if name == "identity":
        return x, lambda g: g
    e = np.exp(x - x.max(axis=1, keepdims=True))
    s = e / e.sum(axis=1, keepdims=True)
    if name == "softmax":
        return s, lambda g: s * (g - (g * s).sum(axis=1, keepdims=True))
    return np.log(s), lambda g: g - s * g.sum(axis=1, keepdims=True)


def _want(name, x, gy, **kw):
    fwd, bwd = cpu_op("activations", f"{name}_forward"), cpu_op("activations", f"{name}_backward")
    if fwd is None or bwd is None:
        y, back = _ref(name, x, **kw)
        return y, back(gy.astype(np.float64))
    y = fwd(x, **kw)
    return y, bwd(gy, x, y, **kw)


@pytest.mark.parametrize("name", ["relu", "leaky_relu", "sigmoid", "tanh", "identity"])
def test_elementwise_forward_backward(name):
    rng = np.random.default_rng(1)
    x = rand(rng, 3, 5, 7) * 3
    x[0, 0, :3] = 0  # the kink
    gy = rand(rng, 3, 5, 7)
    kw = {"alpha": 0.2} if name == "leaky_relu" else {}
    want_y, want_gx = _want(name, x, gy, **kw)
    y = getattr(G, f"{name}_forward")(dev(x), **kw)
    close(y, want_y, f"{name} forward")
    gx = getattr(G, f"{name}_backward")(dev(gy), dev(x), y, **kw)
    close(gx, want_gx, f"{name} backward")


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_softmax_forward_backward_stable(name):
    rng = np.random.default_rng(2)
    x = rand(rng, 37, 6)
    x[0] = [1e4, -1e4, 0, 1e4, 3, -2]
    gy = rand(rng, 37, 6)
    want_y, want_gx = _want(name, x, gy)
    y = getattr(G, f"{name}_forward")(dev(x))
    close(y, want_y, f"{name} forward")
    assert np.isfinite(host(y)).all()
    close(getattr(G, f"{name}_backward")(dev(gy), dev(x), y), want_gx, f"{name} backward")


def test_in_place_forward_and_backward():
    rng = np.random.default_rng(3)
    x = rand(rng, 40)
    d = dev(x)
    out = G.relu_forward(d, out=d)
    assert out is d
    close(d, np.maximum(x, 0))
    gy = rand(rng, 40)
    g = dev(gy)
    G.sigmoid_backward(g, None, dev(x), gx=g)
    close(g, gy.astype(np.float64) * x * (1 - x.astype(np.float64)))
