"""Batch norm: reference backward vs finite differences, float32 kernels vs reference (training, running
updates, inference), determinism, in-place use, validation."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from edgecnn.kernels import batchnorm as B
from reference import batchnorm as R
from reference import max_rel_error, numeric_grad

RTOL, ATOL = 1e-4, 1e-5

SHAPES = [(2, 1, 1, 1), (1, 1, 2, 1), (1, 1, 3, 3), (2, 3, 2, 2), (3, 2, 1, 4), (1, 4, 2, 3), (4, 1, 3, 2),
          (2, 2, 4, 1), (5, 3, 1, 1), (1, 2, 5, 5)]
CONFIGS = [(i, offset, scale) for i in range(10) for offset, scale in [(0.0, 1.0), (3.0, 0.5), (-2.0, 4.0)]]


def case(cfg, seed=None):
    i, offset, scale = cfg
    shape = SHAPES[i] if seed is None else i
    rng = np.random.default_rng([i, round(offset * 10) % 100, round(scale * 10)] if seed is None else seed)
    c = shape[1]
    x = rng.standard_normal(shape) * scale + offset
    return (x, rng.uniform(0.5, 1.5, c) * rng.choice([-1, 1], c), rng.standard_normal(c),
            rng.standard_normal(shape))


@pytest.mark.parametrize("cfg", CONFIGS)
def test_reference_backward_matches_finite_differences(cfg):
    x, gamma, beta, gy = case(cfg)
    gx, gg, gb = R.batchnorm2d_bwd_ref(gy, x, gamma)
    assert max_rel_error(gx, numeric_grad(lambda a: R.batchnorm2d_train_ref(a, gamma, beta)[0], x, gy)) <= 1e-6
    assert max_rel_error(gg, numeric_grad(lambda a: R.batchnorm2d_train_ref(x, a, beta)[0], gamma, gy)) <= 1e-6
    assert max_rel_error(gb, numeric_grad(lambda a: R.batchnorm2d_train_ref(x, gamma, a)[0], beta, gy)) <= 1e-6


def check_backward(gy, x, gamma, eps, gx, gg, gb):
    """The float32 backward against the float64 reference at the same (float32) inputs.

    Every output is a sum whose terms can cancel almost completely: with few values per channel,
    a variance near eps (2 values: gx = a d eps / (var + eps)), or xhat summing against gy to
    nearly nothing. No float32 formula keeps RTOL relative to such a result, so RTOL applies to
    the size of the terms (the usual error bound of a sum), which equals the result's own size
    when nothing cancels: a missing or mis-signed term still fails by orders of magnitude."""
    axes = (0, 2, 3)
    xd, gyd, gd = (a.astype(np.float64) for a in (x, gy, gamma))
    rgx, rgg, rgb = R.batchnorm2d_bwd_ref(gyd, xd, gd, eps)
    xhat = (xd - xd.mean(axis=axes, keepdims=True)) / np.sqrt(xd.var(axis=axes, keepdims=True) + eps)
    a = np.abs(gd[None, :, None, None]) / np.sqrt(xd.var(axis=axes, keepdims=True) + eps)
    gx_terms = a * (np.abs(gyd) + np.abs(gyd.mean(axis=axes, keepdims=True))
                    + np.abs(xhat * (gyd * xhat).mean(axis=axes, keepdims=True)))
    for got, want, terms in ((gx, rgx, gx_terms), (gg, rgg, np.abs(gyd * xhat).sum(axis=axes)),
                             (gb, rgb, np.abs(gyd).sum(axis=axes))):
        err = np.abs(got - want)
        assert np.all(err <= ATOL + RTOL * terms), (got, want, np.max(err - RTOL * terms))


def check(x64, gamma64, beta64, gy64, momentum=0.1, eps=1e-5):
    x, gamma, beta, gy = (a.astype(np.float32) for a in (x64, gamma64, beta64, gy64))
    c = x.shape[1]
    rng = np.random.default_rng(0)
    rm0, rv0 = rng.standard_normal(c).astype(np.float32), rng.uniform(0.5, 2, c).astype(np.float32)
    rm, rv = rm0.copy(), rv0.copy()
    y, sm, si = B.batchnorm2d_forward(x, gamma, beta, rm, rv, training=True, momentum=momentum, eps=eps)
    ry, mean, var = R.batchnorm2d_train_ref(x, gamma, beta, eps)
    np.testing.assert_allclose(y, ry, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(sm, mean, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(si, 1 / np.sqrt(var + eps), rtol=RTOL, atol=ATOL)
    m = x.size // c
    want_rm, want_rv = R.batchnorm2d_running_ref(rm0, rv0, mean, var, m, momentum)
    np.testing.assert_allclose(rm, want_rm, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(rv, want_rv, rtol=RTOL, atol=ATOL)
    gx, gg, gb = B.batchnorm2d_backward(gy, x, gamma, sm, si)
    check_backward(gy, x, gamma, eps, gx, gg, gb)
    yi, smi, sii = B.batchnorm2d_forward(x, gamma, beta, rm, rv, training=False, eps=eps)
    np.testing.assert_allclose(yi, R.batchnorm2d_infer_ref(x, gamma, beta, rm, rv, eps), rtol=RTOL, atol=ATOL)
    np.testing.assert_array_equal(smi, rm)
    np.testing.assert_allclose(sii, 1 / np.sqrt(rv.astype(np.float64) + eps), rtol=RTOL)


@pytest.mark.parametrize("cfg", CONFIGS)
def test_kernels_match_reference(cfg):
    check(*case(cfg))


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 4), c=st.integers(1, 4), h=st.integers(1, 6), w=st.integers(1, 6),
       offset=st.floats(-5, 5), scale=st.floats(0.1, 10), momentum=st.floats(0, 1), seed=st.integers(0, 2**16))
def test_kernels_match_reference_random(n, c, h, w, offset, scale, momentum, seed):
    if n * h * w < 2:
        return
    check(*case(((n, c, h, w), offset, scale), seed), momentum=momentum)


def test_larger_batch_and_parallel_channels():
    check(*case(((16, 6, 12, 12), 1.0, 2.0), 5))


def test_matches_pytorch_semantics_on_a_known_case():
    # Hand-computed: one channel holding [1, 2, 3, 4]: mean 2.5, biased var 1.25, unbiased 5/3.
    x = np.array([1, 2, 3, 4], np.float32).reshape(1, 1, 2, 2)
    rm, rv = np.zeros(1, np.float32), np.ones(1, np.float32)
    y, sm, si = B.batchnorm2d_forward(x, np.ones(1, np.float32), np.zeros(1, np.float32), rm, rv,
                                      momentum=0.1, eps=0.0 + 1e-5)
    np.testing.assert_allclose(rm, [0.25], rtol=1e-6)
    np.testing.assert_allclose(rv, [0.9 + 0.1 * 5 / 3], rtol=1e-6)
    np.testing.assert_allclose(y.ravel(), (np.arange(1, 5) - 2.5) / np.sqrt(1.25 + 1e-5), rtol=1e-5)


def test_deterministic_outputs_reuse_and_in_place():
    x, gamma, beta, gy = (a.astype(np.float32) for a in case(((3, 4, 5, 5), 0.5, 2.0), 9))
    y1, sm1, si1 = B.batchnorm2d_forward(x, gamma, beta, None, None)
    out, sm, si = np.full_like(x, 7.0), np.zeros(4, np.float32), np.zeros(4, np.float32)
    r = B.batchnorm2d_forward(x, gamma, beta, None, None, out=out, save_mean=sm, save_invstd=si)
    assert r[0] is out and r[1] is sm and r[2] is si
    np.testing.assert_array_equal(out, y1)
    np.testing.assert_array_equal(sm, sm1)
    gx1, gg1, gb1 = B.batchnorm2d_backward(gy, x, gamma, sm, si)
    gg, gb = np.full(4, 7.0, np.float32), np.full(4, 7.0, np.float32)
    g = gy.copy()
    r = B.batchnorm2d_backward(g, x, gamma, sm, si, gx=g, ggamma=gg, gbeta=gb)
    assert r[0] is g and r[1] is gg and r[2] is gb
    np.testing.assert_allclose(g, gx1, rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(gg, gg1)
    np.testing.assert_array_equal(gb, gb1)
    xi = x.copy()
    assert B.batchnorm2d_forward(xi, gamma, beta, None, None, out=xi)[0] is xi
    np.testing.assert_allclose(xi, y1, rtol=1e-6, atol=1e-6)


X = np.zeros((2, 3, 2, 2), np.float32)
V = np.ones(3, np.float32)


def fwd(**kw):
    args = dict(x=X, gamma=V, beta=V, running_mean=V.copy(), running_var=V.copy())
    args.update(kw)
    return B.batchnorm2d_forward(**args)


def bwd(**kw):
    args = dict(gy=X, x=X, gamma=V, save_mean=V, save_invstd=V)
    args.update(kw)
    return B.batchnorm2d_backward(**args)


@pytest.mark.parametrize("call, exc, name", [
    (lambda: fwd(x=X.astype(np.float64)), TypeError, "x"),
    (lambda: fwd(x=X[0]), ValueError, "x"),
    (lambda: fwd(x=np.zeros((2, 3, 2, 4), np.float32)[..., ::2]), ValueError, "x"),
    (lambda: fwd(x=np.zeros((1, 3, 1, 1), np.float32)), ValueError, "x"),
    (lambda: fwd(gamma=np.ones(4, np.float32)), ValueError, "gamma"),
    (lambda: fwd(beta=np.ones((3, 1), np.float32)), ValueError, "beta"),
    (lambda: fwd(running_mean=np.ones(2, np.float32)), ValueError, "running_mean"),
    (lambda: fwd(running_var=np.ones(3, np.float64)), TypeError, "running_var"),
    (lambda: fwd(running_mean=None, training=False), TypeError, "running_mean"),
    (lambda: fwd(running_var=None), TypeError, "running_var"),
    (lambda: fwd(momentum=1.5), ValueError, "momentum"),
    (lambda: fwd(momentum=None), ValueError, "momentum"),
    (lambda: fwd(eps=0.0), ValueError, "eps"),
    (lambda: fwd(out=np.zeros((2, 3, 2, 1), np.float32)), ValueError, "out"),
    (lambda: fwd(save_mean=np.zeros(2, np.float32)), ValueError, "save_mean"),
    (lambda: fwd(save_invstd=np.zeros(3, np.int32)), TypeError, "save_invstd"),
    (lambda: bwd(gy=np.zeros((2, 3, 2, 1), np.float32)), ValueError, "gy"),
    (lambda: bwd(x=X[None]), ValueError, "x"),
    (lambda: bwd(gamma=np.ones(2, np.float32)), ValueError, "gamma"),
    (lambda: bwd(save_mean=np.ones(4, np.float32)), ValueError, "save_mean"),
    (lambda: bwd(save_invstd=[1.0, 1.0, 1.0]), TypeError, "save_invstd"),
    (lambda: bwd(gx=np.zeros((2, 3, 4), np.float32)), ValueError, "gx"),
    (lambda: bwd(ggamma=np.zeros(2, np.float32)), ValueError, "ggamma"),
    (lambda: bwd(gbeta=np.zeros(3, np.float16)), TypeError, "gbeta"),
])
def test_validation_names_the_parameter(call, exc, name):
    with pytest.raises(exc) as info:
        call()
    msg = str(info.value)
    assert name in msg and "batchnorm2d_" in msg, msg


def test_same_bits_for_any_thread_count():
    """Plane sums are merged per channel in order of n, whatever thread ran them."""
    import numba
    rng = np.random.default_rng(3)
    x = (rng.standard_normal((9, 5, 6, 7)) * 2 + 3).astype(np.float32)
    gy = rng.standard_normal(x.shape).astype(np.float32)
    g = rng.random(5).astype(np.float32) + 0.5
    b = rng.standard_normal(5).astype(np.float32)
    before = numba.get_num_threads()
    outs = []
    try:
        for t in sorted({1, numba.config.NUMBA_NUM_THREADS}):
            numba.set_num_threads(t)
            rm, rv = np.zeros(5, np.float32), np.ones(5, np.float32)
            y, sm, si = B.batchnorm2d_forward(x, g, b, rm, rv, training=True)
            gx, gg, gb = B.batchnorm2d_backward(gy, x, g, sm, si)
            outs.append((y, sm, si, rm, rv, gx, gg, gb))
    finally:
        numba.set_num_threads(before)
    for a, z in zip(outs[0], outs[-1]):
        np.testing.assert_array_equal(a, z)


@pytest.mark.parametrize("shape", [(4, 3, 5, 6), (2, 24, 7, 7), (1, 2, 1, 2)])
@pytest.mark.parametrize("in_place", [False, True])
def test_fused_relu_equals_batchnorm_then_relu(shape, in_place):
    # relu=True / relu_y: the same numbers as the two ops one after the other, and the float64
    # reference chain: y = max(bn(x), 0); dL/dx through the relu mask then batch norm.
    from edgecnn.kernels import relu_backward, relu_forward
    rng = np.random.default_rng(7)
    x = rng.standard_normal(shape).astype(np.float32)
    c = shape[1]
    gamma = rng.uniform(0.5, 1.5, c).astype(np.float32)
    beta = rng.standard_normal(c).astype(np.float32)
    gy = rng.standard_normal(shape).astype(np.float32)
    y_ref, sm, si = B.batchnorm2d_forward(x, gamma, beta, None, None)
    y_ref = relu_forward(y_ref)
    y = x.copy() if in_place else None
    y, sm2, si2 = B.batchnorm2d_forward(x.copy() if not in_place else y, gamma, beta, None, None,
                                        out=y, relu=True)
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(sm, sm2)
    masked = relu_backward(gy, y_ref, y_ref)
    want = B.batchnorm2d_backward(masked, x, gamma, sm, si)
    g = gy.copy()
    got = B.batchnorm2d_backward(g, x, gamma, sm, si, gx=g if in_place else None, relu_y=y)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    if not in_place:
        np.testing.assert_array_equal(g, gy)  # gy itself is left alone
    yd = np.maximum(R.batchnorm2d_train_ref(x.astype(np.float64), gamma.astype(np.float64),
                                            beta.astype(np.float64), 1e-5)[0], 0)
    np.testing.assert_allclose(y, yd, rtol=RTOL, atol=ATOL)
    check_backward(masked, x, gamma, 1e-5, *got)


def test_fused_relu_validation():
    x = np.ones((2, 2, 3, 3), np.float32)
    x[0] = 0
    g = np.ones(2, np.float32)
    with pytest.raises(TypeError, match="relu must be a bool"):
        B.batchnorm2d_forward(x, g, g, None, None, relu=1)
    y, sm, si = B.batchnorm2d_forward(x, g, g, None, None, relu=True)
    with pytest.raises(ValueError, match="relu_y"):
        B.batchnorm2d_backward(x, x, g, sm, si, relu_y=y[:1])
