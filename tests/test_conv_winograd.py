"""Winograd F(2x2, 3x3) conv path: forward, input and weight gradients against the float64 reference
on every shape family it serves (odd sizes, every padding it accepts, 1x1 outputs, chunking, one and
two threads), when it is chosen, and that it is deterministic."""
import numba
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from edgecnn.kernels import _conv_winograd, conv, conv2d_backward, conv2d_forward
from reference import conv2d_backward_ref, conv2d_ref

RTOL, ATOL = 1e-4, 1e-5

# (N, C, H, W, K, padding): all 3x3, stride 1
SHAPES = [
    (1, 1, 3, 3, 1, 0),          # one tile, one output
    (2, 3, 5, 6, 4, 1),
    (3, 5, 7, 9, 4, 1),          # odd output height and width
    (2, 8, 6, 5, 16, 0),         # odd output width only
    (2, 4, 4, 4, 8, 2),          # "full": the input gradient then runs with padding 0
    (1, 4, 3, 3, 5, (2, 1)),     # different padding per axis
    (2, 6, 1, 1, 7, 1),          # 1x1 input
    (2, 2, 2, 9, 3, 1),          # a single row of tiles
    (4, 32, 26, 26, 64, 0),      # keras-mnist's second conv
    (5, 24, 14, 14, 48, 1),      # the default model's convs
    (3, 48, 7, 7, 96, 1),
]


def _data(shape, seed, bias=True):
    N, C, H, W, K, pad = shape
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, C, H, W)).astype(np.float32)
    w = (rng.standard_normal((K, C, 3, 3)) / np.sqrt(9 * C)).astype(np.float32)
    b = rng.standard_normal(K).astype(np.float32) if bias else None
    return x, w, b, pad


@pytest.fixture
def winograd(monkeypatch):
    monkeypatch.setattr(conv, "_FORCE_PATH", "winograd")


def _check(x, w, b, pad, seed=7):
    y = conv2d_forward(x, w, b, padding=pad)
    np.testing.assert_allclose(y, conv2d_ref(x, w, b, padding=pad), rtol=RTOL, atol=ATOL)
    gy = np.random.default_rng(seed).standard_normal(y.shape).astype(np.float32)
    gy /= np.float32(np.sqrt(y.shape[0] * y.shape[2] * y.shape[3]))
    gx, gw, gb = conv2d_backward(gy, x, w, padding=pad, need_bias_grad=b is not None)
    rx, rw, rb = conv2d_backward_ref(gy, x, w, padding=pad)
    np.testing.assert_allclose(gx, rx, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(gw, rw, rtol=RTOL, atol=ATOL)
    if b is not None:
        np.testing.assert_allclose(gb, rb, rtol=RTOL, atol=ATOL)
    assert y.dtype == gx.dtype == gw.dtype == np.float32


def _samples_per_chunk(monkeypatch, n):
    real = _conv_winograd._chunk
    monkeypatch.setattr(_conv_winograd, "_chunk", lambda *a: min(n, real(*a)))


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("chunk", ["default", "one-sample", "two-sample"])
@pytest.mark.parametrize("driver", ["compiled", "numpy"])
@pytest.mark.parametrize("shape", SHAPES, ids=[f"shape{i}" for i in range(len(SHAPES))])
def test_matches_reference(shape, driver, chunk, threads, winograd, monkeypatch):
    """Both drivers: the compiled one (sgemm called from Numba) and the np.matmul one; chunks of
    one and two samples leave a shorter last chunk on the odd batch sizes."""
    if driver == "numpy":
        monkeypatch.setattr(_conv_winograd, "USE_CBLAS", False)
    elif not _conv_winograd.numpy_sgemm()[0]:
        pytest.skip("no OpenBLAS sgemm found behind NumPy")
    if chunk != "default":
        _samples_per_chunk(monkeypatch, 1 if chunk == "one-sample" else 2)
    old = numba.get_num_threads()
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    try:
        x, w, b, pad = _data(shape, 1, bias=shape[1] != 5)
        assert conv._winograd(x.shape, w.shape, (1, 1), _pads(shape), (1, 1), 1)
        _check(x, w, b, pad)
    finally:
        numba.set_num_threads(old)


def _pads(shape):
    pad = shape[5]
    ph, pw = (pad, pad) if isinstance(pad, int) else pad
    return ((ph, ph), (pw, pw))


@st.composite
def _random_shape(draw):
    pad = draw(st.sampled_from([0, 1, 2, "same", "full", (1, 0), (2, 0), (0, 2)]))
    H, W = draw(st.integers(1, 11)), draw(st.integers(1, 11))
    ph, pw = (pad, pad) if isinstance(pad, int) else (1, 1) if pad == "same" else (2, 2) if pad == "full" else pad
    H, W = max(H, 3 - 2 * ph), max(W, 3 - 2 * pw)
    return (draw(st.integers(1, 4)), draw(st.integers(1, 9)), H, W, draw(st.integers(1, 12)), pad,
            draw(st.integers(0, 2**31)))


@settings(max_examples=60, deadline=None)
@given(cfg=_random_shape(), one_sample_chunks=st.booleans(), compiled=st.booleans())
def test_random_shapes_match_reference(cfg, one_sample_chunks, compiled):
    *shape, seed = cfg
    old = conv._FORCE_PATH, _conv_winograd._chunk, _conv_winograd.USE_CBLAS
    conv._FORCE_PATH = "winograd"
    _conv_winograd.USE_CBLAS = compiled
    if one_sample_chunks:
        _conv_winograd._chunk = lambda *a: 1
    try:
        x, w, b, pad = _data(shape, seed)
        _check(x, w, b, pad, seed)
    finally:
        conv._FORCE_PATH, _conv_winograd._chunk, _conv_winograd.USE_CBLAS = old


def test_flip_and_bias_free(winograd):
    x, w, _, _ = _data((2, 4, 6, 7, 5, 1), 3)
    y = conv2d_forward(x, w, padding=1, flip=True)
    np.testing.assert_allclose(y, conv2d_ref(x, w, padding=1, flip=True), rtol=RTOL, atol=ATOL)
    gy = np.random.default_rng(4).standard_normal(y.shape).astype(np.float32) / np.float32(9)
    gx, gw, gb = conv2d_backward(gy, x, w, padding=1, flip=True, need_bias_grad=False)
    rx, rw, _ = conv2d_backward_ref(gy, x, w, padding=1, flip=True)
    np.testing.assert_allclose(gx, rx, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(gw, rw, rtol=RTOL, atol=ATOL)
    assert gb is None


def test_weight_gradient_alone_and_input_gradient_alone(winograd):
    x, w, b, pad = _data((3, 6, 8, 8, 10, 1), 5)
    gy = np.random.default_rng(6).standard_normal((3, 10, 8, 8)).astype(np.float32) / np.float32(8)
    rx, rw, rb = conv2d_backward_ref(gy, x, w, padding=pad)
    gx, gw, gb = conv2d_backward(gy, x, w, padding=pad, need_input_grad=False)
    assert gx is None
    np.testing.assert_allclose(gw, rw, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(gb, rb, rtol=RTOL, atol=ATOL)
    gx = np.empty_like(x)
    conv.conv2d_bwd_input_cpu(gy, w, (1, 1), ((1, 1), (1, 1)), (1, 1), 1, gx)
    np.testing.assert_allclose(gx, rx, rtol=RTOL, atol=ATOL)


def test_deterministic_for_a_thread_count(winograd):
    x, w, b, pad = _data((9, 16, 12, 12, 32, 1), 8)
    gy = np.random.default_rng(9).standard_normal((9, 32, 12, 12)).astype(np.float32)
    runs = [(conv2d_forward(x, w, b, padding=pad), *conv2d_backward(gy, x, w, padding=pad))
            for _ in range(2)]
    for a, b2 in zip(*runs):
        assert np.array_equal(a, b2)


def test_chosen_only_where_it_applies():
    c = conv._winograd
    one, pads1 = (1, 1), ((1, 1), (1, 1))
    assert c((8, 32, 26, 26), (64, 32, 3, 3), one, ((0, 0), (0, 0)), one, 1)   # keras-mnist conv 2
    assert c((8, 24, 14, 14), (48, 24, 3, 3), one, pads1, one, 1)              # default model
    assert not c((8, 1, 28, 28), (32, 1, 3, 3), one, ((0, 0), (0, 0)), one, 1)  # first layer: direct
    assert not c((8, 32, 26, 26), (64, 32, 3, 3), (2, 2), pads1, one, 1)       # strided
    assert not c((8, 32, 26, 26), (64, 32, 3, 3), one, pads1, (2, 2), 1)       # dilated
    assert not c((8, 32, 26, 26), (64, 16, 3, 3), one, pads1, one, 2)          # grouped
    assert not c((8, 32, 26, 26), (64, 32, 5, 5), one, pads1, one, 1)          # 5x5
    assert not c((8, 32, 26, 26), (64, 32, 3, 3), one, ((3, 3), (3, 3)), one, 1)  # padding 3


@pytest.mark.parametrize("rows,cols", [(144, 64), (32, 156), (24, 196), (64, 169), (112, 96), (1, 1)])
def test_planes_start_in_distinct_cache_slots(rows, cols):
    view, full = _conv_winograd.planes("test", rows, cols)
    assert view.shape == (16, rows, cols) and full.flags.c_contiguous
    slots = {(view[i].ctypes.data - view[0].ctypes.data) % 4096 // 64 for i in range(16)}
    assert len(slots) == 16
