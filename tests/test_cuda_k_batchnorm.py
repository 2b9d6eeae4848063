"""CUDA batch norm (per-channel block reductions) equals the CPU kernels; simulator."""
import numpy as np
import pytest

from test_cuda_sim import close, cpu_op, dev, host, rand, skip_unless_cuda
from test_cuda_sim import small_blocks  # noqa: F401  (fixture)

skip_unless_cuda()

from edgecnn.kernels.cuda import batchnorm as G  # noqa: E402

pytestmark = pytest.mark.usefixtures("small_blocks")


def _fwd_ref(x, gamma, beta, rm, rv, training, momentum, eps):
    """float64 definitions (PyTorch semantics); returns y, mean, invstd, new running mean/var."""
    x = x.astype(np.float64)
    c = (None, slice(None), None, None)
    if training:
        m = x.mean(axis=(0, 2, 3))
        v = x.var(axis=(0, 2, 3))
        cnt = x.size // x.shape[1]
        rm = (1 - momentum) * rm + momentum * m
        rv = (1 - momentum) * rv + momentum * v * cnt / (cnt - 1)
    else:
        m, v = rm.astype(np.float64), rv.astype(np.float64)
    inv = 1 / np.sqrt(v + eps)
    return (x - m[c]) * inv[c] * gamma[c] + beta[c], m, inv, rm, rv


def _bwd_ref(gy, x, gamma, mean, invstd):
    gy, x = gy.astype(np.float64), x.astype(np.float64)
    c = (None, slice(None), None, None)
    xhat = (x - mean[c]) * invstd[c]
    gbeta = gy.sum(axis=(0, 2, 3))
    ggamma = (gy * xhat).sum(axis=(0, 2, 3))
    m = x.size // x.shape[1]
    gx = gamma[c] * invstd[c] * (gy - gbeta[c] / m - xhat * ggamma[c] / m)
    return gx, ggamma, gbeta


@pytest.mark.parametrize("training", [True, False])
def test_batchnorm_forward_backward(training):
    rng = np.random.default_rng(int(training))
    x = rand(rng, 3, 4, 5, 3) * 2 + 1
    gamma, beta = rand(rng, 4), rand(rng, 4)
    rm, rv = rand(rng, 4), rng.random(4).astype(np.float32) + 0.5
    fwd, bwd = cpu_op("batchnorm", "batchnorm2d_forward"), cpu_op("batchnorm", "batchnorm2d_backward")
    d_rm, d_rv = dev(rm), dev(rv)
    y, sm, si = G.batchnorm2d_forward(dev(x), dev(gamma), dev(beta), d_rm, d_rv, training, 0.1, 1e-5)
    if fwd is None:
        want_y, want_m, want_i, want_rm, want_rv = _fwd_ref(x, gamma, beta, rm, rv, training, 0.1, 1e-5)
    else:
        c_rm, c_rv = rm.copy(), rv.copy()
        want_y, want_m, want_i = fwd(x, gamma, beta, c_rm, c_rv, training=training, momentum=0.1, eps=1e-5)
        want_rm, want_rv = c_rm, c_rv
    close(y, want_y, "y")
    close(d_rm, want_rm, "running_mean")
    close(d_rv, want_rv, "running_var")
    if training:
        close(sm, want_m, "save_mean")
        close(si, want_i, "save_invstd")
        gy = rand(rng, *x.shape)
        gx, gg, gb = G.batchnorm2d_backward(dev(gy), dev(x), dev(gamma), sm, si)
        if bwd is None:
            want = _bwd_ref(gy, x, gamma, host(sm).astype(np.float64), host(si).astype(np.float64))
        else:
            want = bwd(gy, x, gamma, want_m, want_i)
        for got, w, name in zip((gx, gg, gb), want, ("gx", "ggamma", "gbeta")):
            close(got, w, name)


def test_training_without_running_stats():
    rng = np.random.default_rng(5)
    x, gamma, beta = rand(rng, 2, 3, 2, 2), rand(rng, 3), rand(rng, 3)
    y, sm, si = G.batchnorm2d_forward(dev(x), dev(gamma), dev(beta), None, None, True, 0.1, 1e-5)
    want_y = _fwd_ref(x, gamma, beta, np.zeros(3), np.ones(3), True, 0.1, 1e-5)[0]
    close(y, want_y)
