"""Each layer's forward/backward (standalone API) against float64 references, configs, validation.

These check the wiring (settings, fused activations, parameter gradients), not the kernels' numerics,
which the kernel tests cover: tolerances are float32 round-off on tiny shapes.
"""
import numpy as np
import pytest

import reference as R
from edgecnn import layers as L
from edgecnn.graph import Input

RTOL, ATOL = 1e-4, 1e-5


def _rand(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _close(a, b, what=""):
    b = np.asarray(b, np.float64)
    np.testing.assert_allclose(a, b, rtol=RTOL, atol=ATOL * max(1.0, np.abs(b).max()), err_msg=what)


_ACT = {None: (lambda z: z, lambda g, z: g), "relu": (R.relu_ref, R.relu_bwd_ref),
        "tanh": (R.tanh_ref, R.tanh_bwd_ref), "sigmoid": (R.sigmoid_ref, R.sigmoid_bwd_ref),
        "leaky_relu": (R.leaky_relu_ref, R.leaky_relu_bwd_ref)}


@pytest.mark.parametrize("kw,act", [
    (dict(filters=4, kernel_size=3), "relu"),
    (dict(filters=4, kernel_size=(3, 2), strides=2, padding="same"), "sigmoid"),
    (dict(filters=6, kernel_size=3, padding=2, dilation=2, groups=3, use_bias=False), None),
    (dict(filters=3, kernel_size=3, padding="full"), "leaky_relu"),
])
def test_conv2d(kw, act):
    c_in = 3 if kw.get("groups") == 3 else 2
    x = _rand(2, c_in, 7, 6)
    layer = L.Conv2D(activation=act, **kw)
    y, ctx = layer.forward([x], training=True)
    p = {q.name.split("/")[1]: q.value for q in layer.params}
    conv = dict(stride=layer.strides, padding=layer.padding, dilation=layer.dilation, groups=layer.groups)
    z = R.conv2d_ref(x, p["kernel"], p.get("bias"), **conv)
    fa, fb = _ACT[act]
    _close(y, fa(z), "forward")
    gy = _rand(*y.shape, seed=1)
    (gx,) = layer.backward(gy, ctx)
    gz = fb(gy, z)
    rgx, rgw, rgb = R.conv2d_backward_ref(gz, x, p["kernel"], **conv)
    _close(gx, rgx, "gx")
    _close(layer.params[0].grad, rgw, "gw")
    if layer.use_bias:
        _close(layer.params[1].grad, rgb, "gb")


def test_conv1d():
    x = _rand(2, 3, 11)
    layer = L.Conv1D(4, 3, strides=2, padding=1, activation="tanh")
    y, ctx = layer.forward([x])
    w, b = layer.params[0].value, layer.params[1].value
    z = R.conv1d_ref(x, w, b, stride=2, padding=1)
    _close(y, np.tanh(z))
    gy = _rand(*y.shape, seed=2)
    (gx,) = layer.backward(gy, ctx)
    rgx, rgw, rgb = R.conv1d_backward_ref(R.tanh_bwd_ref(gy, z), x, w, stride=2, padding=1)
    _close(gx, rgx)
    _close(layer.params[0].grad, rgw)
    _close(layer.params[1].grad, rgb)


def test_depthwise_conv2d():
    x = _rand(2, 3, 6, 6)
    layer = L.DepthwiseConv2D(3, depth_multiplier=2, padding="same")
    y, ctx = layer.forward([x])
    assert y.shape == (2, 6, 6, 6) and layer.params[0].value.shape == (6, 1, 3, 3)
    w, b = layer.params[0].value, layer.params[1].value
    _close(y, R.conv2d_ref(x, w, b, padding="same", groups=3))
    gy = _rand(*y.shape, seed=3)
    (gx,) = layer.backward(gy, ctx)
    rgx, rgw, _ = R.conv2d_backward_ref(gy, x, w, padding="same", groups=3)
    _close(gx, rgx)
    _close(layer.params[0].grad, rgw)


def test_fixed_filter_is_a_non_trainable_filter_bank():
    sobel_x = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], np.float32)
    box = np.ones((1, 1), np.float32)  # centred into 3x3
    layer = L.FixedFilter([sobel_x, sobel_x.T, box])
    x = _rand(2, 2, 5, 5)
    y, ctx = layer.forward([x])
    assert y.shape == (2, 6, 5, 5)
    assert layer.count_params() == (0, 6 * 9) and layer.params[0].grad is None
    bank = np.zeros((3, 3, 3), np.float32)
    bank[0], bank[1], bank[2, 1, 1] = sobel_x, sobel_x.T, 1
    w = np.tile(bank, (2, 1, 1))[:, None]
    _close(y, R.conv2d_ref(x, w, padding="same", groups=2))
    _close(y[:, 2], x[:, 0])  # the centred 1x1 identity
    gy = _rand(*y.shape, seed=4)
    (gx,) = layer.backward(gy, ctx)
    _close(gx, R.conv2d_backward_ref(gy, x, w, padding="same", groups=2)[0])
    with pytest.raises(ValueError, match="centred"):
        L.FixedFilter([np.ones((3, 3)), np.ones((2, 2))])


@pytest.mark.parametrize("cls,kw", [(L.MaxPool2D, dict(pool_size=2)), (L.MaxPool2D, dict(pool_size=3, strides=2,
                                                                                          padding=1)),
                                    (L.AvgPool2D, dict(pool_size=2, strides=1)),
                                    (L.AvgPool2D, dict(pool_size=3, strides=2, padding=1,
                                                       count_include_pad=False)),
                                    (L.L2Pool2D, dict(pool_size=2))])
def test_pooling(cls, kw):
    x = _rand(2, 3, 7, 7)
    layer = cls(**kw)
    y, ctx = layer.forward([x])
    k, s, p = layer.pool_size, layer.strides, layer.padding
    gy = _rand(*y.shape, seed=5)
    (gx,) = layer.backward(gy, ctx)
    if cls is L.MaxPool2D:
        ry, arg = R.max_pool2d_ref(x, k, s, p)
        rgx = R.max_pool2d_bwd_ref(gy, arg, x.shape)
    elif cls is L.AvgPool2D:
        ry = R.avg_pool2d_ref(x, k, s, p, layer.count_include_pad)
        rgx = R.avg_pool2d_bwd_ref(gy, x.shape, k, s, p, layer.count_include_pad)
    else:
        ry = R.l2_pool2d_ref(x, k, s, p)
        rgx = R.l2_pool2d_bwd_ref(gy, x, k, s, p)
    _close(y, ry)
    _close(gx, rgx)


def test_global_avg_pool_and_flatten():
    x = _rand(2, 3, 4, 5)
    y, ctx = L.GlobalAvgPool2D().forward([x])
    _close(y, R.global_avg_pool2d_ref(x))
    gy = _rand(2, 3, seed=6)
    _close(L.GlobalAvgPool2D().backward(gy, ctx)[0], R.global_avg_pool2d_bwd_ref(gy, x.shape))
    f = L.Flatten()
    y, ctx = f.forward([x])
    assert y.shape == (2, 60) and np.shares_memory(y, x)
    gy = _rand(2, 60, seed=7)
    np.testing.assert_array_equal(f.backward(gy, ctx)[0], gy.reshape(x.shape))


@pytest.mark.parametrize("act", [None, "relu", "tanh"])
def test_dense(act):
    x = _rand(4, 7)
    layer = L.Dense(5, activation=act)
    y, ctx = layer.forward([x])
    w, b = (p.value.astype(np.float64) for p in layer.params)
    z = x.astype(np.float64) @ w.T + b
    fa, fb = _ACT[act]
    _close(y, fa(z))
    gy = _rand(4, 5, seed=8)
    (gx,) = layer.backward(gy, ctx)
    gz = fb(gy, z)
    _close(gx, gz @ w)
    _close(layer.params[0].grad, gz.T @ x)
    _close(layer.params[1].grad, gz.sum(0))


def test_dropout():
    x = np.ones((4, 50), np.float32)
    layer = L.Dropout(0.4, seed=3)
    y, ctx = layer.forward([x], training=True)
    kept = y != 0
    assert 0.3 < kept.mean() < 0.9
    _close(y[kept], np.full(kept.sum(), 1 / 0.6))
    gy = _rand(4, 50, seed=9)
    _close(layer.backward(gy, ctx)[0], np.where(kept, gy / 0.6, 0))
    y, ctx = layer.forward([x], training=False)
    np.testing.assert_array_equal(y, x)
    np.testing.assert_array_equal(layer.backward(gy, ctx)[0], gy)


def _bn_ref(x, gamma, beta, eps):
    """float64 batch norm over (N, H, W) per channel, and its input/gamma/beta gradients."""
    x = x.astype(np.float64)
    axes = (0, 2, 3)
    mu = x.mean(axes, keepdims=True)
    var = x.var(axes, keepdims=True)
    xh = (x - mu) / np.sqrt(var + eps)
    g = gamma.astype(np.float64)[None, :, None, None]
    y = g * xh + beta.astype(np.float64)[None, :, None, None]

    def bwd(gy):
        m = x.size // x.shape[1]
        gy = gy.astype(np.float64)
        gbeta = gy.sum(axes)
        ggamma = (gy * xh).sum(axes)
        gx = g / np.sqrt(var + eps) / m * (m * gy - gbeta[None, :, None, None] - xh * ggamma[None, :, None, None])
        return gx, ggamma, gbeta
    return y, bwd, mu.reshape(-1), var.reshape(-1) * (x.size // x.shape[1]) / (x.size // x.shape[1] - 1)


@pytest.mark.parametrize("act", [None, "relu"])
def test_batchnorm2d(act):
    x = _rand(3, 2, 4, 5) * 3 + 1
    layer = L.BatchNorm2D(momentum=0.2, activation=act)
    y, ctx = layer.forward([x], training=True)
    gamma, beta, rm, rv = layer.params
    gamma.value[...] = [1.5, -0.5]  # exercised after the first call: check with these values again
    beta.value[...] = [0.1, 0.2]
    rm.value[...] = 0
    rv.value[...] = 1
    y, ctx = layer.forward([x], training=True)
    ry, bwd, mu, var_unbiased = _bn_ref(x, gamma.value, beta.value, 1e-5)
    fa, fb = _ACT[act]
    _close(y, fa(ry))
    _close(rm.value, 0.2 * mu)
    _close(rv.value, 0.8 + 0.2 * var_unbiased)
    gy = _rand(*y.shape, seed=10)
    (gx,) = layer.backward(gy, ctx)
    rgx, rgg, rgb = bwd(fb(gy, ry))
    _close(gx, rgx)
    _close(gamma.grad, rgg)
    _close(beta.grad, rgb)
    # inference uses the running statistics
    y, _ = layer.forward([x], training=False)
    ref = (x - rm.value[None, :, None, None]) / np.sqrt(rv.value[None, :, None, None] + 1e-5)
    _close(y, fa(ref * gamma.value[None, :, None, None] + beta.value[None, :, None, None]))


def test_batchnorm_on_features():
    x = _rand(6, 3, seed=11)
    layer = L.BatchNorm2D()
    y, ctx = layer.forward([x], training=True)
    ry, bwd, _, _ = _bn_ref(x[:, :, None, None], *[p.value for p in layer.params[:2]], 1e-5)
    _close(y, ry[:, :, 0, 0])
    gy = _rand(6, 3, seed=12)
    _close(layer.backward(gy, ctx)[0], bwd(gy[:, :, None, None])[0][:, :, 0, 0])


@pytest.mark.parametrize("name", ["relu", "leaky_relu", "sigmoid", "tanh", "softmax", "log_softmax", "linear"])
def test_activation_layer(name):
    x = _rand(3, 5)
    layer = L.Activation(name)
    y, ctx = layer.forward([x])
    gy = _rand(3, 5, seed=13)
    (gx,) = layer.backward(gy, ctx)
    ref = {"relu": (R.relu_ref, R.relu_bwd_ref), "leaky_relu": (R.leaky_relu_ref, R.leaky_relu_bwd_ref),
           "sigmoid": (R.sigmoid_ref, R.sigmoid_bwd_ref), "tanh": (R.tanh_ref, R.tanh_bwd_ref),
           "softmax": (R.softmax_ref, R.softmax_bwd_ref), "log_softmax": (R.log_softmax_ref, R.log_softmax_bwd_ref),
           "linear": (R.identity_ref, R.identity_bwd_ref)}[name]
    _close(y, ref[0](x))
    _close(gx, ref[1](gy, x))


def test_add_and_concatenate():
    a, b, c = _rand(2, 3, 4, 4), _rand(2, 3, 4, 4, seed=1), _rand(2, 3, 4, 4, seed=2)
    add = L.Add(activation="relu")
    y, ctx = add.forward([a, b, c])
    s = a.astype(np.float64) + b + c
    _close(y, np.maximum(s, 0))
    gy = _rand(2, 3, 4, 4, seed=3)
    for g in add.backward(gy, ctx):
        _close(g, gy * (s > 0))
    cat = L.Concatenate(axis=1)
    d = _rand(2, 1, 4, 4, seed=4)
    y, ctx = cat.forward([a, d])
    np.testing.assert_array_equal(y, np.concatenate([a, d], 1))
    gy = _rand(*y.shape, seed=5)
    ga, gd = cat.backward(gy, ctx)
    np.testing.assert_array_equal(ga, gy[:, :3])
    np.testing.assert_array_equal(gd, gy[:, 3:])
    y, _ = L.Concatenate(axis=-1).forward([a, b])
    np.testing.assert_array_equal(y, np.concatenate([a, b], -1))


ALL_LAYERS = [L.Conv2D(4, 3, strides=(1, 2), padding="same", activation="relu", name="c"),
              L.Conv1D(2, 3, padding=(1,)), L.DepthwiseConv2D(3, depth_multiplier=2),
              L.FixedFilter([np.eye(3)]), L.MaxPool2D(3, 2, 1), L.AvgPool2D(2, count_include_pad=False),
              L.L2Pool2D(2), L.GlobalAvgPool2D(), L.Dense(3, activation="tanh", use_bias=False), L.Flatten(),
              L.Dropout(0.3, seed=1), L.BatchNorm2D(0.05, 1e-3, activation="relu"), L.Activation("leaky_relu", 0.2),
              L.Add(activation="relu"), L.Concatenate(-1)]


@pytest.mark.parametrize("layer", ALL_LAYERS, ids=lambda layer: type(layer).__name__)
def test_config_round_trip(layer):
    import json
    cfg = json.loads(json.dumps(layer.get_config()))
    again = type(layer).from_config(cfg)
    assert again.get_config() == cfg


def test_constructor_validation_names_the_argument():
    with pytest.raises(TypeError, match="filters"):
        L.Conv2D(2.5, 3)
    with pytest.raises(ValueError, match="kernel_size"):
        L.Conv2D(4, 0)
    with pytest.raises(ValueError, match="padding"):
        L.Conv2D(4, 3, padding="wide")
    with pytest.raises(ValueError, match="units"):
        L.Dense(0)
    with pytest.raises(ValueError, match="rate"):
        L.Dropout(1.0)
    with pytest.raises(ValueError, match="momentum"):
        L.BatchNorm2D(momentum=2)
    with pytest.raises(ValueError, match="padding"):
        L.MaxPool2D(2, padding=2)
    with pytest.raises(ValueError, match="axis"):
        L.Concatenate(axis=0)
    with pytest.raises(ValueError, match="activation"):
        L.Activation(None)
    with pytest.raises(ValueError, match="kernel_initializer"):
        L.Dense(3, kernel_initializer="orthogonal")
    with pytest.raises(ValueError, match="name"):
        L.Dense(3, name="a/b")


def test_layer_shape_errors_name_the_layer():
    with pytest.raises(ValueError, match=r"MaxPool2D layer 'p'.*\(3, 1, 1\)"):
        L.MaxPool2D(2, name="p")(Input((3, 1, 1)))
    with pytest.raises(ValueError, match=r"GlobalAvgPool2D layer.*\(10,\)"):
        L.GlobalAvgPool2D()(Input((10,)))
    with pytest.raises(ValueError, match=r"Activation layer.*softmax.*\(2, 3, 3\)"):
        L.Activation("softmax")(Input((2, 3, 3)))
    with pytest.raises(ValueError, match="one input"):
        L.Dense(3)([Input((3,)), Input((3,))])
