"""Pooling: reference backward vs finite differences, float32 kernels vs reference, ties, validation."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from edgecnn.kernels import pool as P
from reference import max_rel_error, numeric_grad
from reference import pool as R

RTOL, ATOL = 1e-4, 1e-5

# (N, C, H, W, kernel, stride, padding): stride 1-3, padding, overlapping windows (stride < kernel),
# non-square inputs and kernels, batch 1, single channel, 1x1 outputs.
CONFIGS = [
    (1, 1, 4, 4, 2, None, 0),
    (2, 3, 6, 6, 2, 2, 0),
    (1, 2, 5, 7, 3, 1, 1),
    (2, 1, 7, 5, (3, 2), (2, 1), (1, 0)),
    (1, 1, 3, 3, 3, 1, 1),
    (1, 1, 3, 3, 3, 3, 0),
    (2, 2, 8, 8, 3, 2, 1),
    (1, 3, 9, 6, (2, 3), (3, 2), (1, 1)),
    (3, 1, 5, 5, 2, 1, 0),
    (1, 1, 6, 6, (1, 3), (1, 3), 0),
    (1, 2, 4, 6, (4, 2), 1, (2, 1)),
    (2, 2, 7, 7, 3, 3, 1),
    (1, 1, 2, 2, 2, 1, 1),
    (1, 1, 1, 1, 1, 1, 0),
    (1, 1, 5, 1, (3, 1), (2, 1), (1, 0)),
    (1, 4, 6, 5, 2, (1, 2), (1, 0)),
    (2, 1, 10, 3, (5, 3), (3, 1), (2, 1)),
    (1, 2, 6, 6, 4, 2, 2),
    (1, 1, 7, 9, (3, 5), (2, 3), (1, 2)),
    (2, 3, 4, 4, (2, 4), (2, 1), 0),
    (1, 1, 8, 3, 3, (2, 1), (0, 1)),
    (1, 2, 5, 5, 5, 1, 2),
    (3, 2, 3, 4, (1, 2), 1, 0),
    (1, 1, 6, 8, 2, (1, 3), 1),
    (1, 3, 7, 4, 3, 3, 0),
    (2, 1, 9, 9, (2, 3), 3, 1),
    (1, 1, 4, 7, 4, 1, (0, 2)),
    (1, 2, 3, 6, (3, 2), 2, 1),
    (2, 2, 5, 4, 2, 3, 0),
    (1, 1, 12, 5, (3, 1), (3, 2), (1, 0)),
    (1, 2, 6, 7, 2, 1, 0),
    (2, 2, 6, 6, 2, 2, 1),
]
IDS = [f"{c[:4]}-k{c[4]}-s{c[5]}-p{c[6]}" for c in CONFIGS]


def distinct(shape, seed):
    """Values without ties (gaps >> the finite-difference step), signs mixed, none near 0."""
    rng = np.random.default_rng(seed)
    n = int(np.prod(shape))
    v = (rng.permutation(n) + 1.0) / n + 0.1
    return (v * rng.choice([-1.0, 1.0], n)).reshape(shape)


def case(cfg, seed=0):
    n, c, h, w, k, s, p = cfg
    x64 = distinct((n, c, h, w), seed)
    y_shape = P.pool2d_output_shape((n, c, h, w), k, s, p)
    gy64 = np.random.default_rng(seed + 1).standard_normal(y_shape)
    return x64, gy64, k, s, p


def close(actual, expected):
    np.testing.assert_allclose(actual, expected, rtol=RTOL, atol=ATOL)


def test_configs_cover_the_brief():
    assert len(CONFIGS) >= 30
    assert any(c[0] == 1 for c in CONFIGS) and any(c[1] == 1 for c in CONFIGS)
    shapes = [P.pool2d_output_shape(c[:4], *c[4:]) for c in CONFIGS]
    assert any(s[2:] == (1, 1) for s in shapes)
    strides = {st for c in CONFIGS for st in R._geometry(c[:4], c[4], c[5], c[6])[1]}
    assert {1, 2, 3} <= strides


@pytest.mark.parametrize("cfg", CONFIGS, ids=IDS)
def test_reference_backward_matches_finite_differences(cfg):
    x, gy, k, s, p = case(cfg)
    g = R.max_pool2d_bwd_ref(gy, R.max_pool2d_ref(x, k, s, p)[1], x.shape)
    assert max_rel_error(g, numeric_grad(lambda a: R.max_pool2d_ref(a, k, s, p)[0], x, gy)) <= 1e-6
    for cip in (True, False):
        g = R.avg_pool2d_bwd_ref(gy, x.shape, k, s, p, cip)
        num = numeric_grad(lambda a: R.avg_pool2d_ref(a, k, s, p, cip), x, gy)
        assert max_rel_error(g, num) <= 1e-6
    g = R.l2_pool2d_bwd_ref(gy, x, k, s, p)
    assert max_rel_error(g, numeric_grad(lambda a: R.l2_pool2d_ref(a, k, s, p), x, gy)) <= 1e-6


def check_kernels(x64, gy64, k, s, p):
    x = x64.astype(np.float32)
    gy = gy64.astype(np.float32)
    y, am = P.max_pool2d_forward(x, k, s, p)
    ry, ram = R.max_pool2d_ref(x.astype(np.float64), k, s, p)
    close(y, ry)
    np.testing.assert_array_equal(am, ram)
    close(P.max_pool2d_backward(gy, am, x.shape), R.max_pool2d_bwd_ref(gy, ram, x.shape))
    for cip in (True, False):
        close(P.avg_pool2d_forward(x, k, s, p, count_include_pad=cip), R.avg_pool2d_ref(x, k, s, p, cip))
        close(P.avg_pool2d_backward(gy, x.shape, k, s, p, count_include_pad=cip),
              R.avg_pool2d_bwd_ref(gy, x.shape, k, s, p, cip))
    y2 = P.l2_pool2d_forward(x, k, s, p)
    close(y2, R.l2_pool2d_ref(x, k, s, p))
    close(P.l2_pool2d_backward(gy, x, y2, k, s, p), R.l2_pool2d_bwd_ref(gy, x.astype(np.float64), k, s, p))


@pytest.mark.parametrize("cfg", CONFIGS, ids=IDS)
def test_kernels_match_reference(cfg):
    check_kernels(*case(cfg))


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 3), c=st.integers(1, 3), h=st.integers(1, 9), w=st.integers(1, 9),
       kh=st.integers(1, 4), kw=st.integers(1, 4), sh=st.integers(1, 3), sw=st.integers(1, 3),
       ph=st.integers(0, 2), pw=st.integers(0, 2), seed=st.integers(0, 2**16))
def test_kernels_match_reference_random(n, c, h, w, kh, kw, sh, sw, ph, pw, seed):
    ph, pw = min(ph, kh // 2), min(pw, kw // 2)
    if h + 2 * ph < kh or w + 2 * pw < kw:
        return
    cfg = (n, c, h, w, (kh, kw), (sh, sw), (ph, pw))
    check_kernels(*case(cfg, seed))


def test_global_avg_pool():
    for shape in [(1, 1, 1, 1), (2, 3, 4, 5), (1, 2, 7, 3), (3, 1, 6, 6)]:
        x64 = distinct(shape, 3)
        gy64 = np.random.default_rng(4).standard_normal(shape[:2])
        g = R.global_avg_pool2d_bwd_ref(gy64, shape)
        assert max_rel_error(g, numeric_grad(R.global_avg_pool2d_ref, x64, gy64)) <= 1e-6
        x, gy = x64.astype(np.float32), gy64.astype(np.float32)
        close(P.global_avg_pool2d_forward(x), R.global_avg_pool2d_ref(x))
        close(P.global_avg_pool2d_backward(gy, shape), R.global_avg_pool2d_bwd_ref(gy, shape))


def test_max_pool_ties_go_to_first_in_raster_order():
    # Constant planes: every cell ties. Overlapping windows (stride 1) and padding (pads never win,
    # even against negative values).
    for value in (0.0, -5.0, 2.0):
        x = np.full((1, 2, 5, 4), value, np.float32)
        for k, s, p in [(2, 2, 0), (3, 1, 1), ((2, 3), (1, 2), (1, 1)), (2, 1, 0)]:
            y, am = P.max_pool2d_forward(x, k, s, p)
            ry, ram = R.max_pool2d_ref(x, k, s, p)
            np.testing.assert_array_equal(y, np.full(y.shape, value, np.float32))
            np.testing.assert_array_equal(am, ram)
    # A tie inside one 2x2 window between the second and the fourth cell.
    x = np.array([[[[0, 7], [1, 7]]]], np.float32)
    y, am = P.max_pool2d_forward(x, 2)
    assert y[0, 0, 0, 0] == 7 and am[0, 0, 0, 0] == 1
    gx = P.max_pool2d_backward(np.ones_like(y), am, x.shape)
    np.testing.assert_array_equal(gx, [[[[0, 1], [0, 0]]]])


def test_max_pool_overlapping_windows_accumulate():
    x = np.zeros((1, 1, 3, 3), np.float32)
    x[0, 0, 1, 1] = 1.0  # the centre wins all four overlapping 2x2 windows
    y, am = P.max_pool2d_forward(x, 2, 1)
    gx = P.max_pool2d_backward(np.arange(1, 5, dtype=np.float32).reshape(1, 1, 2, 2), am, x.shape)
    assert gx[0, 0, 1, 1] == 10.0 and gx.sum() == 10.0


def test_max_pool_propagates_nan():
    x = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
    x[0, 0, 0, 1] = np.nan
    for k in (2, 3):
        y, am = P.max_pool2d_forward(x, k, 1)
        assert np.isnan(y[0, 0, 0, 0]) and am[0, 0, 0, 0] == 1



@pytest.mark.parametrize("shape", [(3, 5, 8, 8), (2, 3, 7, 9), (1, 4, 28, 28), (2, 2, 2, 3)])
def test_max_pool_2x2_stride2_ties_and_nans_match_reference(shape):
    """The 2x2 stride-2 loop (literal strides) against the reference: values from a tiny set so
    windows tie often, a few NaNs (the first one in raster order wins), odd sizes dropping a row."""
    rng = np.random.default_rng(sum(shape))
    x = rng.integers(-2, 3, shape).astype(np.float32)
    x[rng.random(shape) < 0.05] = np.nan
    y, am = P.max_pool2d_forward(x, 2)
    n, c, oh, ow = y.shape
    for q in np.ndindex(n, c, oh, ow):   # raster order: a strictly greater value or the first NaN wins
        best, arg = None, -1
        for i, j in ((0, 0), (0, 1), (1, 0), (1, 1)):
            h, w = 2 * q[2] + i, 2 * q[3] + j
            v = x[q[0], q[1], h, w]
            if best is None or v > best or (np.isnan(v) and not np.isnan(best)):
                best, arg = v, h * shape[3] + w
        assert am[q] == arg, q
        np.testing.assert_array_equal(y[q], best)   # NaNs compare equal here
    x[np.isnan(x)] = 0.5
    y, am = P.max_pool2d_forward(x, 2)
    ry, ram = R.max_pool2d_ref(x, 2, 2, 0)
    np.testing.assert_array_equal(am, ram)
    np.testing.assert_array_equal(y, ry.astype(np.float32))

def test_preallocated_outputs_are_used():
    x = distinct((2, 3, 6, 6), 5).astype(np.float32)
    out = np.empty((2, 3, 3, 3), np.float32)
    am = np.empty((2, 3, 3, 3), np.int32)
    y, a = P.max_pool2d_forward(x, 2, out=out, argmax=am)
    assert y is out and a is am
    gx = np.full(x.shape, 9.0, np.float32)  # stale contents must be overwritten
    assert P.max_pool2d_backward(np.ones_like(y), am, x.shape, gx=gx) is gx
    assert gx.sum() == y.size
    for f, args in [(P.avg_pool2d_backward, (np.ones_like(y), x.shape, 2)),
                    (P.l2_pool2d_backward, (np.ones_like(y), x, P.l2_pool2d_forward(x, 2), 2))]:
        gx[...] = 9.0
        assert f(*args, gx=gx) is gx
        assert not np.any(gx == 9.0)


# ---------------------------------------------------------------------------------------- validation
X = np.zeros((1, 2, 6, 6), np.float32)


@pytest.mark.parametrize("call, exc, name", [
    (lambda: P.max_pool2d_forward(X.astype(np.float64), 2), TypeError, "x"),
    (lambda: P.max_pool2d_forward(X[0], 2), ValueError, "x"),
    (lambda: P.max_pool2d_forward(np.zeros((1, 2, 6, 12), np.float32)[..., ::2], 2), ValueError, "x"),
    (lambda: P.max_pool2d_forward([[1.0]], 2), TypeError, "x"),
    (lambda: P.max_pool2d_forward(X, 0), ValueError, "kernel_size"),
    (lambda: P.max_pool2d_forward(X, (2, 2, 2)), ValueError, "kernel_size"),
    (lambda: P.max_pool2d_forward(X, 2.0), TypeError, "kernel_size"),
    (lambda: P.max_pool2d_forward(X, 2, 0), ValueError, "stride"),
    (lambda: P.max_pool2d_forward(X, 2, 1, -1), ValueError, "padding"),
    (lambda: P.max_pool2d_forward(X, 3, 1, 2), ValueError, "padding"),
    (lambda: P.max_pool2d_forward(X, 2, 1, "same"), TypeError, "padding"),
    (lambda: P.max_pool2d_forward(X, 7), ValueError, "kernel"),
    (lambda: P.avg_pool2d_forward(X, (2, 9), 1, (0, 1)), ValueError, "kernel"),
    (lambda: P.max_pool2d_forward(X, 2, out=np.zeros((1, 2, 2, 3), np.float32)), ValueError, "out"),
    (lambda: P.max_pool2d_forward(X, 2, argmax=np.zeros((1, 2, 3, 3), np.int64)), TypeError, "argmax"),
    (lambda: P.max_pool2d_backward(np.zeros((1, 2, 3, 3), np.float32), np.zeros((1, 2, 3, 2), np.int32),
                                   X.shape), ValueError, "argmax"),
    (lambda: P.max_pool2d_backward(np.zeros((1, 2, 3, 3), np.float32), np.full((1, 2, 3, 3), 36, np.int32),
                                   X.shape), ValueError, "argmax"),
    (lambda: P.max_pool2d_backward(np.zeros((1, 3, 3, 3), np.float32), np.zeros((1, 3, 3, 3), np.int32),
                                   X.shape), ValueError, "gy"),
    (lambda: P.max_pool2d_backward(np.zeros((1, 2, 3, 3), np.float32), np.zeros((1, 2, 3, 3), np.int32),
                                   (1, 2, 6)), ValueError, "x_shape"),
    (lambda: P.max_pool2d_backward(np.zeros((1, 2, 3, 3), np.float32), np.zeros((1, 2, 3, 3), np.int32),
                                   X.shape, gx=np.zeros((1, 2, 6, 5), np.float32)), ValueError, "gx"),
    (lambda: P.avg_pool2d_backward(np.zeros((1, 2, 2, 2), np.float32), X.shape, 2), ValueError, "gy"),
    (lambda: P.avg_pool2d_backward(np.zeros((1, 2, 3, 3), np.float32), (1, 2, 6, 0), 2), ValueError, "x_shape"),
    (lambda: P.l2_pool2d_backward(np.zeros((1, 2, 3, 3), np.float32), X, np.zeros((1, 2, 3, 2), np.float32), 2),
     ValueError, "y"),
    (lambda: P.global_avg_pool2d_forward(X, out=np.zeros((1, 3), np.float32)), ValueError, "out"),
    (lambda: P.global_avg_pool2d_backward(np.zeros((1, 3), np.float32), X.shape), ValueError, "gy"),
    (lambda: P.pool2d_output_shape((1, 2, 6), 2), ValueError, "x"),
])
def test_validation_names_the_parameter(call, exc, name):
    with pytest.raises(exc) as info:
        call()
    msg = str(info.value)
    assert name in msg and "pool" in msg, msg
