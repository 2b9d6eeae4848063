"""CUDA optimizer updates equal the CPU optimizer kernels (several steps, all options); simulator."""
import math

import numpy as np
import pytest

from test_cuda_sim import close, dev, host, rand, skip_unless_cuda
from test_cuda_sim import small_blocks  # noqa: F401  (fixture)

skip_unless_cuda()

from edgecnn import optim as C  # noqa: E402
from edgecnn.kernels.cuda import optim as G  # noqa: E402

pytestmark = pytest.mark.usefixtures("small_blocks")
F = np.float32


@pytest.mark.parametrize("momentum,nesterov,wd", [(0.0, False, 0.0), (0.9, False, 0.01), (0.9, True, 0.0)])
def test_sgd_steps(momentum, nesterov, wd):
    rng = np.random.default_rng(1)
    p, buf = rand(rng, 70), np.zeros(70, np.float32)
    dp, dbuf = dev(p), dev(buf)
    for step in range(3):
        g = rand(rng, 70)
        args = (F(0.1), F(momentum), F(1.0), F(wd), nesterov, step == 0)
        C._sgd_range(p, g, buf, 0, p.size, *args)
        G.sgd_update(dp, dev(g), dbuf, *args)
    close(dp, p)
    close(dbuf, buf)


@pytest.mark.parametrize("decoupled", [False, True])
def test_adam_steps(decoupled):
    rng = np.random.default_rng(2)
    p = rand(rng, 5, 14)
    m, v = np.zeros_like(p), np.zeros_like(p)
    dp, dm, dv = dev(p), dev(m), dev(v)
    lr, b1, b2, wd = 1e-2, 0.9, 0.999, 0.01
    for t in range(1, 4):
        g = rand(rng, 5, 14)
        bc1, bc2 = 1 - b1 ** t, 1 - b2 ** t
        w, decay = (0.0, 1 - lr * wd) if decoupled else (wd, 1.0)
        args = (F(b1), F(1 - b1), F(b2), F(1 - b2), F(lr / bc1), F(1 / math.sqrt(bc2)), F(1e-8), F(w),
                F(decay))
        C._adam_range(p.reshape(-1), g.reshape(-1), m.reshape(-1), v.reshape(-1), 0, p.size, *args)
        G.adam_update(dp, dev(g), dm, dv, *args)
    close(dp, p)
    close(dm, m)
    np.testing.assert_allclose(host(dv), v, rtol=1e-5, atol=1e-9)


def test_tiny_state_is_flushed_like_the_cpu():
    # values that decay below edgecnn.optim.FLUSH_BELOW become exactly 0 on both devices
    p = np.ones(40, np.float32)
    m = np.linspace(-3e-30, 3e-30, 40).astype(np.float32)
    v = np.abs(m) * 2
    buf = m.copy()
    dp, dm, dv, dbuf, dg = dev(p), dev(m), dev(v), dev(buf), dev(np.zeros(40, np.float32))
    args = (F(0.9), F(0.1), F(0.999), F(0.001), F(1e-3), F(1.0), F(1e-8), F(0.0), F(1.0))
    C._adam_range(p.copy(), np.zeros(40, np.float32), m, v, 0, 40, *args)
    G.adam_update(dp, dg, dm, dv, *args)
    sargs = (F(0.1), F(0.9), F(1.0), F(0.0), False, False)
    C._sgd_range(p.copy(), np.zeros(40, np.float32), buf, 0, 40, *sargs)
    G.sgd_update(dev(p), dg, dbuf, *sargs)
    assert 0 < np.count_nonzero(m == 0) < 40 and 0 < np.count_nonzero(buf == 0) < 40
    np.testing.assert_array_equal(host(dm), m)
    np.testing.assert_array_equal(host(dv), v)
    np.testing.assert_array_equal(host(dbuf), buf)
