"""CUDA dropout gives the CPU kernel's mask bit for bit (same counter-based hash); simulator."""
import numpy as np
import pytest

from test_cuda_sim import close, cpu_op, dev, host, rand, skip_unless_cuda
from test_cuda_sim import small_blocks  # noqa: F401  (fixture)

skip_unless_cuda()

from edgecnn.kernels.cuda import dropout as G  # noqa: E402

pytestmark = [pytest.mark.usefixtures("small_blocks"),
              # the simulator runs the uint64 hash on NumPy scalars, which warn when they wrap (by design)
              pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")]


@pytest.mark.parametrize("rate,seed", [(0.25, 0), (0.5, 12345), (0.9, 2**64 - 1)])
def test_dropout_matches_cpu_mask_and_values(rate, seed):
    fwd, bwd = cpu_op("dropout", "dropout_forward"), cpu_op("dropout", "dropout_backward")
    rng = np.random.default_rng(1)
    x, gy = rand(rng, 3, 4, 5), rand(rng, 3, 4, 5)
    y, mask = fwd(x, rate, seed)
    yd, md = G.dropout_forward(dev(x), rate, seed)
    np.testing.assert_array_equal(host(md), mask)
    close(yd, y)
    close(G.dropout_backward(dev(gy), md, rate), bwd(gy, mask, rate))


def test_inference_copies_and_in_place_works():
    rng = np.random.default_rng(2)
    x = rand(rng, 50)
    d = dev(x)
    y, m = G.dropout_forward(d, 0.5, 7, training=False, out=d)
    assert y is d
    close(d, x)
    assert (host(m) == 1).all()
    g = dev(x)
    G.dropout_backward(g, m, 0.5, gx=g)
    close(g, x.astype(np.float64) * 2)
