"""Dense: reference backward vs finite differences, float32 kernels vs reference, outputs, validation."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from edgecnn.kernels import dense as D
from reference import dense as R
from reference import max_rel_error, numeric_grad

RTOL, ATOL = 1e-4, 1e-5

# (N, in, out, bias): batch 1, single feature, wide and tall.
CONFIGS = [(n, i, o, bias) for n, i, o in [
    (1, 1, 1), (1, 3, 2), (2, 1, 4), (3, 5, 1), (4, 4, 4), (2, 7, 3), (5, 2, 6), (1, 10, 10), (3, 8, 5),
    (6, 3, 2), (2, 12, 7), (7, 6, 9), (1, 16, 3), (4, 9, 1), (8, 2, 2)] for bias in (True, False)]


def case(cfg, seed=0):
    n, i, o, bias = cfg
    rng = np.random.default_rng(seed)
    x, w, gy = rng.standard_normal((n, i)), rng.standard_normal((o, i)), rng.standard_normal((n, o))
    return x, w, (rng.standard_normal(o) if bias else None), gy


@pytest.mark.parametrize("cfg", CONFIGS)
def test_reference_backward_matches_finite_differences(cfg):
    x, w, b, gy = case(cfg)
    gx, gw, gb = R.dense_bwd_ref(gy, x, w)
    assert max_rel_error(gx, numeric_grad(lambda a: R.dense_ref(a, w, b), x, gy)) <= 1e-6
    assert max_rel_error(gw, numeric_grad(lambda a: R.dense_ref(x, a, b), w, gy)) <= 1e-6
    if b is not None:
        assert max_rel_error(gb, numeric_grad(lambda a: R.dense_ref(x, w, a), b, gy)) <= 1e-6


U32 = 2.0 ** -24  # float32's unit roundoff


def assert_sums_close(got, want, abs_terms, k):
    """got within RTOL/ATOL of want, or within float32's rounding of a k-term sum: sqrt(k) * u * sum |term|
    (abs_terms, float64). A fixed ATOL fails sums that cancel: y = x @ w.T with k = 300 has outputs near 0.06
    whose terms add up to ~240 in magnitude, and one came out 2.3e-5 off (2.9 u * sum |term|, as NumPy's own
    matmul: 2.7); the kernels' accumulation order decides which, and it changed with OpenBLAS's kernels."""
    tol = RTOL * np.abs(want) + ATOL + np.sqrt(k) * U32 * abs_terms
    bad = np.abs(got.astype(np.float64) - want) > tol
    assert not bad.any(), f"{bad.sum()} of {bad.size} off by more than the bound, worst at {np.argwhere(bad)[0]}"


def check(x64, w64, b64, gy64):
    f32 = lambda a: None if a is None else a.astype(np.float32)  # noqa: E731
    x, w, b, gy = f32(x64), f32(w64), f32(b64), f32(gy64)
    ax, aw, agy = (np.abs(a.astype(np.float64)) for a in (x, w, gy))
    ay = ax @ aw.T + (0 if b is None else np.abs(b.astype(np.float64)))
    assert_sums_close(D.dense_forward(x, w, b), R.dense_ref(x, w, b), ay, x.shape[1] + 1)
    gx, gw, gb = D.dense_backward(gy, x, w)
    bounds = ((agy @ aw, w.shape[0]), (agy.T @ ax, x.shape[0]), (agy.sum(axis=0), x.shape[0]))
    for got, want, (terms, k) in zip((gx, gw, gb), R.dense_bwd_ref(gy, x, w), bounds):
        assert_sums_close(got, want, terms, k)


@pytest.mark.parametrize("cfg", CONFIGS)
def test_kernels_match_reference(cfg):
    check(*case(cfg))


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 40), i=st.integers(1, 40), o=st.integers(1, 20), bias=st.booleans(),
       seed=st.integers(0, 2**16))
def test_kernels_match_reference_random(n, i, o, bias, seed):
    check(*case((n, i, o, bias), seed))


@pytest.mark.parametrize("shape", [(40, 33, 17, True), (128, 300, 20, False), (17, 64, 40, True)])
def test_products_split_across_threads_match_reference(shape, monkeypatch):
    # Every product split (row blocks for y and gx, column blocks for gw) on two threads.
    import numba
    monkeypatch.setattr(D, "SPLIT_FLOPS", 0)
    old = numba.get_num_threads()
    numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
    try:
        check(*case(shape, 3))
        x, w, b, gy = (None if a is None else a.astype(np.float32) for a in case(shape, 4))
        runs = [(D.dense_forward(x, w, b), *D.dense_backward(gy, x, w)) for _ in range(2)]
        for a1, a2 in zip(*runs):
            assert np.array_equal(a1, a2)  # fixed blocks: deterministic
    finally:
        numba.set_num_threads(old)


def test_preallocated_outputs_and_skips():
    x, w, b, gy = (a.astype(np.float32) for a in case((4, 6, 3, True)))
    out = np.full((4, 3), 7.0, np.float32)
    assert D.dense_forward(x, w, b, out=out) is out
    np.testing.assert_allclose(out, R.dense_ref(x, w, b), rtol=RTOL, atol=ATOL)
    gx, gw, gb = (np.full(s, 7.0, np.float32) for s in ((4, 6), (3, 6), (3,)))
    r = D.dense_backward(gy, x, w, gx=gx, gw=gw, gb=gb)
    assert r[0] is gx and r[1] is gw and r[2] is gb   # overwritten, not accumulated
    for got, want in zip(r, R.dense_bwd_ref(gy, x, w)):
        np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)
    gx2, gw2, gb2 = D.dense_backward(gy, x, w, need_input_grad=False, need_bias_grad=False)
    assert gx2 is None and gb2 is None
    np.testing.assert_allclose(gw2, gw, rtol=1e-6)


X, W = np.zeros((2, 3), np.float32), np.zeros((4, 3), np.float32)
GY = np.zeros((2, 4), np.float32)


@pytest.mark.parametrize("call, exc, name", [
    (lambda: D.dense_forward(X.astype(np.float64), W), TypeError, "x"),
    (lambda: D.dense_forward(np.zeros((2, 3, 1), np.float32), W), ValueError, "x"),
    (lambda: D.dense_forward(np.zeros((3, 2), np.float32).T, W), ValueError, "x"),
    (lambda: D.dense_forward(X, np.zeros((4, 5), np.float32)), ValueError, "w"),
    (lambda: D.dense_forward(X, W[None]), ValueError, "w"),
    (lambda: D.dense_forward(X, W, np.zeros(3, np.float32)), ValueError, "b"),
    (lambda: D.dense_forward(X, W, np.zeros(4, np.int64)), TypeError, "b"),
    (lambda: D.dense_forward(X, W, out=np.zeros((2, 3), np.float32)), ValueError, "out"),
    (lambda: D.dense_backward(np.zeros((2, 3), np.float32), X, W), ValueError, "gy"),
    (lambda: D.dense_backward(GY, X, W, gx=np.zeros((2, 4), np.float32)), ValueError, "gx"),
    (lambda: D.dense_backward(GY, X, W, gw=np.zeros((3, 4), np.float32)), ValueError, "gw"),
    (lambda: D.dense_backward(GY, X, W, gb=np.zeros((3,), np.float32)), ValueError, "gb"),
])
def test_validation_names_the_parameter(call, exc, name):
    with pytest.raises(exc) as info:
        call()
    msg = str(info.value)
    assert name in msg and "dense_" in msg, msg


def test_every_product_runs_with_one_openblas_thread(monkeypatch):
    # outside training nothing else holds OpenBLAS to one thread: a product on its own pool left that
    # pool spinning on the cores the next conv needed (the default model's Model.predict: 1.5x slower)
    from edgecnn._blas import numpy_openblas
    blas = numpy_openblas()
    if not blas:
        pytest.skip("NumPy is not on OpenBLAS")
    seen, real = [], np.matmul

    class NumPy:  # dense's np, with a matmul that notes OpenBLAS's thread count
        def __getattr__(self, name):
            return getattr(np, name)

        @staticmethod
        def matmul(*args, **kwargs):
            seen.append(blas[0]())
            return real(*args, **kwargs)
    monkeypatch.setattr(D, "np", NumPy())
    before = blas[0]()
    blas[1](2)
    try:
        rng = np.random.default_rng(0)
        for n, i, o in ((4, 30, 10), (256, 1024, 256)):  # on the calling thread; split over threads
            x = rng.standard_normal((n, i)).astype(np.float32)
            w = rng.standard_normal((o, i)).astype(np.float32)
            want = x.astype(np.float64) @ w.T.astype(np.float64)
            np.testing.assert_allclose(D.dense_forward(x, w), want, rtol=1e-4, atol=1e-3)
        assert blas[0]() == 2  # restored after each call
    finally:
        blas[1](before)
    assert seen and set(seen) == {1}, seen
