"""CUDA dense kernels (tiled shared-memory GEMMs) equal the CPU kernels; run under the simulator."""
import numpy as np
import pytest

from test_cuda_sim import close, cpu_op, dev, rand, skip_unless_cuda
from test_cuda_sim import small_blocks  # noqa: F401  (fixture)

skip_unless_cuda()

from edgecnn.kernels.cuda import dense as G  # noqa: E402

pytestmark = pytest.mark.usefixtures("small_blocks")


def _want(x, w, b, gy):
    fwd, bwd = cpu_op("dense", "dense_forward"), cpu_op("dense", "dense_backward")
    if fwd is None or bwd is None:  # float64 definitions until the CPU kernels land
        x64, w64, g64 = (a.astype(np.float64) for a in (x, w, gy))
        return x64 @ w64.T + b, (g64 @ w64, g64.T @ x64, g64.sum(axis=0))
    return fwd(x, w, b), bwd(gy, x, w)


@pytest.mark.parametrize("n,i,o", [(5, 9, 7), (1, 3, 10), (9, 4, 2)])
def test_dense_forward_backward(n, i, o):
    rng = np.random.default_rng(n * 100 + i)
    x, w, b, gy = rand(rng, n, i), rand(rng, o, i), rand(rng, o), rand(rng, n, o)
    want_y, (want_gx, want_gw, want_gb) = _want(x, w, b, gy)
    close(G.dense_forward(dev(x), dev(w), dev(b)), want_y, "y")
    gx, gw, gb = G.dense_backward(dev(gy), dev(x), dev(w))
    close(gx, want_gx, "gx")
    close(gw, want_gw, "gw")
    close(gb, want_gb, "gb")


def test_dense_without_bias_and_grads():
    rng = np.random.default_rng(7)
    x, w, gy = rand(rng, 3, 5), rand(rng, 6, 5), rand(rng, 3, 6)
    close(G.dense_forward(dev(x), dev(w)), x.astype(np.float64) @ w.T)
    gx, gw, gb = G.dense_backward(dev(gy), dev(x), dev(w), need_input_grad=False, need_bias_grad=False)
    assert gx is None and gb is None
    close(gw, gy.astype(np.float64).T @ x)
