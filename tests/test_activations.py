"""Activations: reference backward vs finite differences, float32 kernels vs reference, stability,
in-place use, the parallel path and validation."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from edgecnn.kernels import activations as A
from reference import activations as R
from reference import max_rel_error, numeric_grad

RTOL, ATOL = 1e-4, 1e-5

# name: (forward, backward, reference forward, reference backward, settings); softmax ones are 2-D.
OPS = {
    "relu": (A.relu_forward, A.relu_backward, R.relu_ref, R.relu_bwd_ref, {}),
    "leaky_relu": (A.leaky_relu_forward, A.leaky_relu_backward, R.leaky_relu_ref, R.leaky_relu_bwd_ref,
                   {"alpha": 0.2}),
    "leaky_relu_default": (A.leaky_relu_forward, A.leaky_relu_backward, R.leaky_relu_ref,
                           R.leaky_relu_bwd_ref, {}),
    "sigmoid": (A.sigmoid_forward, A.sigmoid_backward, R.sigmoid_ref, R.sigmoid_bwd_ref, {}),
    "tanh": (A.tanh_forward, A.tanh_backward, R.tanh_ref, R.tanh_bwd_ref, {}),
    "identity": (A.identity_forward, A.identity_backward, R.identity_ref, R.identity_bwd_ref, {}),
    "softmax": (A.softmax_forward, A.softmax_backward, R.softmax_ref, R.softmax_bwd_ref, {}),
    "log_softmax": (A.log_softmax_forward, A.log_softmax_backward, R.log_softmax_ref,
                    R.log_softmax_bwd_ref, {}),
}
SOFTMAX = {"softmax", "log_softmax"}

SHAPES = [(1,), (7,), (2, 3), (1, 1), (3, 5), (4, 1), (2, 3, 4), (1, 2, 3, 2), (2, 1, 3, 3), (1, 10)]
SHAPES_2D = [(1, 1), (1, 2), (2, 3), (3, 5), (4, 1), (1, 10), (5, 10), (2, 7), (6, 4), (3, 3)]
CONFIGS = [(i, scale) for i in range(10) for scale in (0.5, 3.0, 12.0)]  # 30 per op


def data(shape, scale, seed):
    """Values away from 0 (relu's kink) with mixed signs."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.05, 1.0, shape) * rng.choice([-1.0, 1.0], shape) * scale
    return x, rng.standard_normal(shape)


def centered(f, x0):
    """f minus its value at x0: the same gradient, but the finite-difference sums see only the
    perturbed entries, so cancellation in sum(f(x) * gy) over large values does not swamp them."""
    f0 = f(x0)
    return lambda a: f(a) - f0


def shape_of(name, i):
    return (SHAPES_2D if name in SOFTMAX else SHAPES)[i]


def run_kernels(name, x64, gy64):
    fwd, bwd, rf, rb, kw = OPS[name]
    x, gy = x64.astype(np.float32), gy64.astype(np.float32)
    y = fwd(x, **kw)
    np.testing.assert_allclose(y, rf(x, **kw), rtol=RTOL, atol=ATOL)
    gx = bwd(gy, x, y, **kw)
    np.testing.assert_allclose(gx, rb(gy, x, **kw), rtol=RTOL, atol=ATOL)
    return x, y, gy, gx


@pytest.mark.parametrize("name", list(OPS))
@pytest.mark.parametrize("cfg", CONFIGS, ids=[f"{i}-{s}" for i, s in CONFIGS])
def test_reference_backward_matches_finite_differences(name, cfg):
    _, _, rf, rb, kw = OPS[name]
    x, gy = data(shape_of(name, cfg[0]), cfg[1], cfg[0])
    assert max_rel_error(rb(gy, x, **kw), numeric_grad(centered(lambda a: rf(a, **kw), x), x, gy)) <= 1e-6


@pytest.mark.parametrize("name", list(OPS))
@pytest.mark.parametrize("cfg", CONFIGS, ids=[f"{i}-{s}" for i, s in CONFIGS])
def test_kernels_match_reference(name, cfg):
    run_kernels(name, *data(shape_of(name, cfg[0]), cfg[1], cfg[0]))


@settings(max_examples=30, deadline=None)
@given(name=st.sampled_from(sorted(OPS)), rows=st.integers(1, 9), cols=st.integers(1, 12),
       scale=st.floats(0.01, 50.0), seed=st.integers(0, 2**16))
def test_kernels_match_reference_random(name, rows, cols, scale, seed):
    run_kernels(name, *data((rows, cols), scale, seed))


@pytest.mark.parametrize("name", list(OPS))
def test_parallel_path_and_in_place(name):
    fwd, bwd, _, _, kw = OPS[name]
    big = (4000, 20) if name in SOFTMAX else (2, 3, 200, 100)
    assert np.prod(big) >= 2 * A.CHUNK   # above the serial threshold: the prange kernels run
    for shape in (big, (2, 5)):
        x, y, gy, gx = run_kernels(name, *data(shape, 2.0, 1))
        a, g = x.copy(), gy.copy()
        # Aliased buffers may take the scalar (not the vectorized) loop: equal up to rounding.
        assert fwd(a, out=a, **kw) is a
        np.testing.assert_allclose(a, y, rtol=1e-6, atol=1e-7)
        assert bwd(g, x, y, gx=g, **kw) is g
        np.testing.assert_allclose(g, gx, rtol=1e-6, atol=1e-7)
        if name in ("relu", "leaky_relu", "leaky_relu_default"):   # selects: exact on any loop
            np.testing.assert_array_equal(a, y)
            np.testing.assert_array_equal(g, gx)
        if name == "relu":   # after an in-place forward, y stands in for x
            np.testing.assert_array_equal(bwd(gy, a, a), gx)


@pytest.mark.parametrize("name", sorted(SOFTMAX))
def test_softmax_stable_at_1e4(name):
    x64 = np.array([[1e4, -1e4, 0.0, 1.0], [-1e4, -1e4, -1e4, -1e4], [1e4, 1e4, 1e4 - 1, -1e4],
                    [-1e4, 1e4, -5e3, 5e3]])
    gy64 = np.random.default_rng(0).standard_normal(x64.shape)
    x, y, gy, gx = run_kernels(name, x64, gy64)
    assert np.all(np.isfinite(y)) and np.all(np.isfinite(gx))
    if name == "softmax":
        np.testing.assert_allclose(y.sum(axis=1), 1.0, rtol=1e-6)
    # The reference itself checked by finite differences at this scale.
    _, _, rf, rb, _ = OPS[name]
    assert max_rel_error(rb(gy64, x64), numeric_grad(centered(rf, x64), x64, gy64)) <= 1e-6


def test_sigmoid_tails_do_not_overflow():
    x = np.array([-1e4, -80.0, -20.0, 0.0, 20.0, 100.0, 1e4], np.float32)  # -80: still a normal float32
    y = A.sigmoid_forward(x)
    assert np.all(np.isfinite(y))
    np.testing.assert_allclose(y, R.sigmoid_ref(x), rtol=RTOL, atol=0)  # relative, even at 2e-9
    assert A.tanh_forward(x)[0] == -1.0 and A.tanh_forward(x)[-1] == 1.0


def test_sigmoid_and_tanh_accuracy_sweep():
    # Both use a polynomial float32 exp: relative error stays within a few float32 ulps everywhere the
    # result is a normal float32 (sigmoid is exactly 0 below x = -87.33, where it would be subnormal).
    x = np.concatenate([np.linspace(-87.3, 87.3, 40001), np.linspace(-0.1, 0.1, 2001)]).astype(np.float32)
    for f, ref in ((A.sigmoid_forward, R.sigmoid_ref), (A.tanh_forward, R.tanh_ref)):
        want = ref(x)
        rel = np.abs(f(x) - want) / np.maximum(np.abs(want), 1e-30)
        assert rel.max() < 1e-6, (f.__name__, rel.max(), x[rel.argmax()])


def test_nan_propagates():
    x = np.array([np.nan, -1.0, 1.0], np.float32)
    for f in (A.relu_forward, A.leaky_relu_forward, A.sigmoid_forward, A.tanh_forward):
        assert np.isnan(f(x)[0])


def test_unused_argument_may_be_none():
    x = np.array([[-1.0, 2.0]], np.float32)
    gy = np.ones_like(x)
    np.testing.assert_array_equal(A.relu_backward(gy, x, None), [[0, 1]])
    y = A.sigmoid_forward(x)
    np.testing.assert_allclose(A.sigmoid_backward(gy, None, y), y * (1 - y), rtol=1e-6)
    np.testing.assert_array_equal(A.identity_backward(gy, None, None), gy)


# ---------------------------------------------------------------------------------------- validation
X2 = np.zeros((2, 3), np.float32)


@pytest.mark.parametrize("call, exc, name", [
    (lambda: A.relu_forward(X2.astype(np.float64)), TypeError, "x"),
    (lambda: A.tanh_forward(np.zeros((4, 6), np.float32)[:, ::2]), ValueError, "x"),
    (lambda: A.sigmoid_forward([1.0]), TypeError, "x"),
    (lambda: A.relu_forward(np.zeros((2, 0), np.float32)), ValueError, "x"),
    (lambda: A.relu_forward(X2, out=np.zeros((3, 2), np.float32)), ValueError, "out"),
    (lambda: A.identity_forward(X2, out=np.zeros((2, 3), np.float64)), TypeError, "out"),
    (lambda: A.softmax_forward(np.zeros((2, 3, 4), np.float32)), ValueError, "x"),
    (lambda: A.log_softmax_forward(np.zeros(3, np.float32)), ValueError, "x"),
    (lambda: A.leaky_relu_forward(X2, alpha="0.1"), TypeError, "alpha"),
    (lambda: A.leaky_relu_backward(X2, X2, X2, alpha=float("nan")), TypeError, "alpha"),
    (lambda: A.relu_backward(X2, np.zeros((3, 2), np.float32), None), ValueError, "x"),
    (lambda: A.relu_backward(X2, None, X2), TypeError, "x"),
    (lambda: A.sigmoid_backward(X2, X2, None), TypeError, "y"),
    (lambda: A.tanh_backward(X2, None, np.zeros((2, 4), np.float32)), ValueError, "y"),
    (lambda: A.softmax_backward(X2, None, np.zeros((2, 3), np.int32)), TypeError, "y"),
    (lambda: A.log_softmax_backward(np.zeros((2, 3, 1), np.float32), None, X2), ValueError, "gy"),
    (lambda: A.relu_backward(X2.astype(np.float16), X2, X2), TypeError, "gy"),
    (lambda: A.identity_backward(X2, X2, X2, gx=np.zeros((2, 2), np.float32)), ValueError, "gx"),
])
def test_validation_names_the_parameter(call, exc, name):
    with pytest.raises(exc) as info:
        call()
    msg = str(info.value)
    assert name in msg and ("_forward" in msg or "_backward" in msg), msg
