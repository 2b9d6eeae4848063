"""CUDA losses (fused with their gradient, fixed-order reduction) equal the CPU kernels; simulator."""
import numpy as np
import pytest

from test_cuda_sim import close, cpu_op, dev, host, rand, skip_unless_cuda
from test_cuda_sim import small_blocks  # noqa: F401  (fixture)

skip_unless_cuda()

from edgecnn.kernels.cuda import losses as G  # noqa: E402

pytestmark = pytest.mark.usefixtures("small_blocks")


def _xent_ref(z, labels):
    z = z.astype(np.float64)
    n = z.shape[0]
    m = z.max(axis=1, keepdims=True)
    lse = m[:, 0] + np.log(np.exp(z - m).sum(axis=1))
    p = np.exp(z - lse[:, None])
    p[np.arange(n), labels] -= 1
    return float(np.mean(lse - z[np.arange(n), labels])), p / n


def _bce_ref(z, t):
    z, t = z.astype(np.float64), t.astype(np.float64)
    loss = np.maximum(z, 0) - z * t + np.log1p(np.exp(-np.abs(z)))
    return float(loss.mean()), (1 / (1 + np.exp(-z)) - t) / z.size


def _mse_ref(p, t):
    d = p.astype(np.float64) - t
    return float(np.mean(d * d)), 2 * d / d.size


def _want(name, ref, a, b):
    f = cpu_op("losses", name)
    return ref(a, b) if f is None else f(a, b)


@pytest.mark.parametrize("dtype", [np.int32, np.int64])
def test_softmax_cross_entropy(dtype):
    rng = np.random.default_rng(1)
    z = rand(rng, 70, 10) * 3  # 70 rows: more than one reduction chunk with the shrunk blocks
    z[0, 3] = 1e4
    labels = rng.integers(0, 10, 70).astype(dtype)
    want_loss, want_grad = _want("softmax_cross_entropy", _xent_ref, z, labels)
    loss, grad = G.softmax_cross_entropy(dev(z), dev(labels))
    assert isinstance(loss, float)
    np.testing.assert_allclose(loss, want_loss, rtol=1e-5)
    close(grad, want_grad)


def test_loss_can_stay_on_device_and_is_deterministic():
    rng = np.random.default_rng(2)
    z, labels = rand(rng, 33, 4), rng.integers(0, 4, 33).astype(np.int32)
    from numba import cuda
    out = cuda.device_array(1, np.float32)
    got, _ = G.softmax_cross_entropy(dev(z), dev(labels), loss_out=out)
    assert got is out
    again, _ = G.softmax_cross_entropy(dev(z), dev(labels))
    assert host(out)[0] == np.float32(again)  # bit-identical: fixed reduction order


def test_bad_label_is_an_error_or_nan_on_device_never_a_bad_read():
    from numba import cuda
    z, labels = np.zeros((2, 3), np.float32), np.array([0, 7], np.int32)
    with pytest.raises(ValueError, match="labels"):
        G.softmax_cross_entropy(dev(z), dev(labels))
    out = cuda.device_array(1, np.float32)
    _, grad = G.softmax_cross_entropy(dev(z), dev(labels), loss_out=out)
    assert np.isnan(host(out)[0]) and np.isnan(host(grad)[1]).all() and not np.isnan(host(grad)[0]).any()


def test_bce_with_logits():
    rng = np.random.default_rng(3)
    z, t = rand(rng, 6, 7) * 4, rng.random((6, 7)).astype(np.float32)
    want_loss, want_grad = _want("bce_with_logits", _bce_ref, z, t)
    loss, grad = G.bce_with_logits(dev(z), dev(t))
    np.testing.assert_allclose(loss, want_loss, rtol=1e-5)
    close(grad, want_grad)


def test_mse_loss():
    rng = np.random.default_rng(4)
    p, t = rand(rng, 5, 3, 4), rand(rng, 5, 3, 4)
    want_loss, want_grad = _want("mse_loss", _mse_ref, p, t)
    loss, grad = G.mse_loss(dev(p), dev(t))
    np.testing.assert_allclose(loss, want_loss, rtol=1e-5)
    close(grad, want_grad)
