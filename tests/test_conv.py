"""conv2d / conv1d: reference backward vs finite differences, float32 kernels vs reference,
every CPU path (direct loops, chunked im2col+GEMM, Winograd), preallocated outputs, validation."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from edgecnn.kernels import conv, _conv_gemm, _conv_winograd
from edgecnn.kernels import (conv1d_backward, conv1d_forward, conv2d_backward, conv2d_forward,
                             conv2d_output_shape)
from reference import (conv1d_backward_ref, conv1d_ref, conv2d_backward_ref, conv2d_ref,
                       max_rel_error, numeric_grad)

RTOL, ATOL = 1e-4, 1e-5

# (x shape, (K, kH, kW), settings); bias on unless "bias": False.
CONFIGS = [
    ((1, 1, 5, 5), (1, 3, 3), {}),                                   # batch 1, single channel
    ((2, 3, 6, 5), (4, 3, 2), {"padding": 1}),                       # non-square kernel and input
    ((2, 2, 7, 7), (3, 3, 3), {"stride": 2}),
    ((1, 2, 8, 7), (2, 2, 3), {"stride": 3, "padding": 1}),
    ((2, 2, 5, 6), (2, 3, 3), {"padding": "same"}),
    ((2, 2, 5, 6), (2, 2, 2), {"padding": "same"}),                  # asymmetric: odd pixel at the end
    ((1, 2, 4, 5), (3, 3, 3), {"padding": "full"}),
    ((2, 1, 6, 6), (2, 3, 3), {"padding": "valid"}),
    ((2, 2, 7, 8), (2, 3, 3), {"dilation": 2}),
    ((1, 2, 9, 7), (2, 2, 3), {"dilation": (2, 1), "stride": 2}),
    ((2, 4, 5, 5), (4, 3, 3), {"groups": 2}),
    ((2, 3, 5, 6), (3, 3, 3), {"groups": 3}),                        # depthwise
    ((1, 3, 5, 6), (6, 3, 3), {"groups": 3, "padding": "same"}),     # depthwise, multiplier 2
    ((2, 2, 3, 3), (2, 3, 3), {}),                                   # 1x1 output
    ((1, 1, 3, 4), (1, 3, 4), {}),                                   # 1x1 output, single channel
    ((2, 2, 5, 5), (2, 3, 3), {"flip": True}),
    ((1, 2, 6, 5), (3, 2, 3), {"flip": True, "stride": 2, "padding": (1, 0)}),
    ((2, 3, 6, 7), (2, 1, 1), {}),                                   # 1x1 kernel
    ((1, 2, 6, 7), (2, 1, 1), {"stride": 2}),
    ((2, 2, 6, 8), (4, 3, 3), {"stride": (1, 2), "padding": (0, 1)}),
    ((1, 4, 6, 6), (4, 3, 3), {"groups": 4, "stride": 2, "padding": "same", "flip": True}),
    ((2, 2, 5, 7), (2, 3, 3), {"padding": "full", "dilation": 2}),
    ((1, 2, 4, 4), (2, 3, 3), {"padding": 3}),                       # rows made of padding only
    ((2, 1, 8, 6), (3, 5, 5), {"padding": 2}),
    ((1, 2, 7, 5), (2, 4, 2), {"padding": "same", "stride": 2}),
    ((2, 6, 5, 5), (4, 3, 3), {"groups": 2, "dilation": 2, "padding": 2}),
    ((1, 3, 6, 6), (3, 3, 3), {"stride": 3, "padding": "valid"}),
    ((2, 2, 9, 9), (2, 3, 3), {"stride": 3, "dilation": 2, "padding": 1}),
    ((1, 2, 5, 6), (2, 3, 3), {"bias": False}),
    ((2, 3, 4, 5), (6, 2, 2), {"groups": 3, "padding": "full", "flip": True}),
    ((1, 1, 6, 6), (2, 3, 3), {"stride": 2, "padding": "same"}),
    ((2, 4, 5, 5), (8, 3, 3), {"groups": 4, "padding": "valid", "bias": False}),
    ((1, 2, 5, 8), (3, 2, 4), {"stride": (2, 3), "dilation": (1, 2), "padding": "same", "flip": True}),
]
IDS = [f"cfg{i}" for i in range(len(CONFIGS))]


def _make(xs, ks, kw, seed):
    rng = np.random.default_rng(seed)
    kw = dict(kw)
    use_bias = kw.pop("bias", True)
    groups = kw.get("groups", 1)
    K, KH, KW = ks
    x = rng.standard_normal(xs).astype(np.float32)
    w = rng.standard_normal((K, xs[1] // groups, KH, KW)).astype(np.float32)
    b = rng.standard_normal(K).astype(np.float32) if use_bias else None
    return x, w, b, kw


@pytest.fixture(params=["direct", "gemm", "gemm-1", "gemm-numpy", "direct-generic", "gemm-generic", "winograd",
                        "winograd-1", "winograd-numpy"])
def path(request, monkeypatch):
    """Force one CPU path; "-1" also cuts the batch into one-sample chunks; "-generic" keeps
    stride-1 convs off the wide-row kernels; "winograd" runs the 3x3 stride-1 configurations as
    F(2x2, 3x3) and the others on the GEMM path; "-numpy" runs the drivers that call np.matmul
    between compiled stages instead of sgemm from compiled code."""
    monkeypatch.setattr(conv, "_FORCE_PATH", request.param.split("-")[0])
    if request.param.endswith("-1"):
        monkeypatch.setattr(_conv_gemm, "CHUNK_BYTES", 1)
        monkeypatch.setattr(_conv_winograd, "CHUNK_BYTES", 1)
        monkeypatch.setattr(_conv_winograd, "CHUNK_BYTES_COMPILED", 1)
    if request.param.endswith("-numpy"):
        monkeypatch.setattr(_conv_gemm, "USE_CBLAS", False)
        monkeypatch.setattr(_conv_winograd, "USE_CBLAS", False)
    if request.param.endswith("-generic"):
        monkeypatch.setattr(conv, "_FORCE_GENERIC", True)
    return request.param


# --- the reference against finite differences -------------------------------------------------
# conv is linear in x, w and b, so central differences have no truncation error at any step; a
# step of 1e-3 (rather than 1e-6) keeps float64 round-off in the difference far below 1e-6.
EPS = 1e-3


def _fd(f, a, gy):
    return numeric_grad(f, a, gy, eps=EPS)


@pytest.mark.parametrize("xs,ks,kw", CONFIGS, ids=IDS)
def test_reference_backward_matches_finite_differences(xs, ks, kw):
    x, w, b, kw = _make(xs, ks, kw, 1)
    x, w = x.astype(np.float64), w.astype(np.float64)
    b = None if b is None else b.astype(np.float64)
    gy = np.random.default_rng(2).standard_normal(conv2d_ref(x, w, b, **kw).shape)
    gx, gw, gb = conv2d_backward_ref(gy, x, w, **kw)
    assert max_rel_error(gx, _fd(lambda v: conv2d_ref(v, w, b, **kw), x, gy)) <= 1e-6
    assert max_rel_error(gw, _fd(lambda v: conv2d_ref(x, v, b, **kw), w, gy)) <= 1e-6
    if b is not None:
        assert max_rel_error(gb, _fd(lambda v: conv2d_ref(x, w, v, **kw), b, gy)) <= 1e-6


def test_reference_forward_from_the_definition():
    # Hand-computed: 1 channel, 2x2 kernel, stride 1, no padding; flip turns it into convolution.
    x = np.arange(9, dtype=np.float64).reshape(1, 1, 3, 3)
    w = np.array([[[[1.0, 2.0], [3.0, 4.0]]]])
    assert np.array_equal(conv2d_ref(x, w)[0, 0], [[0 + 2 + 9 + 16, 1 + 4 + 12 + 20],
                                                   [3 + 8 + 18 + 28, 4 + 10 + 21 + 32]])
    assert np.array_equal(conv2d_ref(x, w, flip=True)[0, 0], [[0 * 4 + 1 * 3 + 3 * 2 + 4, 1 * 4 + 2 * 3 + 4 * 2 + 5],
                                                              [3 * 4 + 4 * 3 + 6 * 2 + 7, 4 * 4 + 5 * 3 + 7 * 2 + 8]])


# --- float32 kernels against the reference ----------------------------------------------------

def _check_conv2d(x, w, b, kw, seed=3, gy_scale=1.0):
    y = conv2d_forward(x, w, b, **kw)
    np.testing.assert_allclose(y, conv2d_ref(x, w, b, **kw), rtol=RTOL, atol=ATOL)
    gy = (np.random.default_rng(seed).standard_normal(y.shape) * gy_scale).astype(np.float32)
    gx, gw, gb = conv2d_backward(gy, x, w, **kw)
    rx, rw, rb = conv2d_backward_ref(gy, x, w, **kw)
    np.testing.assert_allclose(gx, rx, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(gw, rw, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(gb, rb, rtol=RTOL, atol=ATOL)
    assert y.dtype == gx.dtype == gw.dtype == gb.dtype == np.float32


@pytest.mark.parametrize("xs,ks,kw", CONFIGS, ids=IDS)
def test_conv2d_matches_reference(xs, ks, kw, path):
    x, w, b, kw = _make(xs, ks, kw, 4)
    _check_conv2d(x, w, b, kw)


@st.composite
def _random_conv(draw):
    groups = draw(st.sampled_from([1, 1, 2, 3]))
    C = groups * draw(st.integers(1, 3))
    K = groups * draw(st.integers(1, 3))
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    dil = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    padding = draw(st.one_of(st.sampled_from(["valid", "same", "full"]),
                             st.tuples(st.integers(0, 2), st.integers(0, 2))))
    pads = [0, 0]
    for a, (k, d) in enumerate(zip((kh, kw), dil)):
        span = d * (k - 1)
        pads[a] = {"valid": 0, "same": span, "full": 2 * span}[padding] if isinstance(padding, str) \
            else 2 * padding[a]
    H = draw(st.integers(max(1, dil[0] * (kh - 1) + 1 - pads[0]), 9))
    W = draw(st.integers(max(1, dil[1] * (kw - 1) + 1 - pads[1]), 9))
    N = draw(st.integers(1, 3))
    kwargs = {"stride": stride, "padding": padding, "dilation": dil, "groups": groups,
              "flip": draw(st.booleans()), "bias": draw(st.booleans())}
    return (N, C, H, W), (K, kh, kw), kwargs, draw(st.integers(0, 2**31))


@settings(max_examples=40, deadline=None)
@given(cfg=_random_conv(), path=st.sampled_from(["direct", "gemm"]), generic=st.booleans(),
       compiled=st.booleans())
def test_conv2d_random_configs(cfg, path, generic, compiled):
    xs, ks, kw, seed = cfg
    old = conv._FORCE_PATH, conv._FORCE_GENERIC, _conv_gemm.USE_CBLAS
    conv._FORCE_PATH, conv._FORCE_GENERIC, _conv_gemm.USE_CBLAS = path, generic, compiled
    try:
        x, w, b, kw = _make(xs, ks, kw, seed)
        _check_conv2d(x, w, b, kw, seed)
    finally:
        conv._FORCE_PATH, conv._FORCE_GENERIC, _conv_gemm.USE_CBLAS = old


@pytest.mark.parametrize("compiled", [True, False])
def test_lenet5_input_gradient_through_the_gemm_matches_reference(compiled, monkeypatch):
    """lenet5's 6->16 5x5 runs forward and weight gradient on the direct loops and, with the compiled
    sgemm available, its input gradient on the im2col GEMM; 3x3 layers of few channels do not."""
    monkeypatch.setattr(_conv_gemm, "USE_CBLAS", compiled)
    assert conv._input_grad_by_gemm((16, 6, 5, 5), 1) == (compiled and bool(conv.numpy_sgemm()[0]))
    assert not conv._input_grad_by_gemm((16, 3, 3, 3), 1) and not conv._input_grad_by_gemm((8, 8, 5, 5), 1)
    x, w, b, kw = _make((5, 6, 14, 14), (16, 5, 5), {}, 21)
    assert conv._choose_path(x.shape, w.shape, 1) == "direct"
    _check_conv2d(x, w, b, kw, 21)


def test_path_choice_on_the_zoo_layers():
    c = conv._choose_path
    assert c((8, 1, 28, 28), (32, 1, 3, 3), 1) == "direct"               # single-channel first layers
    assert c((8, 6, 14, 14), (16, 6, 5, 5), 1) == "direct"               # lenet5's 6->16 5x5
    assert c((8, 6, 14, 14), (16, 6, 5, 5), 1, stride=(2, 2)) == "gemm"  # strided: general loops are slow
    assert c((8, 6, 14, 14), (18, 6, 5, 5), 1) == "gemm"                 # channels not in blocks of 4
    assert c((8, 16, 14, 14), (32, 16, 5, 5), 1) == "gemm"               # deep enough for a GEMM
    assert c((8, 32, 26, 26), (64, 32, 3, 3), 1) == "gemm"               # (run as Winograd)


@pytest.mark.parametrize("shape", [((64, 1, 28, 28), (32, 3, 3), {}),
                                   ((8, 32, 12, 12), (64, 3, 3), {}),
                                   ((8, 6, 14, 14), (16, 5, 5), {}),
                                   ((4, 16, 10, 10), (32, 3, 3), {"padding": 1})])
def test_default_path_on_layer_shapes(shape):
    # The automatic choice (whatever it picks) on shapes like the benchmarked layers. Scaled as in
    # training (w by 1/sqrt(fan-in), gy by 1/sqrt(elements per channel)) so that values are O(1):
    # sums of hundreds of unit terms would otherwise carry float32 round-off above atol.
    xs, ks, kw = shape
    x, w, b, kw = _make(xs, ks, kw, 5)
    w = (w / np.sqrt(w[0].size)).astype(np.float32)
    y_shape = conv2d_output_shape(x.shape, w.shape, **kw)
    _check_conv2d(x, w, b, kw, gy_scale=1 / np.sqrt(y_shape[0] * y_shape[2] * y_shape[3]))



# Direct stride-1 kernels: 4 output channels of a group per pass (while 4 are left) when the kernel
# is 3 or 5 wide, and several samples per pass (tall planes of about _conv_direct._TALL floats):
# batches filling several groups plus a partial one; padding, dilation, groups, flip, no bias.
DIRECT_BLOCKED = [
    ((23, 6, 14, 14), (16, 5, 5), {}),                                    # lenet5's second conv
    ((5, 1, 28, 28), (8, 3, 3), {"padding": 1}),
    ((7, 1, 12, 11), (4, 5, 5), {"padding": 2, "bias": False}),
    ((9, 4, 9, 10), (8, 3, 3), {"groups": 2, "dilation": (1, 2), "padding": "same"}),
    ((6, 2, 9, 12), (12, 5, 5), {"dilation": 2, "padding": "full", "flip": True}),
    ((13, 3, 8, 7), (4, 3, 5), {"padding": (1, 2)}),
    ((11, 2, 7, 9), (6, 3, 3), {"padding": 1}),                          # 4 + 2 single channels
    ((5, 4, 8, 8), (12, 5, 5), {"groups": 2, "padding": 2}),             # per group: 4 + 2 single
    ((3, 2, 6, 6), (3, 3, 3), {"padding": 1}),                           # fewer than 4: all single
    # gx as the forward conv of gy (C/groups >= 4, padding within the kernel span), and a fallback
    ((7, 8, 9, 9), (8, 3, 3), {"groups": 2, "padding": 1}),
    ((4, 4, 10, 9), (6, 5, 5), {"dilation": 2, "padding": (3, 5), "flip": True}),
    ((3, 4, 6, 6), (4, 3, 3), {"padding": 3}),
]


@pytest.mark.parametrize("xs,ks,kw", DIRECT_BLOCKED)
def test_direct_blocked_channels_and_tall_planes(xs, ks, kw, monkeypatch):
    monkeypatch.setattr(conv, "_FORCE_PATH", "direct")
    x, w, b, kw = _make(xs, ks, kw, 8)
    w = (w / np.sqrt(w[0].size)).astype(np.float32)
    y_shape = conv2d_output_shape(x.shape, w.shape, **{k: v for k, v in kw.items() if k != "flip"})
    _check_conv2d(x, w, b, kw, gy_scale=1 / np.sqrt(y_shape[0] * y_shape[2] * y_shape[3]))

CONFIGS_1D = [
    ((1, 1, 7), (1, 3), {}),
    ((2, 3, 9), (4, 3), {"stride": 2, "padding": 1}),
    ((2, 2, 8), (2, 4), {"padding": "same"}),
    ((1, 2, 6), (3, 3), {"padding": "full", "dilation": 2}),
    ((2, 4, 10), (4, 3), {"groups": 4, "stride": 3, "flip": True}),
    ((1, 2, 5), (2, 5), {"padding": "valid"}),                       # output length 1
    ((2, 4, 9), (6, 2), {"groups": 2, "dilation": 3, "padding": (2,), "bias": False}),
    ((1, 3, 12), (2, 4), {"stride": (2,), "dilation": (2,), "padding": "same", "flip": True}),
]


def _make1d(xs, ks, kw, seed):
    x, w, b, kw = _make((xs[0], xs[1], 1, xs[2]), (ks[0], 1, ks[1]), kw, seed)
    return x[:, :, 0, :].copy(), w[:, :, 0, :].copy(), b, kw


@pytest.mark.parametrize("xs,ks,kw", CONFIGS_1D)
def test_conv1d_reference_backward_matches_finite_differences(xs, ks, kw):
    x, w, b, kw = _make1d(xs, ks, kw, 6)
    x, w = x.astype(np.float64), w.astype(np.float64)
    b = None if b is None else b.astype(np.float64)
    gy = np.random.default_rng(7).standard_normal(conv1d_ref(x, w, b, **kw).shape)
    gx, gw, gb = conv1d_backward_ref(gy, x, w, **kw)
    assert max_rel_error(gx, _fd(lambda v: conv1d_ref(v, w, b, **kw), x, gy)) <= 1e-6
    assert max_rel_error(gw, _fd(lambda v: conv1d_ref(x, v, b, **kw), w, gy)) <= 1e-6
    if b is not None:
        assert max_rel_error(gb, _fd(lambda v: conv1d_ref(x, w, v, **kw), b, gy)) <= 1e-6


@pytest.mark.parametrize("xs,ks,kw", CONFIGS_1D)
def test_conv1d_matches_reference(xs, ks, kw, path):
    x, w, b, kw = _make1d(xs, ks, kw, 8)
    y = conv1d_forward(x, w, b, **kw)
    assert y.ndim == 3
    np.testing.assert_allclose(y, conv1d_ref(x, w, b, **kw), rtol=RTOL, atol=ATOL)
    gy = np.random.default_rng(9).standard_normal(y.shape).astype(np.float32)
    gx, gw, gb = conv1d_backward(gy, x, w, **kw)
    rx, rw, rb = conv1d_backward_ref(gy, x, w, **kw)
    np.testing.assert_allclose(gx, rx, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(gw, rw, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(gb, rb, rtol=RTOL, atol=ATOL)


# --- outputs: preallocated, overwritten, skipped ------------------------------------------------

def test_preallocated_outputs_are_overwritten_and_returned(path):
    x, w, b, kw = _make((3, 4, 6, 6), (8, 3, 3), {"padding": 1, "groups": 2}, 10)
    y = np.full((3, 8, 6, 6), 7.0, np.float32)
    assert conv2d_forward(x, w, b, out=y, **kw) is y
    np.testing.assert_allclose(y, conv2d_ref(x, w, b, **kw), rtol=RTOL, atol=ATOL)
    gy = np.random.default_rng(0).standard_normal(y.shape).astype(np.float32)
    gx, gw, gb = (np.full(a.shape, 9.0, np.float32) for a in (x, w, b))
    res = conv2d_backward(gy, x, w, gx=gx, gw=gw, gb=gb, **kw)
    assert res[0] is gx and res[1] is gw and res[2] is gb
    rx, rw, rb = conv2d_backward_ref(gy, x, w, **kw)
    for got, want in zip((gx, gw, gb), (rx, rw, rb)):
        np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)
    # A second call on the same buffers gives the same numbers (no accumulation, scratch reused).
    conv2d_backward(gy, x, w, gx=gx, gw=gw, gb=gb, **kw)
    np.testing.assert_allclose(gw, rw, rtol=RTOL, atol=ATOL)


def test_skipping_input_and_bias_gradients(path):
    x, w, _, kw = _make((2, 3, 7, 6), (4, 3, 3), {"stride": 2}, 11)
    gy = np.random.default_rng(1).standard_normal(conv2d_output_shape(x.shape, w.shape, 2)).astype(np.float32)
    gx, gw, gb = conv2d_backward(gy, x, w, need_input_grad=False, need_bias_grad=False, **kw)
    assert gx is None and gb is None
    np.testing.assert_allclose(gw, conv2d_backward_ref(gy, x, w, **kw)[1], rtol=RTOL, atol=ATOL)
    gx1, gw1, gb1 = conv1d_backward(*(np.ascontiguousarray(a[:, :, 0]) for a in (gy, x, w)),
                                    need_input_grad=False, stride=2)
    assert gx1 is None and gb1 is not None


@pytest.mark.parametrize("compiled", [True, False])
def test_results_do_not_depend_on_chunking(compiled, monkeypatch):
    """2-sample chunks of a 5-sample batch: the last chunk is shorter. Equal up to rounding, not bit for
    bit: OpenBLAS may round a product's last columns (past a multiple of its kernel's width) in another
    order, so which columns those are depends on the chunk. Its Haswell kernels, which it picks on a
    Zen 5 host, do: 66 of 1280 outputs differed in the last bit or two (on Zen 4 none did)."""
    monkeypatch.setattr(conv, "_FORCE_PATH", "gemm")
    monkeypatch.setattr(_conv_gemm, "USE_CBLAS", compiled)
    x, w, b, kw = _make((5, 3, 8, 8), (4, 3, 3), {"padding": 1}, 12)
    gy = np.random.default_rng(2).standard_normal((5, 4, 8, 8)).astype(np.float32)
    y1, g1 = conv2d_forward(x, w, b, **kw), conv2d_backward(gy, x, w, **kw)
    monkeypatch.setattr(_conv_gemm, "CHUNK_BYTES", 2 * 27 * 64 * 4)
    y2, g2 = conv2d_forward(x, w, b, **kw), conv2d_backward(gy, x, w, **kw)
    for a, b_ in ((y1, y2), (g1[0], g2[0]), (g1[1], g2[1])):
        np.testing.assert_allclose(a, b_, rtol=RTOL, atol=ATOL)


def test_output_shape_helper():
    assert conv2d_output_shape((2, 3, 28, 28), (8, 3, 3, 3)) == (2, 8, 26, 26)
    assert conv2d_output_shape((2, 3, 28, 28), (8, 3, 5, 5), stride=2, padding="same") == (2, 8, 14, 14)
    assert conv2d_output_shape((1, 4, 7, 9), (4, 1, 3, 2), padding="full", dilation=2, groups=4) == (1, 4, 11, 11)


# --- validation: one test per error, each asserting the message names the parameter -----------

X = np.zeros((2, 4, 6, 6), np.float32)
W = np.zeros((8, 4, 3, 3), np.float32)
GY = np.zeros((2, 8, 4, 4), np.float32)
X1, W1 = np.zeros((2, 4, 6), np.float32), np.zeros((8, 4, 3), np.float32)


def _raises(exc, words, fn, *args, **kwargs):
    with pytest.raises(exc) as info:
        fn(*args, **kwargs)
    msg = str(info.value)
    for word in words:
        assert word in msg, msg
    return msg


def test_rejects_wrong_x_dtype():
    _raises(TypeError, ["conv2d_forward", "x", "float64"], conv2d_forward, X.astype(np.float64), W)


def test_rejects_wrong_w_dtype():
    _raises(TypeError, ["conv2d_forward", "w", "int32"], conv2d_forward, X, W.astype(np.int32))


def test_rejects_non_array():
    _raises(TypeError, ["x"], conv2d_forward, X.tolist(), W)


def test_rejects_non_contiguous_x():
    _raises(ValueError, ["x", "C-contiguous"], conv2d_forward, np.zeros((2, 4, 6, 12), np.float32)[..., ::2], W)


def test_rejects_wrong_x_rank():
    _raises(ValueError, ["x", "4 dimensions", "(4, 6, 6)"], conv2d_forward, X[0], W)


def test_rejects_wrong_w_rank():
    _raises(ValueError, ["w", "4 dimensions"], conv2d_forward, X, W[0])


def test_rejects_wrong_bias_shape():
    _raises(ValueError, ["b", "(8,)", "(7,)"], conv2d_forward, X, W, np.zeros(7, np.float32))


def test_rejects_channel_mismatch():
    _raises(ValueError, ["w", "(8, 3, 3, 3)", "(2, 4, 6, 6)"], conv2d_forward, X, W[:, :3].copy())


def test_rejects_groups_not_dividing_input_channels():
    _raises(ValueError, ["groups=3", "(2, 4, 6, 6)"], conv2d_forward, X, np.zeros((6, 1, 3, 3), np.float32),
            groups=3)


def test_rejects_groups_not_dividing_output_channels():
    _raises(ValueError, ["groups=2", "(7, 2, 3, 3)"], conv2d_forward, X, np.zeros((7, 2, 3, 3), np.float32),
            groups=2)


def test_rejects_groups_below_one():
    _raises(ValueError, ["groups"], conv2d_forward, X, W, groups=0)


def test_rejects_kernel_larger_than_padded_input():
    _raises(ValueError, ["kernel", "x", "padding", "(6, 6)"], conv2d_forward, X,
            np.zeros((8, 4, 9, 3), np.float32), padding=1)


def test_rejects_dilated_kernel_larger_than_input():
    _raises(ValueError, ["dilation", "x"], conv2d_forward, X, W, dilation=3)


def test_rejects_stride_below_one():
    _raises(ValueError, ["stride"], conv2d_forward, X, W, stride=(1, 0))


def test_rejects_dilation_below_one():
    _raises(ValueError, ["dilation"], conv2d_forward, X, W, dilation=0)


def test_rejects_negative_padding():
    _raises(ValueError, ["padding"], conv2d_forward, X, W, padding=-1)


def test_rejects_unknown_padding_mode():
    _raises(ValueError, ["padding", "'half'"], conv2d_forward, X, W, padding="half")


def test_rejects_float_stride():
    _raises(TypeError, ["stride"], conv2d_forward, X, W, stride=1.5)


def test_rejects_stride_with_wrong_length():
    _raises(ValueError, ["stride"], conv2d_forward, X, W, stride=(1, 1, 1))


def test_rejects_non_bool_flip():
    _raises(TypeError, ["flip"], conv2d_forward, X, W, flip="yes")


def test_rejects_wrong_out_shape():
    _raises(ValueError, ["out", "(2, 8, 4, 4)"], conv2d_forward, X, W, out=np.zeros((2, 8, 4, 5), np.float32))


def test_rejects_wrong_out_dtype():
    _raises(TypeError, ["out"], conv2d_forward, X, W, out=np.zeros((2, 8, 4, 4), np.float64))


def test_rejects_out_overlapping_input():
    x = np.zeros((2, 4, 6, 6), np.float32)
    w = np.zeros((4, 4, 1, 1), np.float32)
    _raises(ValueError, ["out", "overlap"], conv2d_forward, x, w, out=x)


def test_rejects_mismatched_gy_shape():
    _raises(ValueError, ["gy", "(2, 8, 4, 4)", "(2, 8, 5, 5)"], conv2d_backward,
            np.zeros((2, 8, 5, 5), np.float32), X, W)


def test_rejects_wrong_gy_dtype():
    _raises(TypeError, ["gy"], conv2d_backward, GY.astype(np.float16), X, W)


def test_rejects_wrong_gx_shape():
    _raises(ValueError, ["gx", "(2, 4, 6, 6)"], conv2d_backward, GY, X, W, gx=np.zeros((2, 4, 6, 5), np.float32))


def test_rejects_wrong_gw_shape():
    _raises(ValueError, ["gw", "(8, 4, 3, 3)"], conv2d_backward, GY, X, W, gw=np.zeros((8, 4, 3, 2), np.float32))


def test_rejects_wrong_gb_shape():
    _raises(ValueError, ["gb", "(8,)"], conv2d_backward, GY, X, W, gb=np.zeros(4, np.float32))


def test_rejects_gradient_output_overlapping_input():
    _raises(ValueError, ["gx", "overlap"], conv2d_backward, GY, X, W, gx=X)


def test_rejects_non_bool_need_input_grad():
    _raises(TypeError, ["need_input_grad"], conv2d_backward, GY, X, W, need_input_grad=None)


def test_rejects_non_bool_need_bias_grad():
    _raises(TypeError, ["need_bias_grad"], conv2d_backward, GY, X, W, need_bias_grad=1)


def test_conv1d_rejects_2d_input():
    _raises(ValueError, ["conv1d_forward", "x", "3 dimensions"], conv1d_forward, X, W1)


def test_conv1d_rejects_pair_stride():
    _raises(ValueError, ["conv1d_forward", "stride", "(1, 2)"], conv1d_forward, X1, W1, stride=(1, 2))


def test_conv1d_backward_rejects_mismatched_gy():
    _raises(ValueError, ["conv1d_backward", "gy", "(2, 8, 4)", "(2, 8, 5)"], conv1d_backward,
            np.zeros((2, 8, 5), np.float32), X1, W1)


def test_output_shape_rejects_empty_output():
    _raises(ValueError, ["conv2d_output_shape", "kernel", "x"], conv2d_output_shape, (1, 1, 2, 2), (1, 1, 3, 3))


def test_output_shape_rejects_bad_shape_tuple():
    _raises(ValueError, ["conv2d_output_shape", "x_shape"], conv2d_output_shape, (1, 1, 2), (1, 1, 3, 3))


def test_named_cpu_kernels_alone(path):
    # The <op>_<fwd|bwd_input|bwd_weight>_cpu kernels take resolved settings and outputs.
    x, w, b, kw = _make((3, 4, 7, 6), (6, 3, 2), {"groups": 2}, 13)
    stride, pads, dil = (1, 2), ((1, 0), (0, 1)), (2, 1)
    ref_x = np.pad(x, ((0, 0), (0, 0), (1, 0), (0, 1)))
    y = np.empty(conv2d_ref(ref_x, w, b, stride, 0, dil, 2).shape, np.float32)
    conv.conv2d_fwd_cpu(x, w, b, stride, pads, dil, 2, y)
    np.testing.assert_allclose(y, conv2d_ref(ref_x, w, b, stride, 0, dil, 2), rtol=RTOL, atol=ATOL)
    gy = np.random.default_rng(3).standard_normal(y.shape).astype(np.float32)
    rx, rw, _ = conv2d_backward_ref(gy, ref_x, w, stride, 0, dil, 2)
    gx, gw = np.empty_like(x), np.empty_like(w)
    conv.conv2d_bwd_input_cpu(gy, w, stride, pads, dil, 2, gx)
    conv.conv2d_bwd_weight_cpu(gy, x, stride, pads, dil, 2, gw)
    np.testing.assert_allclose(gx, rx[:, :, 1:, :-1], rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(gw, rw, rtol=RTOL, atol=ATOL)


def test_same_results_with_one_thread():
    import numba
    x, w, b, kw = _make((5, 3, 8, 8), (4, 3, 3), {"padding": 1}, 14)
    gy = np.random.default_rng(4).standard_normal((5, 4, 8, 8)).astype(np.float32)
    y2, g2 = conv2d_forward(x, w, b, **kw), conv2d_backward(gy, x, w, **kw)
    old = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        y1, g1 = conv2d_forward(x, w, b, **kw), conv2d_backward(gy, x, w, **kw)
    finally:
        numba.set_num_threads(old)
    assert np.array_equal(y1, y2) and np.array_equal(g1[0], g2[0])
    np.testing.assert_allclose(g1[1], g2[1], rtol=RTOL, atol=ATOL)


def test_concurrent_calls_and_openblas_setting_restored():
    from concurrent.futures import ThreadPoolExecutor
    from edgecnn.kernels import _conv_threads
    x, w, b, kw = _make((6, 8, 9, 9), (16, 3, 3), {"padding": 1}, 15)
    want = conv2d_ref(x, w, b, **kw)
    blas = _conv_threads._find_openblas()
    before = blas[0]() if blas else None
    with ThreadPoolExecutor(3) as ex:
        ys = list(ex.map(lambda _: conv2d_forward(x, w, b, **kw), range(6)))
    for y in ys:
        np.testing.assert_allclose(y, want, rtol=RTOL, atol=ATOL)
    if blas:
        assert blas[0]() == before
