"""bn_relu_pool on CUDA device arrays (batch norm then pooling, as two device ops) equals the CPU
kernel; simulator, tiny shapes."""
import numpy as np
import pytest

from test_cuda_sim import close, dev, host, rand, skip_unless_cuda
from test_cuda_sim import small_blocks  # noqa: F401  (fixture)

skip_unless_cuda()

from edgecnn.kernels import bn_relu_pool_backward, bn_relu_pool_forward  # noqa: E402

pytestmark = pytest.mark.usefixtures("small_blocks")


@pytest.mark.parametrize("relu", [True, False])
@pytest.mark.parametrize("training", [True, False])
def test_device_matches_cpu(relu, training):
    rng = np.random.default_rng(3 + relu + 2 * training)
    x = rand(rng, 2, 3, 4, 5) * 2 + 0.5
    gamma, beta = rand(rng, 3), rand(rng, 3)
    rm, rv = rand(rng, 3), rng.random(3).astype(np.float32) + 0.5
    c_rm, c_rv, d_rm, d_rv = rm.copy(), rv.copy(), dev(rm), dev(rv)
    want = bn_relu_pool_forward(x, gamma, beta, c_rm, c_rv, training=training, relu=relu)
    got = bn_relu_pool_forward(dev(x), dev(gamma), dev(beta), d_rm, d_rv, training=training, relu=relu)
    close(got[0], want[0], "y")
    assert np.array_equal(host(got[1]), want[1])
    close(d_rm, c_rm, "running_mean")
    close(d_rv, c_rv, "running_var")
    if training:
        gy = rand(rng, *want[0].shape)
        w = bn_relu_pool_backward(gy, want[0], want[1], x, gamma, want[2], want[3], relu=relu)
        g = bn_relu_pool_backward(dev(gy), got[0], got[1], dev(x), dev(gamma), got[2], got[3], relu=relu)
        for a, b, name in zip(g, w, ("gx", "ggamma", "gbeta")):
            close(a, b, name)
