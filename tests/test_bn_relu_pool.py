"""The fused batch norm (+ ReLU) + 2x2 max pool kernels against the float64 references of the two ops
(tests/reference), and the executor's fusion of BatchNorm2D into MaxPool2D against the same model
run layer by layer."""
import numpy as np
import pytest

from edgecnn import fusion, layers as L, models, optim
from edgecnn.graph import Input, Model
from edgecnn.kernels import bn_relu_pool_backward, bn_relu_pool_forward
from reference.batchnorm import (batchnorm2d_bwd_ref, batchnorm2d_infer_ref, batchnorm2d_running_ref,
                                 batchnorm2d_train_ref)
from reference.pool import max_pool2d_bwd_ref, max_pool2d_ref

RTOL, ATOL = 1e-4, 1e-5
SHAPES = [(2, 3, 4, 4), (3, 5, 7, 9), (1, 2, 2, 2), (4, 8, 14, 14), (2, 4, 7, 7)]


def _data(shape, seed):
    rng = np.random.default_rng(seed)
    c = shape[1]
    x = (rng.standard_normal(shape) * 2 + 0.5).astype(np.float32)
    gamma = rng.uniform(-1.5, 1.5, c).astype(np.float32)  # negative scales flip which cell wins
    beta = rng.standard_normal(c).astype(np.float32)
    rm = rng.standard_normal(c).astype(np.float32)
    rv = rng.uniform(0.5, 2, c).astype(np.float32)
    return x, gamma, beta, rm, rv


def _ref_fwd(z, relu):
    return max_pool2d_ref(np.maximum(z, 0) if relu else z, 2)


@pytest.mark.parametrize("relu", [True, False])
@pytest.mark.parametrize("shape", SHAPES)
def test_training_forward_and_backward_match_the_float64_reference(shape, relu):
    x, gamma, beta, rm, rv = _data(shape, sum(shape))
    rm0, rv0 = rm.copy(), rv.copy()
    y, am, mean, invstd = bn_relu_pool_forward(x, gamma, beta, rm, rv, training=True, relu=relu)
    z, rmean, rvar = batchnorm2d_train_ref(x, gamma, beta)
    yr, ar = _ref_fwd(z, relu)
    np.testing.assert_allclose(y, yr, rtol=RTOL, atol=ATOL)
    np.testing.assert_array_equal(am, ar)  # float64 and float32 agree on every window's winner here
    np.testing.assert_allclose(mean, rmean, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(invstd, 1 / np.sqrt(rvar + 1e-5), rtol=RTOL, atol=ATOL)
    m = shape[0] * shape[2] * shape[3]
    for got, want in zip((rm, rv), batchnorm2d_running_ref(rm0, rv0, rmean, rvar, m)):
        np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)

    gy = np.random.default_rng(1).standard_normal(y.shape).astype(np.float32)
    gx, gg, gb = bn_relu_pool_backward(gy, y, am, x, gamma, mean, invstd, relu=relu)
    gz = max_pool2d_bwd_ref(gy, ar, x.shape)  # dL/d(pool input)
    if relu:
        gz = gz * (z > 0)
    rx, rg, rb = batchnorm2d_bwd_ref(gz, x, gamma)
    np.testing.assert_allclose(gx, rx, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(gg, rg, rtol=RTOL, atol=1e-4)
    np.testing.assert_allclose(gb, rb, rtol=RTOL, atol=1e-4)


@pytest.mark.parametrize("relu", [True, False])
def test_inference_uses_the_running_statistics(relu):
    x, gamma, beta, rm, rv = _data((3, 4, 6, 8), 5)
    before = rm.copy(), rv.copy()
    y, am, _, _ = bn_relu_pool_forward(x, gamma, beta, rm, rv, training=False, relu=relu)
    yr, ar = _ref_fwd(batchnorm2d_infer_ref(x, gamma, beta, rm, rv), relu)
    np.testing.assert_allclose(y, yr, rtol=RTOL, atol=ATOL)
    np.testing.assert_array_equal(am, ar)
    assert np.array_equal(rm, before[0]) and np.array_equal(rv, before[1])


def test_relu_ties_keep_the_first_cell_in_raster_order():
    x = np.full((1, 1, 2, 2), -3.0, np.float32)
    x[0, 0, 1, 1] = -1.0  # every cell is negative after a zero shift: all four ReLU to 0
    g, b = np.ones(1, np.float32), np.full(1, -10.0, np.float32)
    y, am, _, _ = bn_relu_pool_forward(x, g, b, None, None, training=True)
    assert y[0, 0, 0, 0] == 0 and am[0, 0, 0, 0] == 0


def test_errors_name_the_parameter_and_shapes():
    x, gamma, beta, rm, rv = _data((2, 3, 4, 4), 0)
    with pytest.raises(ValueError, match=r"gamma must have shape \(3,\)"):
        bn_relu_pool_forward(x, gamma[:2], beta, rm, rv)
    with pytest.raises(ValueError, match="at least 2x2"):
        bn_relu_pool_forward(np.ascontiguousarray(x[:, :, :1]), gamma, beta, rm, rv)
    with pytest.raises(ValueError, match=r"out must have shape \(2, 3, 2, 2\)"):
        bn_relu_pool_forward(x, gamma, beta, rm, rv, out=np.empty((2, 3, 4, 4), np.float32))
    with pytest.raises(TypeError, match="relu must be a bool"):
        bn_relu_pool_forward(x, gamma, beta, rm, rv, relu="yes")
    y, am, mean, invstd = bn_relu_pool_forward(x, gamma, beta, rm, rv)
    with pytest.raises(ValueError, match="gx must not overlap x"):
        bn_relu_pool_backward(np.ones_like(y), y, am, x, gamma, mean, invstd, gx=x)
    with pytest.raises(ValueError, match=r"gy must have shape \(2, 3, 2, 2\)"):
        bn_relu_pool_backward(np.zeros((2, 3, 4, 4), np.float32), y, am, x, gamma, mean, invstd)
    bad = am.copy()
    bad[0, 0, 0, 0] = 16
    gx = np.full_like(x, 7.0)
    with pytest.raises(ValueError, match=r"argmax holds 1 indices outside \[0, 16\)"):
        bn_relu_pool_backward(np.ones_like(y), y, bad, x, gamma, mean, invstd, gx=gx)


# --- the executor ---------------------------------------------------------------------------------

def _pair(enabled, build):
    old = fusion.ENABLED
    fusion.ENABLED = enabled
    try:
        m = build()
        m.plan(8)  # plans pick fusion when they are made
    finally:
        fusion.ENABLED = old
    return m


def test_default_model_trains_the_same_fused_and_layer_by_layer():
    fused, plain = _pair(True, models.default), _pair(False, models.default)
    assert len(fusion.bn_pool_pairs(fused)) == 3
    assert fused.plan(8).nbytes() < plain.plan(8).nbytes()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, 1, 28, 28)).astype(np.float32)
    y = rng.integers(0, 10, 8)
    opts = [optim.Adam(m.parameters(), lr=1e-3) for m in (fused, plain)]
    for _ in range(3):
        losses = []
        for m, o in zip((fused, plain), opts):
            losses.append(m.train_step(x, y)[0])
            o.step()
        assert losses[0] == pytest.approx(losses[1], rel=1e-5)
    for a, b in zip(fused.parameters(), plain.parameters()):
        np.testing.assert_allclose(a.value, b.value, rtol=1e-4, atol=1e-5, err_msg=a.name)
    np.testing.assert_allclose(fused.predict(x), plain.predict(x), rtol=1e-4, atol=1e-4)


def _bn_pool_net(second_consumer=False, pool=2):
    inp = Input((3, 8, 8))
    h = L.BatchNorm2D(activation="relu")(L.Conv2D(4, 3, padding=1)(inp))
    p = L.MaxPool2D(pool)(h)
    out = L.Flatten()(p)
    if second_consumer:
        out = L.Concatenate()([out, L.Flatten()(L.MaxPool2D(4)(h))])
    return Model(inp, L.Dense(3)(out))


@pytest.mark.parametrize("second_consumer,pool,fused", [(False, 2, True), (True, 2, False), (False, 4, False)])
def test_fused_only_where_the_batch_norm_output_feeds_one_2x2_pool(second_consumer, pool, fused):
    m = _bn_pool_net(second_consumer, pool)
    assert bool(fusion.bn_pool_pairs(m)) == fused
    x = np.random.default_rng(1).standard_normal((4, 3, 8, 8)).astype(np.float32)
    loss, _ = m.train_step(x, np.array([0, 1, 2, 0]))
    assert np.isfinite(loss)
