"""Losses: reference gradients vs finite differences, float32 kernels vs reference, stability, validation."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from edgecnn.kernels import losses as L
from reference import losses as R
from reference import max_rel_error, numeric_grad

RTOL, ATOL = 1e-4, 1e-5

SHAPES_2D = [(1, 1), (1, 2), (2, 3), (3, 10), (4, 1), (1, 10), (5, 4), (8, 10), (2, 7), (6, 2)]
SHAPES = [(1,), (5,), (2, 3), (1, 1), (3, 4), (2, 1, 3), (1, 2, 2, 2), (4, 5), (7,), (2, 2, 3)]
CONFIGS = [(i, scale) for i in range(10) for scale in (0.5, 3.0, 10.0)]   # 30 per loss
# Finite-difference step for the smooth losses: at loss values ~40 the default 1e-6 step loses ~3e-9 to
# rounding of the loss itself, above 1e-6 relative for gradients near the 1e-3 floor; a 1e-5 step cuts
# that by 10 while truncation (step**2 * third derivative / 6) stays below 1e-11.
EPS = 1e-5
IDS = [f"{i}-{s}" for i, s in CONFIGS]


def ce_case(i, scale, seed=None):
    rng = np.random.default_rng(i if seed is None else seed)
    n, k = SHAPES_2D[i] if seed is None else i
    return rng.standard_normal((n, k)) * scale, rng.integers(0, k, n)


def pair_case(shape, scale, seed, binary):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape) * scale
    t = rng.integers(0, 2, shape).astype(np.float64) if binary else rng.uniform(0, 1, shape)
    return x, t


@pytest.mark.parametrize("cfg", CONFIGS, ids=IDS)
def test_reference_gradients_match_finite_differences(cfg):
    i, scale = cfg
    x, lab = ce_case(i, scale)
    num = numeric_grad(lambda a: R.softmax_cross_entropy_ref(a, lab), x, 1.0, eps=EPS)
    assert max_rel_error(R.softmax_cross_entropy_grad_ref(x, lab), num) <= 1e-6
    x, t = pair_case(SHAPES[i], scale, i, binary=i % 2 == 0)
    num = numeric_grad(lambda a: R.bce_with_logits_ref(a, t), x, 1.0, eps=EPS)
    assert max_rel_error(R.bce_with_logits_grad_ref(x, t), num) <= 1e-6
    num = numeric_grad(lambda a: R.mse_loss_ref(a, t), x, 1.0, eps=EPS)
    assert max_rel_error(R.mse_loss_grad_ref(x, t), num) <= 1e-6


def check(x64, labels=None, t64=None, which="ce"):
    x = x64.astype(np.float32)
    if which == "ce":
        for dtype in (np.int32, np.int64):
            loss, g = L.softmax_cross_entropy(x, labels.astype(dtype))
            np.testing.assert_allclose(loss, R.softmax_cross_entropy_ref(x, labels), rtol=RTOL, atol=ATOL)
            np.testing.assert_allclose(g, R.softmax_cross_entropy_grad_ref(x, labels), rtol=RTOL, atol=ATOL)
        return
    t = t64.astype(np.float32)
    f, rf, rg = {"bce": (L.bce_with_logits, R.bce_with_logits_ref, R.bce_with_logits_grad_ref),
                 "mse": (L.mse_loss, R.mse_loss_ref, R.mse_loss_grad_ref)}[which]
    loss, g = f(x, t)
    assert isinstance(loss, float) and g.dtype == np.float32
    np.testing.assert_allclose(loss, rf(x, t), rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(g, rg(x, t), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("cfg", CONFIGS, ids=IDS)
def test_kernels_match_reference(cfg):
    i, scale = cfg
    x, lab = ce_case(i, scale)
    check(x, lab)
    x, t = pair_case(SHAPES[i], scale, i, binary=i % 2 == 0)
    check(x, t64=t, which="bce")
    check(x, t64=t, which="mse")


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 64), k=st.integers(1, 12), scale=st.floats(0.01, 100.0), seed=st.integers(0, 2**16))
def test_kernels_match_reference_random(n, k, scale, seed):
    x, lab = ce_case((n, k), scale, seed)
    check(x, lab)
    x, t = pair_case((n, k), scale, seed, binary=False)
    check(x, t64=t, which="bce")
    check(x, t64=t, which="mse")


def test_large_batch_mean_is_accurate():
    x, t = pair_case((300, 100), 2.0, 3, binary=False)   # 30000 elements: blocked float32 sums
    check(x, t64=t, which="bce")
    check(x, t64=t, which="mse")
    x, lab = ce_case((5000, 10), 3.0, 4)
    check(x, lab)


def test_stable_at_1e4():
    x = np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, -1e4], [1e4, 1e4 - 1, -1e4], [-1e4, 1e4, 5e3]])
    lab = np.array([0, 2, 1, 0])
    check(x, lab)
    loss, g = L.softmax_cross_entropy(x.astype(np.float32), lab.astype(np.int32))
    assert np.isfinite(loss) and np.all(np.isfinite(g))
    # The correct class at +1e4 leads by 1: loss log(1 + e^-1) must survive the 1e4 offset.
    loss, _ = L.softmax_cross_entropy(np.array([[1e4, 1e4 - 1]], np.float32), np.array([0], np.int32))
    np.testing.assert_allclose(loss, np.log1p(np.exp(-1.0)), rtol=RTOL)
    xb = np.array([[1e4, -1e4, 0.0, 30.0], [-30.0, -1e4, 1e4, 2.0]])
    tb = np.array([[1.0, 0.0, 0.5, 0.0], [1.0, 1.0, 0.0, 0.25]])
    check(xb, t64=tb, which="bce")
    loss, g = L.bce_with_logits(xb.astype(np.float32), tb.astype(np.float32))
    assert np.isfinite(loss) and np.all(np.isfinite(g))


def test_grad_buffer_and_in_place():
    x64, lab = ce_case((4, 5), 2.0, 7)
    x = x64.astype(np.float32)
    want_loss, want_g = L.softmax_cross_entropy(x, lab)
    g = np.full_like(x, 9.0)
    loss, g2 = L.softmax_cross_entropy(x, lab, grad=g)
    assert g2 is g and loss == want_loss
    np.testing.assert_array_equal(g, want_g)
    xi = x.copy()
    loss, g3 = L.softmax_cross_entropy(xi, lab, grad=xi)
    assert g3 is xi
    np.testing.assert_allclose(loss, want_loss, rtol=1e-6)
    np.testing.assert_allclose(xi, want_g, rtol=1e-6, atol=1e-7)
    t = np.random.default_rng(0).uniform(0, 1, x.shape).astype(np.float32)
    for f in (L.bce_with_logits, L.mse_loss):
        want_loss, want_g = f(x, t)
        xi = x.copy()
        loss, gi = f(xi, t, grad=xi)
        assert gi is xi and loss == want_loss
        np.testing.assert_array_equal(xi, want_g)


X = np.zeros((3, 4), np.float32)
LAB = np.zeros(3, np.int32)


@pytest.mark.parametrize("call, exc, name", [
    (lambda: L.softmax_cross_entropy(X.astype(np.float64), LAB), TypeError, "logits"),
    (lambda: L.softmax_cross_entropy(X[None], LAB), ValueError, "logits"),
    (lambda: L.softmax_cross_entropy(np.zeros((4, 3), np.float32).T, LAB), ValueError, "logits"),
    (lambda: L.softmax_cross_entropy(X, LAB.astype(np.float32)), TypeError, "labels"),
    (lambda: L.softmax_cross_entropy(X, [0, 1, 2]), TypeError, "labels"),
    (lambda: L.softmax_cross_entropy(X, np.zeros(4, np.int64)), ValueError, "labels"),
    (lambda: L.softmax_cross_entropy(X, np.zeros((3, 1), np.int32)), ValueError, "labels"),
    (lambda: L.softmax_cross_entropy(X, np.array([0, 4, 1], np.int32)), ValueError, "labels"),
    (lambda: L.softmax_cross_entropy(X, np.array([0, -1, 1], np.int64)), ValueError, "labels"),
    (lambda: L.softmax_cross_entropy(X, np.zeros(6, np.int32)[::2]), ValueError, "labels"),
    (lambda: L.softmax_cross_entropy(X, LAB, grad=np.zeros((3, 3), np.float32)), ValueError, "grad"),
    (lambda: L.bce_with_logits(X, np.zeros((3, 5), np.float32)), ValueError, "targets"),
    (lambda: L.bce_with_logits(X.astype(np.float16), X), TypeError, "logits"),
    (lambda: L.bce_with_logits(X, X.astype(np.int8)), TypeError, "targets"),
    (lambda: L.mse_loss(X, X, grad=np.zeros(12, np.float32)), ValueError, "grad"),
    (lambda: L.mse_loss(X, np.zeros((4, 3), np.float32)), ValueError, "target"),
    (lambda: L.mse_loss(np.zeros((0, 3), np.float32), np.zeros((0, 3), np.float32)), ValueError, "pred"),
])
def test_validation_names_the_parameter(call, exc, name):
    with pytest.raises(exc) as info:
        call()
    msg = str(info.value)
    op = msg.split(":")[0]
    assert name in msg and op in ("softmax_cross_entropy", "bce_with_logits", "mse_loss"), msg
