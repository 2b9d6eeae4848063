"""Dropout: reference backward vs finite differences, mask from its definition, statistics,
determinism across call paths, eval mode, in-place use, validation."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from edgecnn.kernels import dropout as D
from reference import dropout as R
from reference import max_rel_error, numeric_grad

RTOL, ATOL = 1e-4, 1e-5
SHAPES = [(1,), (7,), (2, 3), (3, 4, 5), (1, 2, 3, 4), (2, 1, 4, 4)]
CONFIGS = [(i, rate, seed) for i in range(6) for rate, seed in
           [(0.0, 0), (0.1, 1), (0.25, 2), (0.5, 3), (0.9, 4)]]   # 30


def case(cfg):
    i, rate, seed = cfg
    rng = np.random.default_rng(seed)
    return rng.standard_normal(SHAPES[i]), rng.standard_normal(SHAPES[i]), rate, seed


@pytest.mark.parametrize("cfg", CONFIGS)
def test_reference_backward_matches_finite_differences(cfg):
    x, gy, rate, seed = case(cfg)
    mask = R.dropout_mask_ref(x.shape, rate, seed)
    num = numeric_grad(lambda a: R.dropout_ref(a, mask, rate), x, gy)
    assert max_rel_error(R.dropout_bwd_ref(gy, mask, rate), num) <= 1e-6


def check(x64, gy64, rate, seed):
    x, gy = x64.astype(np.float32), gy64.astype(np.float32)
    y, mask = D.dropout_forward(x, rate, seed)
    assert mask.dtype == np.uint8 and mask.shape == x.shape
    np.testing.assert_array_equal(mask, R.dropout_mask_ref(x.shape, rate, seed))
    np.testing.assert_allclose(y, R.dropout_ref(x, mask, rate), rtol=RTOL, atol=ATOL)
    gx = D.dropout_backward(gy, mask, rate)
    np.testing.assert_allclose(gx, R.dropout_bwd_ref(gy, mask, rate), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("cfg", CONFIGS)
def test_kernels_match_reference(cfg):
    check(*case(cfg))


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 300), rate=st.floats(0.0, 0.99), seed=st.integers(0, 2**64 - 1))
def test_kernels_match_reference_random(n, rate, seed):
    rng = np.random.default_rng(n)
    check(rng.standard_normal(n), rng.standard_normal(n), rate, seed)


@pytest.mark.parametrize("rate", [0.1, 0.5, 0.8])
def test_drop_fraction_and_mean_are_right(rate):
    x = np.ones((4, 50000), np.float32)  # the parallel path
    y, mask = D.dropout_forward(x, rate, 123)
    n = x.size
    assert abs((1 - mask.mean()) - rate) < 5 * np.sqrt(rate * (1 - rate) / n)
    assert abs(y.mean() - 1.0) < 5 * np.sqrt(rate / (1 - rate) / n)   # inverted scaling keeps E[y]
    np.testing.assert_array_equal(mask, R.dropout_mask_ref(x.shape, rate, 123))


def test_deterministic_and_path_independent():
    x = np.random.default_rng(0).standard_normal((3, 40000)).astype(np.float32)
    y1, m1 = D.dropout_forward(x, 0.3, 7)
    y2, m2 = D.dropout_forward(x, 0.3, 7)
    np.testing.assert_array_equal(m1, m2)
    np.testing.assert_array_equal(y1, y2)
    _, m3 = D.dropout_forward(x, 0.3, 8)
    assert (m1 != m3).mean() > 0.3
    # Element i depends on (seed, i) only: the serial path on a prefix gives the parallel path's prefix.
    _, small = D.dropout_forward(np.ascontiguousarray(x.reshape(-1)[:1000]), 0.3, 7)
    np.testing.assert_array_equal(small, m1.reshape(-1)[:1000])


def test_eval_mode_and_rate_zero_copy():
    x = np.random.default_rng(1).standard_normal((2, 5)).astype(np.float32)
    for kw in ({"training": False}, {}):
        rate = 0.5 if kw else 0.0
        mask = np.zeros(x.shape, np.uint8)
        y, m = D.dropout_forward(x, rate, 3, mask=mask, **kw)
        assert m is mask and np.all(mask == 1) and y is not x
        np.testing.assert_array_equal(y, x)
        # Eval-mode backward is the identity: pass rate=0 (the mask is all ones).
        np.testing.assert_array_equal(D.dropout_backward(x, mask, 0.0), x)


def test_in_place():
    x64, gy64, rate, seed = case((3, 0.5, 3))
    x, gy = x64.astype(np.float32), gy64.astype(np.float32)
    want_y, want_m = D.dropout_forward(x, rate, seed)
    want_gx = D.dropout_backward(gy, want_m, rate)
    y, m = D.dropout_forward(x, rate, seed, out=x)
    assert y is x
    np.testing.assert_array_equal(x, want_y)
    assert D.dropout_backward(gy, m, rate, gx=gy) is gy
    np.testing.assert_array_equal(gy, want_gx)


def test_in_place_parallel_path():
    """Above the serial threshold too: the in-place loops give the bits of the two-buffer ones."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal(3 * D.CHUNK + 17).astype(np.float32)
    gy = rng.standard_normal(x.size).astype(np.float32)
    want_y, want_m = D.dropout_forward(x, 0.3, 11)
    want_gx = D.dropout_backward(gy, want_m, 0.3)
    y, m = D.dropout_forward(x, 0.3, 11, out=x)
    np.testing.assert_array_equal(m, want_m)
    np.testing.assert_array_equal(x, want_y)
    assert D.dropout_backward(gy, m, 0.3, gx=gy) is gy
    np.testing.assert_array_equal(gy, want_gx)


X = np.zeros((2, 3), np.float32)
M = np.ones((2, 3), np.uint8)


@pytest.mark.parametrize("call, exc, name", [
    (lambda: D.dropout_forward(X.astype(np.float64), 0.5, 0), TypeError, "x"),
    (lambda: D.dropout_forward(np.zeros((3, 4), np.float32)[:, ::2], 0.5, 0), ValueError, "x"),
    (lambda: D.dropout_forward(X, 1.0, 0), ValueError, "rate"),
    (lambda: D.dropout_forward(X, -0.1, 0), ValueError, "rate"),
    (lambda: D.dropout_forward(X, float("nan"), 0), ValueError, "rate"),
    (lambda: D.dropout_forward(X, "0.5", 0), ValueError, "rate"),
    (lambda: D.dropout_forward(X, 0.5, -1), ValueError, "seed"),
    (lambda: D.dropout_forward(X, 0.5, 1.5), ValueError, "seed"),
    (lambda: D.dropout_forward(X, 0.5, 2**64), ValueError, "seed"),
    (lambda: D.dropout_forward(X, 0.5, 0, out=np.zeros((3, 2), np.float32)), ValueError, "out"),
    (lambda: D.dropout_forward(X, 0.5, 0, mask=np.zeros((2, 3), np.bool_)), TypeError, "mask"),
    (lambda: D.dropout_backward(X, np.ones((3, 2), np.uint8), 0.5), ValueError, "mask"),
    (lambda: D.dropout_backward(X, M.astype(np.int32), 0.5), TypeError, "mask"),
    (lambda: D.dropout_backward(X, M, 1.5), ValueError, "rate"),
    (lambda: D.dropout_backward(X[None].astype(np.float16), M, 0.5), TypeError, "gy"),
    (lambda: D.dropout_backward(X, M, 0.5, gx=np.zeros((6,), np.float32)), ValueError, "gx"),
])
def test_validation_names_the_parameter(call, exc, name):
    with pytest.raises(exc) as info:
        call()
    msg = str(info.value)
    assert name in msg and "dropout_" in msg, msg
