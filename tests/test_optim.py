"""Optimizers against float64 NumPy re-implementations of PyTorch's update rules; schedules."""
import math

import numpy as np
import pytest

from edgecnn.layers import Parameter
from edgecnn.optim import _BLOCK, _PARALLEL_MIN, SGD, Adam, AdamW, make_optimizer, make_schedule

# serial: below one block, several blocks with a partial last one; and one parameter on the parallel path
_SIZES = ((3, 4), (5,), (40 * _BLOCK + 7,), (_PARALLEL_MIN + 1001,))


def _params(seed=0, sizes=_SIZES):
    rng = np.random.default_rng(seed)
    ps = []
    for i, s in enumerate(sizes):
        p = Parameter(f"p{i}", rng.standard_normal(s).astype(np.float32))
        ps.append(p)
    return ps


def _grads(step, params):
    rng = np.random.default_rng(100 + step)
    return [rng.standard_normal(p.value.shape).astype(np.float32) for p in params]


def _ref_sgd(p, grads, lr, momentum, dampening, nesterov, wd):
    p = p.astype(np.float64)
    buf = None
    for g in grads:
        d = g.astype(np.float64) + wd * p
        if momentum:
            buf = d.copy() if buf is None else momentum * buf + (1 - dampening) * d
            d = d + momentum * buf if nesterov else buf
        p = p - lr * d
    return p


def _ref_adam(p, grads, lr, b1, b2, eps, wd, decoupled):
    p = p.astype(np.float64)
    m = np.zeros_like(p)
    v = np.zeros_like(p)
    for t, g in enumerate(grads, 1):
        g = g.astype(np.float64)
        if decoupled:
            p = p * (1 - lr * wd)
        else:
            g = g + wd * p
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        mhat = m / (1 - b1 ** t)
        vhat = v / (1 - b2 ** t)
        p = p - lr * mhat / (np.sqrt(vhat) + eps)
    return p


def _run(opt, params, steps):
    for s in range(steps):
        for p, g in zip(params, _grads(s, params)):
            p.grad[...] = g
        opt.step()


def _check(params, refs, steps):
    for p, ref in zip(params, refs):
        assert p.value.dtype == np.float32
        np.testing.assert_allclose(p.value, ref, rtol=2e-5, atol=2e-6 * steps)


@pytest.mark.parametrize("momentum,nesterov,wd,damp", [(0.0, False, 0.0, 0.0), (0.9, False, 0.0, 0.0),
                                                       (0.9, True, 1e-2, 0.0), (0.8, False, 5e-4, 0.1)])
def test_sgd_matches_reference(momentum, nesterov, wd, damp):
    params = _params()
    start = [p.value.copy() for p in params]
    opt = SGD(params, lr=0.05, momentum=momentum, nesterov=nesterov, weight_decay=wd, dampening=damp)
    _run(opt, params, 6)
    refs = [_ref_sgd(s, [_grads(t, params)[i] for t in range(6)], 0.05, momentum, damp, nesterov, wd)
            for i, s in enumerate(start)]
    _check(params, refs, 6)


@pytest.mark.parametrize("cls,wd", [(Adam, 0.0), (Adam, 1e-2), (AdamW, 1e-2), (AdamW, 0.3)])
def test_adam_family_matches_reference(cls, wd):
    params = _params(1)
    start = [p.value.copy() for p in params]
    opt = cls(params, lr=1e-2, betas=(0.9, 0.99), eps=1e-8, weight_decay=wd)
    _run(opt, params, 7)
    refs = [_ref_adam(s, [_grads(t, params)[i] for t in range(7)], 1e-2, 0.9, 0.99, 1e-8, wd, cls is AdamW)
            for i, s in enumerate(start)]
    _check(params, refs, 7)


def test_lr_is_settable_between_steps():
    params = _params(2, sizes=((10,),))
    start = params[0].value.astype(np.float64)
    opt = SGD(params, lr=0.1)
    params[0].grad[...] = 1.0
    opt.step()
    opt.lr = 0.01
    opt.step()
    np.testing.assert_allclose(params[0].value, start - 0.11, rtol=1e-6, atol=1e-6)


def test_step_allocates_no_state_and_updates_in_place():
    params = _params(3)
    opt = Adam(params)
    ids = [id(p.value) for p in params]
    bufs = [id(a) for d in opt.state.values() for a in d.values()]
    _run(opt, params, 2)
    assert ids == [id(p.value) for p in params]
    assert bufs == [id(a) for d in opt.state.values() for a in d.values()]


@pytest.mark.parametrize("cls,kw", [(SGD, dict(momentum=0.9, nesterov=True)), (Adam, {}), (AdamW, {})])
def test_state_dict_round_trip_resumes_exactly(cls, kw):
    a = _params(4)
    opt_a = cls(a, lr=0.01, **kw)
    _run(opt_a, a, 3)
    sd = opt_a.state_dict()
    b = [Parameter(p.name, p.value.copy()) for p in a]
    opt_b = cls(b, lr=0.5, **kw)
    opt_b.load_state_dict(sd)
    assert opt_b.lr == 0.01 and opt_b.step_count == 3
    for s in range(3, 6):
        for pa, pb, g in zip(a, b, _grads(s, a)):
            pa.grad[...] = g
            pb.grad[...] = g
        opt_a.step()
        opt_b.step()
    for pa, pb in zip(a, b):
        np.testing.assert_array_equal(pa.value, pb.value)
    # state_dict arrays are snapshots, not views of the live state
    before = {k: v.copy() for k, v in sd["state"].items()}
    _run(opt_a, a, 1)
    for k, v in sd["state"].items():
        np.testing.assert_array_equal(v, before[k])


def test_load_state_dict_validates():
    params = _params(5)
    opt = Adam(params)
    sd = opt.state_dict()
    with pytest.raises(ValueError, match="SGD"):
        SGD(params).load_state_dict(sd)
    bad = dict(sd, state={k: v for k, v in list(sd["state"].items())[1:]})
    with pytest.raises(ValueError, match="missing"):
        opt.load_state_dict(bad)
    k0 = next(iter(sd["state"]))
    bad = dict(sd, state=dict(sd["state"], **{k0: np.zeros(7, np.float32)}))
    with pytest.raises(ValueError, match="shape"):
        opt.load_state_dict(bad)
    with pytest.raises(ValueError, match="step"):
        opt.load_state_dict(dict(sd, step=-1))


def test_constructor_validation_names_the_parameter():
    params = _params(6)
    with pytest.raises(ValueError, match="lr"):
        SGD(params, lr=-1)
    with pytest.raises(ValueError, match="nesterov"):
        SGD(params, nesterov=True)
    with pytest.raises(ValueError, match="betas"):
        Adam(params, betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="eps"):
        Adam(params, eps=0)
    with pytest.raises(TypeError, match="weight_decay"):
        AdamW(params, weight_decay="x")
    with pytest.raises(ValueError, match="no trainable"):
        Adam([])
    with pytest.raises(ValueError, match="name must be one of"):
        make_optimizer("rmsprop", params)
    assert isinstance(make_optimizer("AdamW", params), AdamW)


def test_non_trainable_parameters_are_skipped():
    params = _params(7, sizes=((4,),)) + [Parameter("frozen", np.ones(3, np.float32), trainable=False)]
    opt = SGD(params, lr=1.0)
    params[0].grad[...] = 1
    opt.step()
    np.testing.assert_array_equal(params[1].value, 1.0)
    assert [p.name for p in opt.params] == ["p0"]


# -- schedules -------------------------------------------------------------------------------------------

def test_constant_and_warmup():
    s = make_schedule("constant", 0.1, 100, warmup_steps=4)
    assert [round(s(i), 6) for i in range(6)] == [0.025, 0.05, 0.075, 0.1, 0.1, 0.1]
    assert s(10_000) == 0.1


def test_step_schedule():
    s = make_schedule("step", 1.0, 100, step_size=10, gamma=0.5)
    assert s(0) == 1.0 and s(9) == 1.0 and s(10) == 0.5 and s(25) == 0.25


def test_cosine_schedule():
    s = make_schedule("cosine", 1.0, 110, warmup_steps=10, min_lr=0.1)
    assert s(9) == pytest.approx(1.0)
    assert s(10) == pytest.approx(1.0)
    assert s(60) == pytest.approx(0.55)
    assert s(110) == pytest.approx(0.1)
    assert s(500) == pytest.approx(0.1)
    vals = [s(i) for i in range(10, 111)]
    assert all(a >= b for a, b in zip(vals, vals[1:]))


def _ref_one_cycle(step, total, max_lr, pct, div, fdiv):
    # PyTorch OneCycleLR (anneal_strategy="cos", three_phase=False), written from its documentation
    initial, minimum = max_lr / div, max_lr / div / fdiv
    up_end, down_end = pct * total - 1, total - 1

    def cos(a, b, frac):
        return b + (a - b) / 2 * (math.cos(math.pi * frac) + 1)
    if step <= up_end:
        return cos(initial, max_lr, step / up_end)
    return cos(max_lr, minimum, (step - up_end) / (down_end - up_end))


def test_one_cycle_matches_pytorch_definition():
    s = make_schedule("one_cycle", 0.01, 200)
    for i in range(200):
        assert s(i) == pytest.approx(_ref_one_cycle(i, 200, 0.01, 0.3, 25.0, 1e4), rel=1e-12)
    assert s(0) == pytest.approx(0.01 / 25)
    assert s(199) == pytest.approx(0.01 / 25 / 1e4)
    # warmup_steps sets the length of the rising phase
    w = make_schedule("one_cycle", 0.01, 200, warmup_steps=41)
    assert w(40) == pytest.approx(0.01) and w(39) < 0.01 and w(41) < 0.01


def test_schedule_config_round_trip_and_validation():
    s = make_schedule("step", 0.1, 90, warmup_steps=5, step_size=20, gamma=0.3)
    s2 = make_schedule(**s.get_config())
    assert [s(i) for i in range(100)] == [s2(i) for i in range(100)]
    with pytest.raises(ValueError, match="name must be one of"):
        make_schedule("linear", 0.1, 10)
    with pytest.raises(ValueError, match="warmup_steps"):
        make_schedule("cosine", 0.1, 10, warmup_steps=10)
    with pytest.raises(ValueError, match="total_steps"):
        make_schedule("cosine", 0.1, 0)
    with pytest.raises(ValueError, match="takes"):
        make_schedule("cosine", 0.1, 10, gamma=0.1)


@pytest.mark.parametrize("cls,kw,names", [(SGD, dict(momentum=0.9), ("momentum_buffer",)),
                                          (Adam, {}, ("exp_avg", "exp_avg_sq"))])
def test_decaying_state_flushes_to_zero_instead_of_going_subnormal(cls, kw, names):
    # weights whose gradient becomes 0 (dead units): their state decays geometrically; float32
    # subnormals (< 1.18e-38) make every later update 10-100x slower on x86, so they are flushed
    params = _params(5, sizes=((64,), (_PARALLEL_MIN + 1001,)))  # serial and parallel paths
    opt = cls(params, lr=1e-3, **kw)
    for p in params:
        p.grad[...] = 1e-3
    opt.step()
    for p in params:
        p.grad[...] = 0.0
    tiny = np.finfo(np.float32).tiny
    first = names[0]
    for step in range(900):  # 0.9**n * 1e-4 is subnormal for n in ~[750, 870] without the flush
        opt.step()
        for p in params:
            for n in names:
                s = opt.state[p.name][n]
                assert not np.any((s != 0) & (np.abs(s) < tiny)), f"{n} holds subnormals at step {step}"
    assert np.all(opt.state[params[0].name][first] == 0)
