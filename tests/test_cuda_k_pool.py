"""CUDA pooling kernels equal the CPU kernels (exactly for max/avg: same summation order); simulator."""
import numpy as np
import pytest

from test_cuda_sim import close, dev, host, rand, skip_unless_cuda
from test_cuda_sim import small_blocks  # noqa: F401  (fixture)

skip_unless_cuda()

from edgecnn.kernels import pool as C  # noqa: E402
from edgecnn.kernels.cuda import pool as G  # noqa: E402

pytestmark = pytest.mark.usefixtures("small_blocks")

# (kernel, stride, padding): overlapping windows, padding, a non-square window, stride > kernel
SETTINGS = [((3, 3), (2, 2), (1, 1)), ((2, 2), (2, 2), (0, 0)), ((3, 2), (1, 2), (1, 0)),
            ((2, 2), (3, 3), (1, 0))]


@pytest.mark.parametrize("k,s,p", SETTINGS)
def test_max_pool(k, s, p):
    rng = np.random.default_rng(sum(k + s + p))
    x = rand(rng, 2, 2, 7, 6)
    x[0, 0, 1, :] = 5.0  # ties: the first in raster order wins
    y, am = C.max_pool2d_forward(x, k, s, p)
    yd, amd = G.max_pool2d_forward(dev(x), k, s, p)
    close(yd, y)
    np.testing.assert_array_equal(host(amd), am)
    gy = rand(rng, *y.shape)
    gx = C.max_pool2d_backward(gy, am, x.shape)
    close(G.max_pool2d_backward(dev(gy), amd, x.shape), gx, "per-plane path")
    close(G.max_pool2d_backward(dev(gy), amd, x.shape, settings=(k, s, p)), gx, "gather path")


@pytest.mark.parametrize("k,s,p", SETTINGS)
@pytest.mark.parametrize("include", [True, False])
def test_avg_pool(k, s, p, include):
    rng = np.random.default_rng(3)
    x = rand(rng, 2, 2, 7, 6)
    y = C.avg_pool2d_forward(x, k, s, p, count_include_pad=include)
    close(G.avg_pool2d_forward(dev(x), k, s, p, include), y)
    gy = rand(rng, *y.shape)
    gx = C.avg_pool2d_backward(gy, x.shape, k, s, p, count_include_pad=include)
    close(G.avg_pool2d_backward(dev(gy), x.shape, k, s, p, include), gx)


@pytest.mark.parametrize("k,s,p", SETTINGS[:3])
def test_l2_pool(k, s, p):
    rng = np.random.default_rng(4)
    x = rand(rng, 2, 2, 7, 6)
    x[1, 1, :3, :3] = 0  # a window with y == 0 passes no gradient
    y = C.l2_pool2d_forward(x, k, s, p)
    yd = G.l2_pool2d_forward(dev(x), k, s, p)
    close(yd, y)
    gy = rand(rng, *y.shape)
    close(G.l2_pool2d_backward(dev(gy), dev(x), yd, k, s, p), C.l2_pool2d_backward(gy, x, y, k, s, p))


def test_global_avg_pool():
    rng = np.random.default_rng(5)
    x = rand(rng, 3, 5, 4, 3)
    close(G.global_avg_pool2d_forward(dev(x)), C.global_avg_pool2d_forward(x))
    gy = rand(rng, 3, 5)
    close(G.global_avg_pool2d_backward(dev(gy), x.shape), C.global_avg_pool2d_backward(gy, x.shape))
