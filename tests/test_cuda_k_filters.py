"""edgecnn.filters on CUDA device arrays equals the CPU kernels: uint8 bit for bit, float32 within 1e-5
of the largest response; every filter x border x dtype x (gray 2-D, BGR, fused gray) on tiny images,
some smaller than the kernel. Simulator (tiny images, shrunk blocks so several blocks run)."""
import cv2
import numpy as np
import pytest

from test_cuda_sim import dev, host, skip_unless_cuda
from test_cuda_sim import small_blocks  # noqa: F401  (fixture)

skip_unless_cuda()

from edgecnn import filters as F  # noqa: E402
from edgecnn.kernels.cuda import _device  # noqa: E402

pytestmark = pytest.mark.usefixtures("small_blocks")

BORDERS = ["reflect101", "constant", "replicate"]
_FRAC = np.array([[0.3, -1.7, 0.25], [2.1, 0.5, -0.6]], np.float32)  # 2x3: even height, float taps
SPECS = [  # (id, name or kernel array, params): every filter name, the parameter paths of each
    ("sobel_x", "sobel_x", {}), ("sobel_x_k1", "sobel_x", {"ksize": 1}),
    ("sobel_y_k5", "sobel_y", {"ksize": 5}), ("scharr_x", "scharr_x", {}), ("scharr_y", "scharr_y", {}),
    ("laplacian4", "laplacian4", {}), ("laplacian8", "laplacian8", {}), ("sharpen", "sharpen", {}),
    ("vertical_edge", "vertical_edge", {}), ("horizontal_edge", "horizontal_edge", {}),
    ("diagonal_edge", "diagonal_edge", {}),
    ("box3", "box", {}), ("box2x3", "box", {"ksize": (2, 3)}), ("box1", "box", {"ksize": 1}),
    ("box17x16", "box", {"ksize": (17, 16)}),  # area 272 > 256: OpenCV's float32/double scaling
    ("gaussian3", "gaussian", {}), ("gaussian5_s1.2", "gaussian", {"ksize": 5, "sigma": 1.2}),
    ("gaussian_s0.8", "gaussian", {"ksize": 0, "sigma": 0.8}),
    ("magnitude", "gradient_magnitude", {}), ("magnitude_scharr", "gradient_magnitude", {"operator": "scharr"}),
    ("orientation", "gradient_orientation", {}),
    ("kernel_frac", _FRAC, {}), ("kernel_int", "kernel", {"kernel": np.array([[1, -2], [3, 0]], np.int64)}),
]
LAYOUTS = ["gray2d", "bgr", "fused"]  # (H, W); (H, W, 3); (H, W, 3) with gray=True


def _img(rng, dtype, shape):
    if dtype == np.uint8:
        return rng.integers(0, 256, shape, dtype=np.uint8)
    return rng.uniform(-100, 100, shape).astype(np.float32)


def _same(got, want, what, angle=False, where=None):
    assert _device.is_device_array(got), f"{what}: result is not a device array"
    g = host(got)
    assert g.shape == want.shape and g.dtype == want.dtype, (what, g.shape, want.shape, g.dtype, want.dtype)
    if want.dtype == np.uint8:
        bad = np.argwhere(g != want)
        assert bad.size == 0, f"{what}: {len(bad)} uint8 mismatches, first at {bad[:3].tolist()}"
        return
    err = np.abs(g.astype(np.float64) - want)
    if angle:  # 0 and 2*pi are the same direction
        err = np.minimum(err, 2 * np.pi - err)
    if where is not None:
        err = err[where]
    scale = max(float(np.abs(want).max()), 1e-3)
    assert float(err.max(initial=0)) <= 1e-5 * scale, f"{what}: max error {err.max(initial=0)} vs scale {scale}"


def _opencv_u8(x, k, kw):
    """cv2.filter2D for uint8 with a fractional kernel: OpenCV itself is the reference for its FMA
    lanes and unfused row tail (the CPU kernel follows the same rule, tests/test_filters.py)."""
    if kw["gray"]:
        x = cv2.cvtColor(x, cv2.COLOR_BGR2GRAY)
    b = {"reflect101": cv2.BORDER_REFLECT_101, "constant": cv2.BORDER_CONSTANT,
         "replicate": cv2.BORDER_REPLICATE}[kw["border"]]
    return cv2.filter2D(x, -1, k, borderType=b)


def _run(spec, border, dtype, layout, shape, seed):
    sid, name, params = spec
    rng = np.random.default_rng(seed)
    x = _img(rng, dtype, shape if layout == "gray2d" else shape + (3,))
    kw = dict(border=border, gray=layout == "fused", **params)
    want = _opencv_u8(x, name, kw) if sid == "kernel_frac" and dtype == np.uint8 else F.apply(x, name, **kw)
    got = F.apply(dev(x), name, **kw)
    where = None
    if sid == "orientation" and dtype == np.float32:
        # float32 gradients that cancel to rounding noise have no meaningful angle (the two devices
        # round differently: FMA on the GPU): compare where |g| is above 1e-3 of the summed terms,
        # as tests/test_filters.py does against atan2; uint8 gradients are exact, compared everywhere
        mag = F.apply(x, "gradient_magnitude", **kw)
        where = mag > 1e-3 * 8 * float(np.abs(x).max())
    _same(got, want, f"{sid} {border} {np.dtype(dtype).name} {layout} {shape}",
          angle=sid == "orientation", where=where)


@pytest.mark.parametrize("spec", SPECS, ids=[s[0] for s in SPECS])
@pytest.mark.parametrize("dtype", [np.uint8, np.float32], ids=["u8", "f32"])
def test_every_filter_border_layout_equals_cpu(spec, dtype):
    for i, border in enumerate(BORDERS):
        for j, layout in enumerate(LAYOUTS):
            shape = (3, 5) if (i + j) % 2 else (4, 3)  # 5 wide x 3 channels: a row tail past 8 lanes
            _run(spec, border, dtype, layout, shape, seed=10 * i + j)


@pytest.mark.parametrize("dtype", [np.uint8, np.float32], ids=["u8", "f32"])
@pytest.mark.parametrize("shape", [(2, 3), (1, 1), (1, 4), (3, 1)])
def test_images_smaller_than_the_kernel(shape, dtype):
    specs = [("gaussian5", "gaussian", {"ksize": 5}), ("sobel_x_k7", "sobel_x", {"ksize": 7}),
             ("laplacian8", "laplacian8", {}), ("orientation", "gradient_orientation", {})]
    for spec in specs:
        for border in BORDERS:
            _run(spec, border, dtype, "bgr", shape, seed=1)
    _run(specs[0], "reflect101", dtype, "fused", shape, seed=2)


@pytest.mark.parametrize("dtype", [np.uint8, np.float32], ids=["u8", "f32"])
def test_gray_conversion_and_four_channels(dtype):
    rng = np.random.default_rng(3)
    x = _img(rng, dtype, (3, 6, 3))
    _same(F.apply(dev(x), "gray"), F.apply(x, "gray"), "gray")
    x4 = _img(rng, dtype, (3, 4, 4))
    _same(F.apply(dev(x4), "sharpen", border="replicate"), F.apply(x4, "sharpen", border="replicate"), "C=4")


@pytest.mark.parametrize("border", BORDERS)
def test_uint8_fractional_kernel_rounds_like_opencv_lanes_and_tail(border):
    """-5 + 1.1f * 5 is 0.5000001 with one rounding (FMA: 1) and 0.5 with two (0): OpenCV fuses in its
    SIMD lanes (the first W*C - W*C % 4 values of a row) and not in its row tail."""
    k = np.array([[-1.0, 1.1]], np.float32)
    seen = set()
    for w, cn in ((5, 1), (7, 1), (3, 3)):
        x = np.full((2, w, cn) if cn > 1 else (2, w), 5, np.uint8)
        want = _opencv_u8(x, k, dict(border=border, gray=False))
        seen |= set(np.unique(want[:, 1:]).tolist())
        _same(F.apply(dev(x), k, border=border), want, f"w={w} cn={cn}")
    assert {0, 1} <= seen  # both roundings occur, so the test tells them apart


@pytest.mark.parametrize("border", BORDERS)
def test_box_area_2_of_two_255s_matches_opencv(border):
    """256 from OpenCV's division: saturated in its 16-lane blocks, wrapped to 0 in the row tail."""
    for w, cn in ((17, 1), (6, 3)):
        x = np.full((2, w, cn) if cn > 1 else (2, w), 255, np.uint8)
        b = {"reflect101": cv2.BORDER_REFLECT_101, "constant": cv2.BORDER_CONSTANT,
             "replicate": cv2.BORDER_REPLICATE}[border]
        for ksize in ((1, 2), (2, 1)):
            _same(F.apply(dev(x), "box", ksize=ksize, border=border), cv2.blur(x, ksize[::-1], borderType=b),
                  f"{ksize} w={w} cn={cn}")


def test_uint8_float_kernel_rounding_ties_and_saturation():
    """Taps whose float32 products land on .5 and beyond the uint8 range: cvRound and saturation."""
    k = np.array([[0.5, 1.5], [-2.5, 100.25]], np.float32)
    x = np.array([[1, 3, 5, 0], [7, 255, 9, 2], [0, 0, 1, 1]], np.uint8)
    for border in BORDERS:
        _same(F.apply(dev(x), k, border=border), _opencv_u8(x, k, dict(border=border, gray=False)), border)


def test_chain_on_device_equals_cpu():
    rng = np.random.default_rng(4)
    for dtype in (np.uint8, np.float32):
        x = _img(rng, dtype, (5, 4, 3))
        chain = F.FilterChain(["gray", ("gaussian", {"ksize": 5}), "sobel_x",
                               {"name": "box", "ksize": 3, "border": "replicate"}])
        _same(chain.apply(dev(x)), chain.apply(x), f"chain {np.dtype(dtype).name}")
        plain = F.FilterChain(["sharpen", "gradient_magnitude"], border="constant")
        _same(plain.apply(dev(x)), plain.apply(x), f"bgr chain {np.dtype(dtype).name}")
    empty = F.FilterChain([])
    x = _img(rng, np.uint8, (3, 4))
    _same(empty.apply(dev(x)), x, "empty chain")
    o = dev(np.zeros_like(x))
    assert empty.apply(dev(x), out=o) is o
    _same(o, x, "empty chain out=")


def test_out_is_written_in_place_and_results_are_deterministic():
    rng = np.random.default_rng(5)
    x = _img(rng, np.uint8, (4, 5, 3))
    dx = dev(x)
    o = dev(np.zeros((4, 5), np.uint8))
    r = F.apply(dx, "gaussian", ksize=3, gray=True, out=o)
    assert r is o
    want = F.apply(x, "gaussian", ksize=3, gray=True)
    _same(o, want, "out=")
    o2 = dev(np.zeros((4, 5, 3), np.float32))
    chain = F.FilterChain(["laplacian4", "gradient_orientation"])
    assert chain.apply(dev(x), out=o2) is o2
    _same(o2, chain.apply(x), "chain out=", angle=True)
    np.testing.assert_array_equal(host(F.apply(dx, "sharpen")), host(F.apply(dx, "sharpen")))


def test_out_errors_name_the_parameter_and_shapes():
    x = dev(np.zeros((4, 5, 3), np.uint8))
    with pytest.raises(ValueError, match=r"out must have shape \(4, 5, 3\), got \(4, 5\)"):
        F.apply(x, "sobel_x", out=dev(np.zeros((4, 5), np.uint8)))
    with pytest.raises(TypeError, match="out must be uint8, got float32 with shape"):
        F.apply(x, "sobel_x", out=dev(np.zeros((4, 5, 3), np.float32)))
    with pytest.raises(TypeError, match="out must be float32, got uint8"):
        F.apply(x, "gradient_orientation", out=dev(np.zeros((4, 5, 3), np.uint8)))
    with pytest.raises(TypeError, match=r"out must live where the inputs live \(device\)"):
        F.apply(x, "sobel_x", out=np.zeros((4, 5, 3), np.uint8))
    with pytest.raises(TypeError, match=r"out must live where the inputs live \(host\)"):
        F.apply(np.zeros((4, 5, 3), np.uint8), "sobel_x", out=dev(np.zeros((4, 5, 3), np.uint8)))
    with pytest.raises(ValueError, match="out must not overlap image"):
        F.apply(x, "sobel_x", out=x)
    with pytest.raises(ValueError, match=r"gray=True needs a BGR image \(H, W, 3\), got shape \(4, 5\)"):
        F.apply(dev(np.zeros((4, 5), np.uint8)), "sobel_x", gray=True)
    with pytest.raises(TypeError, match="image must be uint8 or float32, got float64 with shape"):
        F.apply(dev(np.zeros((4, 5), np.float64)), "sobel_x")
    with pytest.raises(ValueError, match="ksize for sobel_x must be 1, 3, 5 or 7"):
        F.apply(x, "sobel_x", ksize=4)
    with pytest.raises(ValueError, match=r"out must have shape \(4, 5\)"):
        F.FilterChain(["gray", "sobel_x"]).apply(x, out=dev(np.zeros((4, 5, 3), np.uint8)))
