"""The executor: DAG building, shape inference errors, naming, summary, config, buffers, gradients.

Gradients of whole graphs are checked against a float64 NumPy re-implementation of the same network
(forward and hand-written chain rule from tests/reference), itself checked by float64 finite
differences along random directions.
"""
import gc
import json
import tracemalloc

import numpy as np
import pytest

import reference as R
from edgecnn import layers as L
from edgecnn.graph import Input, Model, Sequential


# -- building ------------------------------------------------------------------------------------------

def test_functional_and_sequential_agree():
    x = Input((1, 8, 8))
    y = L.Conv2D(4, 3, activation="relu")(x)
    y = L.MaxPool2D(2)(y)
    y = L.Flatten()(y)
    y = L.Dense(3)(y)
    m1 = Model(x, y, seed=3)
    m2 = Sequential([L.Conv2D(4, 3, activation="relu"), L.MaxPool2D(2), L.Flatten(), L.Dense(3)],
                    input_shape=(1, 8, 8), seed=3)
    assert [lay.name for lay in m1.layers] == ["conv2d", "max_pool2d", "flatten", "dense"]
    assert m1.output_shape == m2.output_shape == (3,)
    for a, b in zip(m1.parameters(), m2.parameters()):
        assert a.name == b.name
        np.testing.assert_array_equal(a.value, b.value)
    assert m1.is_chain()


def test_init_is_seeded_float32_and_scaled():
    m = Sequential([L.Conv2D(64, 3, activation="relu"), L.Flatten(), L.Dense(50)], input_shape=(16, 6, 6),
                   seed=1)
    w_conv, b_conv, w_dense, _ = (p.value for p in m.parameters())
    assert all(p.value.dtype == np.float32 for p in m.parameters())
    assert np.all(b_conv == 0)
    # He normal (fan_in = 16*9) for the ReLU conv, Glorot uniform for the linear dense
    assert w_conv.std() == pytest.approx(np.sqrt(2 / 144), rel=0.05)
    lim = np.sqrt(6 / (w_dense.shape[1] + 50))
    assert np.abs(w_dense).max() <= lim and np.abs(w_dense).max() > 0.9 * lim
    same = Sequential([L.Conv2D(64, 3, activation="relu"), L.Flatten(), L.Dense(50)], input_shape=(16, 6, 6),
                      seed=1)
    other = Sequential([L.Conv2D(64, 3, activation="relu"), L.Flatten(), L.Dense(50)], input_shape=(16, 6, 6),
                       seed=2)
    np.testing.assert_array_equal(same.parameters()[0].value, w_conv)
    assert not np.array_equal(other.parameters()[0].value, w_conv)


def test_shape_error_names_layer_and_shapes():
    x = Input((1, 28, 28))
    with pytest.raises(ValueError, match=r"Dense layer 'fc'.*Flatten.*\(1, 28, 28\)"):
        L.Dense(10, name="fc")(x)
    with pytest.raises(ValueError, match=r"Conv2D layer.*\(1, 2, 2\)"):
        L.Conv2D(4, 3)(Input((1, 2, 2)))
    a = L.Conv2D(4, 3)(x)
    b = L.Conv2D(5, 3)(x)
    with pytest.raises(ValueError, match=r"Add layer.*\(4, 26, 26\), \(5, 26, 26\)"):
        L.Add()([a, b])
    c = L.Conv2D(5, 5)(x)
    with pytest.raises(ValueError, match=r"Concatenate layer.*\(4, 26, 26\), \(5, 24, 24\)"):
        L.Concatenate()([a, c])
    with pytest.raises(ValueError, match="groups=3"):
        L.Conv2D(4, 3, groups=3)(Input((6, 8, 8)))
    with pytest.raises(ValueError, match="activation"):
        L.Conv2D(4, 3, activation="swish")


def test_layer_reuse_and_duplicate_names_rejected():
    x = Input((4,))
    d = L.Dense(4)
    d(x)
    with pytest.raises(ValueError, match="already part of a graph"):
        d(x)
    y = L.Dense(3, name="a")(L.Dense(4, name="a")(x))
    with pytest.raises(ValueError, match="unique"):
        Model(x, y)


def test_count_params_and_batchnorm_non_trainable():
    m = Sequential([L.Conv2D(8, 3, use_bias=False), L.BatchNorm2D(activation="relu"), L.GlobalAvgPool2D(),
                    L.Dense(10)], input_shape=(3, 8, 8))
    assert m.count_params() == (8 * 27 + 16 + 90, 16)
    rs = [p for p in m.parameters() if not p.trainable]
    assert [p.name for p in rs] == ["batch_norm2d/running_mean", "batch_norm2d/running_var"]
    assert all(p.grad is None for p in rs)


KERAS_MNIST_SUMMARY_ROWS = [
    ("conv2d (Conv2D)", "(None, 32, 26, 26)", "320"),
    ("conv2d_1 (Conv2D)", "(None, 64, 24, 24)", "18,496"),
    ("max_pool2d (MaxPool2D)", "(None, 64, 12, 12)", "0"),
    ("dropout (Dropout)", "(None, 64, 12, 12)", "0"),
    ("flatten (Flatten)", "(None, 9216)", "0"),
    ("dense (Dense)", "(None, 128)", "1,179,776"),
    ("dropout_1 (Dropout)", "(None, 128)", "0"),
    ("dense_1 (Dense)", "(None, 10)", "1,290"),
]


def test_summary_of_course_model():
    from edgecnn.models import build
    printed = []
    text = build("keras-mnist").summary(print_fn=printed.append)
    assert printed == [text]
    lines = text.splitlines()
    assert lines[0] == 'Model: "keras-mnist"'
    header = lines[2].split()
    assert header == ["Layer", "(type)", "Output", "Shape", "Param", "#"]
    rows = [tuple(c.strip() for c in _split_cols(line, lines[2])) for line in lines[4:12]]
    assert rows == KERAS_MNIST_SUMMARY_ROWS
    assert "Total params: 1,199,882 (4,799,528 bytes, 4.58 MB)" in lines
    assert "Trainable params: 1,199,882 (4,799,528 bytes, 4.58 MB)" in lines
    assert "Non-trainable params: 0 (0 B)" in lines or "Non-trainable params: 0 (0 bytes, 0 B)" in lines


def _split_cols(line, header):
    starts = [header.index("Layer"), header.index("Output"), header.index("Param")]
    return [line[a:b] for a, b in zip(starts, starts[1:] + [None])]


def test_summary_of_dag_shows_connections():
    m = _dag_model()
    text = m.summary(print_fn=None)
    assert "Connected to" in text and "(InputLayer)" in text
    assert "add (Add)" in text and "conv2d, conv2d_1" in text
    t, n = m.count_params()
    assert f"Total params: {t + n:,}" in text


def test_config_round_trip_is_json_and_rebuilds_identically():
    m = _dag_model(seed=5)
    cfg = json.loads(json.dumps(m.get_config()))
    m2 = Model.from_config(cfg)
    assert m2.get_config() == cfg
    for a, b in zip(m.parameters(), m2.parameters()):
        assert a.name == b.name
        np.testing.assert_array_equal(a.value, b.value)
    with pytest.raises(ValueError, match="unknown layer class"):
        Model.from_config(dict(cfg, layers=[dict(cfg["layers"][0], class_name="Nope")]))
    with pytest.raises(ValueError, match="malformed"):
        Model.from_config({"layers": []})


def test_state_dict_round_trip_and_validation():
    m = _dag_model(seed=1)
    m2 = _dag_model(seed=2)
    sd = m.state_dict()
    ids = [id(p.value) for p in m2.parameters()]
    m2.load_state_dict(sd)
    assert ids == [id(p.value) for p in m2.parameters()]  # loaded in place
    for a, b in zip(m.parameters(), m2.parameters()):
        np.testing.assert_array_equal(a.value, b.value)
    k = next(iter(sd))
    with pytest.raises(ValueError, match="missing"):
        m2.load_state_dict({kk: v for kk, v in sd.items() if kk != k})
    with pytest.raises(ValueError, match=k):
        m2.load_state_dict(dict(sd, **{k: np.zeros((1, 2), np.float32)}))
    with pytest.raises(TypeError, match=k):
        m2.load_state_dict(dict(sd, **{k: sd[k].astype(np.float64)}))


# -- running -------------------------------------------------------------------------------------------

def _dag_model(seed=0):
    """Chain + residual + inception-style concat; ``a`` fans out three ways."""
    x = Input((2, 6, 6))
    a = L.Conv2D(3, 3, padding="same", activation="relu")(x)
    b = L.Conv2D(3, 3, padding=1, activation="tanh")(a)
    c = L.Add(activation="relu")([a, b])
    d = L.Concatenate()([c, a])
    e = L.MaxPool2D(2)(d)
    f = L.Flatten()(e)
    g = L.Dense(5, activation="sigmoid")(f)
    h = L.Dense(4)(g)
    return Model(x, h, name="dag", seed=seed)


def _dag_ref(x, P):
    """float64 forward of _dag_model with the reference ops; returns output and a cache."""
    za = R.conv2d_ref(x, P["conv2d/kernel"], P["conv2d/bias"], padding="same")
    a = R.relu_ref(za)
    zb = R.conv2d_ref(a, P["conv2d_1/kernel"], P["conv2d_1/bias"], padding=1)
    b = R.tanh_ref(zb)
    zc = a + b
    c = R.relu_ref(zc)
    d = np.concatenate([c, a], axis=1)
    e, arg = R.max_pool2d_ref(d, 2)
    f = e.reshape(e.shape[0], -1)
    zg = f @ P["dense/kernel"].T + P["dense/bias"]
    g = R.sigmoid_ref(zg)
    h = g @ P["dense_1/kernel"].T + P["dense_1/bias"]
    return h, locals()


def _dag_ref_backward(gh, x, P):
    """The chain rule by hand, in float64; the gradient of ``a`` sums its three consumers."""
    _, c = _dag_ref(x, P)
    G = {}
    G["dense_1/kernel"] = gh.T @ c["g"]
    G["dense_1/bias"] = gh.sum(0)
    gg = gh @ P["dense_1/kernel"]
    gzg = R.sigmoid_bwd_ref(gg, c["zg"])
    G["dense/kernel"] = gzg.T @ c["f"]
    G["dense/bias"] = gzg.sum(0)
    gf = gzg @ P["dense/kernel"]
    gd = R.max_pool2d_bwd_ref(gf.reshape(c["e"].shape), c["arg"], c["d"].shape)
    gc, ga_concat = gd[:, :3], gd[:, 3:]
    gzc = R.relu_bwd_ref(gc, c["zc"])
    gb = gzc
    gzb = R.tanh_bwd_ref(gb, c["zb"])
    ga_b, G["conv2d_1/kernel"], G["conv2d_1/bias"] = R.conv2d_backward_ref(gzb, c["a"], P["conv2d_1/kernel"],
                                                                          padding=1)
    ga = ga_concat + gzc + ga_b  # fan-out: concat, add, conv2d_1
    gza = R.relu_bwd_ref(ga, c["za"])
    _, G["conv2d/kernel"], G["conv2d/bias"] = R.conv2d_backward_ref(gza, x, P["conv2d/kernel"], padding="same")
    return G


def _data(seed=0, n=3, shape=(2, 6, 6), k=4):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n,) + shape).astype(np.float32),
            rng.standard_normal((n, k)).astype(np.float32))


def test_dag_reference_backward_matches_finite_differences():
    # validates the float64 re-implementation itself before using it as the yardstick
    m = _dag_model(seed=4)
    x, gh = _data(1)
    P = {p.name: p.value.astype(np.float64) for p in m.parameters()}
    G = _dag_ref_backward(gh.astype(np.float64), x.astype(np.float64), P)
    rng = np.random.default_rng(2)
    for name in P:
        v = rng.standard_normal(P[name].shape)
        eps = 1e-6
        Pp, Pm = dict(P), dict(P)
        Pp[name], Pm[name] = P[name] + eps * v, P[name] - eps * v
        num = (np.sum(_dag_ref(x, Pp)[0] * gh) - np.sum(_dag_ref(x, Pm)[0] * gh)) / (2 * eps)
        assert num == pytest.approx(np.sum(G[name] * v), rel=1e-5, abs=1e-8), name


def test_dag_forward_and_backward_match_float64_reimplementation():
    m = _dag_model(seed=4)
    x, gh = _data(1)
    P = {p.name: p.value.astype(np.float64) for p in m.parameters()}
    h64, _ = _dag_ref(x.astype(np.float64), P)
    h32 = m.forward(x, training=True)
    np.testing.assert_allclose(h32, h64, rtol=1e-5, atol=1e-5)
    m.backward(gh)
    G = _dag_ref_backward(gh.astype(np.float64), x.astype(np.float64), P)
    # float32 sums of at most a few hundred O(1) terms: ~1e-6 relative; 1e-4 of the largest entry is loose
    for p in m.parameters():
        scale = np.abs(G[p.name]).max()
        np.testing.assert_allclose(p.grad, G[p.name], rtol=1e-4, atol=1e-4 * scale, err_msg=p.name)
    # the plan really sums a fanned-out gradient: 'a' feeds three consumers -> two scratch edges
    plan = m.plan(x.shape[0])
    assert sum(len(a) for a in plan.accum) == 2


def test_backward_overwrites_grads_and_is_repeatable():
    m = _dag_model(seed=4)
    x, gh = _data(1)
    m.forward(x, training=True)
    m.backward(gh)
    first = [p.grad.copy() for p in m.parameters()]
    m.forward(x, training=True)
    m.backward(gh)
    for a, p in zip(first, m.parameters()):
        np.testing.assert_array_equal(a, p.grad)


def test_first_layer_skips_input_gradient(monkeypatch):
    calls = []
    real = L.K.conv2d_backward

    def spy(*args, **kw):
        calls.append(kw["need_input_grad"])
        return real(*args, **kw)
    monkeypatch.setattr(L.K, "conv2d_backward", spy)
    m = _dag_model()
    x, gh = _data()
    m.forward(x, training=True)
    m.backward(gh)
    assert calls == [True, False]  # reverse order: conv2d_1 needs its input gradient, conv2d does not


def test_forward_validates_input():
    m = _dag_model()
    with pytest.raises(ValueError, match=r"\(N, 2, 6, 6\).*\(3, 2, 6, 5\)"):
        m.forward(np.zeros((3, 2, 6, 5), np.float32))
    with pytest.raises(TypeError, match="float32"):
        m.forward(np.zeros((3, 2, 6, 6), np.float64))
    with pytest.raises(RuntimeError, match="forward"):
        _dag_model().backward(np.zeros((3, 4), np.float32))
    m.forward(np.zeros((3, 2, 6, 6), np.float32))
    with pytest.raises(ValueError, match="gy"):
        m.backward(np.zeros((2, 4), np.float32))


def test_predict_matches_forward_across_batch_sizes():
    m = _dag_model()
    x, _ = _data(3, n=11)
    full = m.forward(x).copy()
    np.testing.assert_allclose(m.predict(x, batch_size=4), full, rtol=1e-6, atol=1e-6)
    assert len(m._plans) <= 4
    assert m.plan(4).g is None  # inference-only batch sizes never allocate gradient buffers


def test_linear_activation_and_flatten_alias_gradients():
    x = Input((2, 3, 3))
    h = L.Conv2D(2, 3, padding=1)(x)
    h = L.Activation("linear")(h)
    h = L.Flatten()(h)
    y = L.Dense(2)(h)
    m = Model(x, y)
    xv, gy = _data(2, n=2, shape=(2, 3, 3), k=2)
    m.forward(xv, training=True)
    m.backward(gy)
    p = m.plan(2)
    conv_out, lin_out, flat_out = (n.out for n in m._nodes[:3])
    assert np.shares_memory(p.g[flat_out], p.g[conv_out]) and np.shares_memory(p.g[lin_out], p.g[conv_out])
    w = m.get_layer("dense").params[0].value.astype(np.float64)
    gconv = (gy.astype(np.float64) @ w).reshape(2, 2, 3, 3)
    gw_ref = R.conv2d_backward_ref(gconv, xv, m.layers[0].params[0].value, padding=1)[1]
    np.testing.assert_allclose(m.layers[0].params[0].grad, gw_ref, rtol=1e-4, atol=1e-5)


def _train_model():
    return Sequential([L.Conv2D(4, 3, activation="relu"), L.BatchNorm2D(), L.MaxPool2D(2),
                       L.Dropout(0.25), L.Flatten(), L.Dense(8, activation="relu"), L.Dense(3)],
                      input_shape=(1, 16, 16), seed=0)


def test_train_step_reuses_every_buffer():
    m = _train_model()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, 1, 16, 16)).astype(np.float32)
    y = rng.integers(0, 3, 5).astype(np.int32)
    loss, logits = m.train_step(x, y)
    plan = m.plan(5)
    bufs = [id(a) for a in plan.y + plan.g if a is not None]
    ws = [id(v) for w in plan.ws for v in w.values() if isinstance(v, np.ndarray)]
    grads = [id(p.grad) for p in m.parameters() if p.trainable]
    for _ in range(3):
        loss2, logits2 = m.train_step(x, y)
        assert logits2 is logits
        assert m.plan(5) is plan
        assert [id(a) for a in plan.y + plan.g if a is not None] == bufs
        assert [id(v) for w in plan.ws for v in w.values() if isinstance(v, np.ndarray)] == ws
        assert [id(p.grad) for p in m.parameters() if p.trainable] == grads
    assert np.isfinite(loss2)


def _step_memory(batch, steps=5):
    """(growth over ``steps`` training steps, largest and smallest transient allocation within one
    step, smallest activation buffer) in bytes. The largest varies by a few KB with thread timing
    (the conv pool's threads allocate small objects concurrently); anything that scales with the
    batch shows in every step, so the smallest is what is compared across batch sizes."""
    from edgecnn.optim import Adam
    m = _train_model()
    opt = Adam(m.parameters())
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, 1, 16, 16)).astype(np.float32)
    y = rng.integers(0, 3, batch).astype(np.int32)
    for _ in range(3):  # plan, compile, settle caches
        m.train_step(x, y)
        opt.step()
    tracemalloc.start()
    try:
        m.train_step(x, y)
        opt.step()
        gc.collect()
        base, _ = tracemalloc.get_traced_memory()
        peaks = []
        for _ in range(steps):
            tracemalloc.reset_peak()
            start = tracemalloc.get_traced_memory()[0]
            m.train_step(x, y)
            opt.step()
            peaks.append(tracemalloc.get_traced_memory()[1] - start)
        gc.collect()
        cur, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    smallest = min(a.nbytes for a in m.plan(batch).y if a is not None and a.ndim == 4)
    return cur - base, max(peaks), min(peaks), smallest


def test_train_step_allocates_no_activation_memory():
    grow, peak, _, smallest = _step_memory(64, steps=8)
    assert grow < 4096, f"memory grew by {grow} bytes over 8 steps"
    # kernels keep a few KB of small scratch (settings tuples, per-thread partials), but nothing as
    # large as an activation buffer, and nothing that scales with the batch
    assert peak < smallest, f"a step allocated {peak} bytes transiently (smallest buffer {smallest})"
    # with threads, what is alive at once depends on their timing (a few KB either way); on one
    # kernel thread a step's own allocations are deterministic, so the smallest per-step peak (an
    # allocation that scales with the batch shows in every step) must match exactly for batch 8 and
    # 64. The largest is not compared: other Python threads in the process (pool workers left by
    # earlier tests) can allocate a few hundred bytes meanwhile (272 in one CI run on a busy host)
    import numba
    before = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        _, _, low8, _ = _step_memory(8, steps=3)
        _, _, low64, _ = _step_memory(64, steps=3)
    finally:
        numba.set_num_threads(before)
    assert low64 == low8, f"transient allocations scale with the batch: {low8} -> {low64} bytes"


def test_dropout_masks_are_reproducible_via_rng_state():
    m = Sequential([L.Dropout(0.5), L.Flatten(), L.Dense(2)], input_shape=(1, 4, 4), seed=0)
    x = np.ones((2, 1, 4, 4), np.float32)
    m.seed(7)
    s = m.get_rng_state()
    a = m.forward(x, training=True).copy()
    b = m.forward(x, training=True).copy()
    assert not np.array_equal(a, b)
    m.set_rng_state(s)
    np.testing.assert_array_equal(m.forward(x, training=True), a)
    np.testing.assert_array_equal(m.forward(x, training=False), m.forward(x, training=False))
    with pytest.raises(ValueError, match="set_rng_state"):
        m.set_rng_state({"seed": 1})
