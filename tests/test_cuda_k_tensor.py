"""Device twins of the executor's NumPy calls (copy, add, fill, concat slices, finiteness); simulator."""
import numpy as np
import pytest

from test_cuda_sim import close, dev, host, rand, skip_unless_cuda
from test_cuda_sim import small_blocks  # noqa: F401  (fixture)

skip_unless_cuda()

from edgecnn.kernels.cuda import tensor as G  # noqa: E402

pytestmark = pytest.mark.usefixtures("small_blocks")


def test_copy_add_fill():
    rng = np.random.default_rng(1)
    a, b = rand(rng, 3, 4, 5), rand(rng, 3, 4, 5)
    da, db = dev(a), dev(b)
    out = G.copy(da, dev(np.zeros_like(a)))
    close(out, a)
    close(G.add(da, db), a.astype(np.float64) + b)
    G.add(da, db, out=da)  # in place: gradient accumulation
    close(da, a.astype(np.float64) + b)
    close(G.fill(db, 0.5), np.full(b.shape, 0.5))


def test_concat_and_split_channels():
    rng = np.random.default_rng(2)
    xs = [rand(rng, 2, c, 3, 2) for c in (1, 3, 2)]
    out = dev(np.zeros((2, 6, 3, 2), np.float32))
    G.concat_channels([dev(x) for x in xs], out)
    want = np.concatenate(xs, axis=1)
    close(out, want)
    gxs = [dev(np.zeros_like(x)) for x in xs]
    G.split_channels(dev(want * 2), gxs)
    for gx, x in zip(gxs, xs):
        close(gx, x.astype(np.float64) * 2)


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # simulator: inf * 0 on NumPy
def test_all_finite():
    x = np.ones(40, np.float32)
    assert G.all_finite(dev(x))
    for bad in (np.nan, np.inf, -np.inf):
        y = x.copy()
        y[37] = bad
        assert not G.all_finite(dev(y))
    assert host(dev(x)).sum() == 40
