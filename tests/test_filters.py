"""edgecnn.filters against OpenCV (the independent reference here): uint8 bit-exact, float32 within
1e-5 relative to the size of the summed terms (max|x| * sum|k|: where the true response cancels to
0, OpenCV's own float32 sums leave ~1e-6 of that). Random seeded cases, sizes from 1x1 (smaller than
every kernel) up."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import cv2  # a dependency: a broken install must fail, not skip
from edgecnn import filters as F  # noqa: E402

BORDERS = {"reflect101": cv2.BORDER_REFLECT_101, "constant": cv2.BORDER_CONSTANT,
           "replicate": cv2.BORDER_REPLICATE}
CASES = 10  # random cases per (filter, border, dtype): 16 filters x 3 x 2 x 10 = 960 comparisons


def _image(rng, dtype, big=False, max_side=20, channels=(1, 3)):
    if big:
        h, w = 96, 400  # >= 32k values: the parallel kernels
    else:
        h, w = (int(v) for v in rng.integers(1, max_side + 1, 2))
    cn = int(rng.choice(channels))
    shape = (h, w) if cn == 1 else (h, w, cn)
    if dtype == np.uint8:
        return rng.integers(0, 256, shape, dtype=np.uint8)
    return rng.uniform(-100, 100, shape).astype(np.float32)


def _check(got, ref, what, terms=0.0):
    assert got.shape == ref.shape and got.dtype == ref.dtype, (what, got.shape, ref.shape, got.dtype)
    if got.dtype == np.uint8:
        bad = np.argwhere(got != ref)
        assert bad.size == 0, f"{what}: {len(bad)} uint8 mismatches, first at {bad[:3].tolist()}"
    else:
        scale = max(float(np.abs(ref).max()), terms, 1e-3)
        err = float(np.abs(got.astype(np.float64) - ref).max())
        assert err <= 1e-5 * scale, f"{what}: max error {err} vs scale {scale}"


def _fixed(name):
    return lambda img, b, rng: ((name, {}), cv2.filter2D(img, -1, F.kernel(name), borderType=b))


def _sobel(axis):
    def case(img, b, rng):
        k = int(rng.choice([1, 3, 3, 5, 7]))
        dx, dy = (1, 0) if axis == "x" else (0, 1)
        return (f"sobel_{axis}", {"ksize": k}), cv2.Sobel(img, -1, dx, dy, ksize=k, borderType=b)
    return case


def _scharr(axis):
    def case(img, b, rng):
        dx, dy = (1, 0) if axis == "x" else (0, 1)
        return (f"scharr_{axis}", {}), cv2.Scharr(img, -1, dx, dy, borderType=b)
    return case


def _laplacian4(img, b, rng):
    return ("laplacian4", {}), cv2.Laplacian(img, -1, ksize=1, borderType=b)


def _box(img, b, rng):
    if rng.random() < 0.25:  # areas above 256 take OpenCV's other division path
        kh, kw = (int(v) for v in rng.integers(13, 24, 2))
    else:
        kh, kw = (int(v) for v in rng.integers(1, 9, 2))
    return ("box", {"ksize": (kh, kw)}), cv2.blur(img, (kw, kh), borderType=b)


def _gaussian(img, b, rng):
    kh, kw = (int(v) for v in rng.choice([1, 3, 5, 7, 9, 11, 13], 2))
    r = rng.random()
    if r < 0.4:
        sigma = 0.0  # size-derived sigma (OpenCV's tables for 3, 5, 7, 9)
    elif r < 0.8:
        sigma = (float(rng.uniform(0.3, 4)), float(rng.uniform(0.3, 4)))
    else:  # size from sigma
        kh = kw = 0
        sigma = float(rng.uniform(0.3, 2.0))
    sy, sx = sigma if isinstance(sigma, tuple) else (sigma, sigma)
    ref = cv2.GaussianBlur(img, (kw, kh), sigmaX=sx, sigmaY=sy, borderType=b)
    return ("gaussian", {"ksize": (kh, kw), "sigma": sigma}), ref


def _user_kernel(img, b, rng):
    kh, kw = (int(v) for v in rng.integers(1, 8, 2))
    if rng.random() < 0.5:
        k = rng.integers(-4, 5, (kh, kw)).astype(np.float32)
    else:
        k = rng.uniform(-1, 1, (kh, kw)).astype(np.float32)
    return ("kernel", {"kernel": k}), cv2.filter2D(img, -1, k, borderType=b)


def _magnitude(img, b, rng):
    op = str(rng.choice(["sobel", "scharr"]))
    f = img.astype(np.float32)
    d = (lambda dx, dy: cv2.Sobel(f, cv2.CV_32F, dx, dy, borderType=b)) if op == "sobel" else \
        (lambda dx, dy: cv2.Scharr(f, cv2.CV_32F, dx, dy, borderType=b))
    m = cv2.magnitude(d(1, 0), d(0, 1))
    ref = m if img.dtype == np.float32 else cv2.convertScaleAbs(m)  # cvRound + saturate
    return ("gradient_magnitude", {"operator": op}), ref


LINEAR = {
    "vertical_edge": _fixed("vertical_edge"), "horizontal_edge": _fixed("horizontal_edge"),
    "diagonal_edge": _fixed("diagonal_edge"), "laplacian8": _fixed("laplacian8"),
    "sharpen": _fixed("sharpen"), "laplacian4": _laplacian4,
    "sobel_x": _sobel("x"), "sobel_y": _sobel("y"), "scharr_x": _scharr("x"), "scharr_y": _scharr("y"),
    "box": _box, "gaussian": _gaussian, "kernel": _user_kernel, "gradient_magnitude": _magnitude,
}


@pytest.mark.parametrize("dtype", [np.uint8, np.float32], ids=["u8", "f32"])
@pytest.mark.parametrize("border", list(BORDERS))
@pytest.mark.parametrize("filt", list(LINEAR))
def test_equals_opencv(filt, border, dtype):
    rng = np.random.default_rng([sum(map(ord, filt)),
                                 list(BORDERS).index(border), int(dtype == np.uint8)])
    for i in range(CASES):
        img = _image(rng, dtype, big=(i == 0))
        (name, params), ref = LINEAR[filt](img, BORDERS[border], rng)
        got = F.apply(img, name, border=border, **params)
        k = F.kernel("sobel_x" if params.get("operator") == "sobel" else "scharr_x") \
            if name == "gradient_magnitude" else F.kernel(name, **params)
        terms = float(np.abs(img).max()) * float(np.abs(k).sum())
        _check(got, ref, f"{filt} {params} {border} {img.shape} {img.dtype}", terms)
        out = np.full_like(ref, 7)
        assert F.apply(img, name, border=border, out=out, **params) is out
        _check(out, ref, f"{filt} out=", terms)


@pytest.mark.parametrize("dtype", [np.uint8, np.float32], ids=["u8", "f32"])
@pytest.mark.parametrize("border", list(BORDERS))
def test_orientation_matches_atan2(border, dtype):
    rng = np.random.default_rng(7)
    for i in range(CASES):
        img = _image(rng, dtype, big=(i == 0))
        f = img.astype(np.float32)
        gx = cv2.Sobel(f, cv2.CV_32F, 1, 0, borderType=BORDERS[border]).astype(np.float64)
        gy = cv2.Sobel(f, cv2.CV_32F, 0, 1, borderType=BORDERS[border]).astype(np.float64)
        ref = np.mod(np.arctan2(gy, gx), 2 * np.pi)
        got = F.apply(img, "gradient_orientation", border=border)
        assert got.dtype == np.float32 and got.shape == img.shape
        assert got.min() >= 0 and got.max() < 2 * np.pi
        diff = np.abs(got - ref)
        diff = np.minimum(diff, 2 * np.pi - diff)  # 0 and 2*pi are the same angle
        # float32 gradients that cancel to rounding noise have no meaningful angle: compare where
        # |g| is above 1e-3 of the summed terms (uint8 gradients are exact: compare everywhere)
        terms = 8 * float(np.abs(img).max())
        ok = np.hypot(gx, gy) > (1e-3 * terms if dtype == np.float32 else -1)
        assert ok.mean() > 0.9 or i > 0  # the large random frame is well conditioned
        assert diff[ok].max(initial=0) <= 1e-5 * 2 * np.pi
        # cv2.phase uses a fast approximation (about 1e-4 rad); the exact atan2 is the reference
        ph = cv2.phase(gx.astype(np.float32), gy.astype(np.float32))
        d2 = np.abs(got - ph)
        assert np.minimum(d2, 2 * np.pi - d2)[ok].max(initial=0) < 1e-3


@pytest.mark.parametrize("dtype", [np.uint8, np.float32], ids=["u8", "f32"])
@pytest.mark.parametrize("name", ["gray", "sobel_x", "gaussian", "laplacian8", "box", "gradient_magnitude"])
def test_gray_fused_equals_cvtcolor_then_filter(name, dtype):
    rng = np.random.default_rng(11)
    for i in range(6):
        img = _image(rng, dtype, big=(i == 0), channels=(3,))
        if dtype == np.float32:
            img = np.abs(img) * 2.55  # cvtColor float expects the 0..255 range only for tolerance
        gray = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
        if name == "gray":
            _check(F.apply(img, "gray"), gray, "gray")
            continue
        want = F.apply(gray, name)
        got = F.apply(img, name, gray=True)
        if dtype == np.uint8:
            _check(got, want, f"fused gray + {name}")
        else:  # float gray differs from cvtColor in the last bit: compare with the tolerance
            _check(got, want.astype(np.float32), f"fused gray + {name}")


def test_gray_float32_at_every_alignment_of_image_and_out():
    # the float32 kernel peels pixels by the image's and out's addresses (aligned vector loads and
    # stores): both start at each of the 16 float offsets in a 64-byte line; widths below and
    # above one vector; a frame big enough to run in chunks on several threads, whose chunk
    # starts fall at other offsets
    rng = np.random.default_rng(12)
    for h, w in ((7, 1), (7, 2), (7, 5), (7, 17), (7, 33), (7, 640), (61, 333)):
        for off in range(16):
            flat = (rng.random(off + h * w * 3) * 255).astype(np.float32)
            img = flat[off:].reshape(h, w, 3)
            want = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
            for out_off in (0, 1, 4, 7, 8, 13):
                out = np.full(out_off + h * w, np.nan, np.float32)[out_off:].reshape(h, w)
                for parallel in (False, "always"):
                    F.set_parallel(parallel)
                    try:
                        r = F.apply(img, "gray", out=out)
                    finally:
                        F.set_parallel(True)
                    assert r is out
                    _check(out, want, f"gray {h}x{w} offset={off} out offset={out_off} parallel={parallel}")


def test_uint8_float_kernel_out_of_int_range_matches_opencv():
    # saturate_cast<uchar> of a float beyond int32 goes through cvRound's INT_MIN: OpenCV gives 0
    img = np.full((5, 6), 255, np.uint8)
    k = np.array([[1e8, 1e8, 1e8]], np.float32)
    np.testing.assert_array_equal(F.apply(img, k), cv2.filter2D(img, -1, k))
    k = np.array([[1.5, -0.25]], np.float32)
    np.testing.assert_array_equal(F.apply(img, k), cv2.filter2D(img, -1, k))


@pytest.mark.parametrize("border", list(BORDERS))
def test_uint8_fractional_kernels_equal_filter2d(border):
    """uint8 images with non-integer float32 kernels: 500 random cases per border, bit-exact with
    cv2.filter2D (its float32 sums, cvRound and saturation). Some cases are tall and narrow, where
    most values fall in the scalar row tail that OpenCV sums without FMA."""
    rng = np.random.default_rng([41, list(BORDERS).index(border)])
    for i in range(500):
        if i % 10 == 0:
            h, w = int(rng.integers(50, 400)), int(rng.integers(1, 10))
        else:
            h, w = (int(v) for v in rng.integers(1, 24, 2))
        cn = int(rng.choice([1, 3, 4]))
        img = rng.integers(0, 256, (h, w) if cn == 1 else (h, w, cn), dtype=np.uint8)
        kh, kw = (int(v) for v in rng.integers(1, 8, 2))
        k = rng.uniform(-2, 2, (kh, kw)).astype(np.float32)
        if rng.random() < 0.3:  # taps on a 1/8 grid: many sums land exactly on .5
            k = (np.round(k * 8) / 8).astype(np.float32) + np.float32(0.0625)
        ref = cv2.filter2D(img, -1, k, borderType=BORDERS[border])
        _check(F.apply(img, k, border=border), ref, f"kernel {k.shape} {border} {img.shape}")


@pytest.mark.parametrize("border", list(BORDERS))
def test_uint8_fractional_kernel_rounds_like_opencv_lanes_and_tail(border):
    """-5 + 1.1f * 5 is 0.5000001 with one rounding (FMA) and 0.5 (-> 0) with two. OpenCV's filter2D
    fuses in its SIMD lanes (the first W*C - W*C % 4 values of a row) and not in its scalar tail;
    a constant image of 5 shows both on every row."""
    k = np.array([[-1.0, 1.1]], np.float32)
    seen = set()
    for w in range(1, 40):
        for cn in (1, 3):
            img = np.full((3, w, cn) if cn > 1 else (3, w), 5, np.uint8)
            ref = cv2.filter2D(img, -1, k, borderType=BORDERS[border])
            seen |= set(np.unique(ref[1:2, 1:]).tolist())
            _check(F.apply(img, k, border=border), ref, f"w={w} cn={cn}")
    assert {0, 1} <= seen  # both roundings occur, so the test can tell them apart


@pytest.mark.parametrize("border", list(BORDERS))
def test_box_area_2_of_two_255s_matches_opencv(border):
    """Two 255s in a 1x2 or 2x1 box: OpenCV's division gives 256, saturated to 255 in its 16-lane
    SIMD blocks and wrapped to 0 in the row tail."""
    for w in (1, 5, 16, 17, 40, 70):
        for cn in (1, 2, 3, 4):
            img = np.full((4, w, cn) if cn > 1 else (4, w), 255, np.uint8)
            for ksize in ((1, 2), (2, 1)):
                ref = cv2.blur(img, ksize[::-1], borderType=BORDERS[border])
                _check(F.apply(img, "box", ksize=ksize, border=border), ref, f"{ksize} w={w} cn={cn}")


def test_kernels_match_opencv_definitions():
    for k in (1, 3, 5, 7):
        kx, ky = cv2.getDerivKernels(1, 0, k)
        np.testing.assert_array_equal(F.kernel("sobel_x", ksize=k), np.outer(ky, kx).astype(np.float32))
        kx, ky = cv2.getDerivKernels(0, 1, k)
        np.testing.assert_array_equal(F.kernel("sobel_y", ksize=k), np.outer(ky, kx).astype(np.float32))
    for n in (1, 3, 5, 7, 9, 11, 15, 21):
        for s in (0, 0.5, 1.0, 1.7, 3.0):
            # OpenCV builds these with its software exp(); libm's exp() can differ in the last bit
            np.testing.assert_allclose(F.gaussian_kernel_1d(n, s), cv2.getGaussianKernel(n, s).ravel(),
                                       rtol=1e-14, atol=1e-16)
    assert F.gaussian_kernel_q8(3, 0) == [64, 128, 64]  # the course's 1/16 [1 2 1]
    np.testing.assert_array_equal(F.kernel("gaussian") * 16, np.outer([1, 2, 1], [1, 2, 1]))
    np.testing.assert_array_equal(F.kernel("vertical_edge"), [[1, 0, -1]] * 3)
    np.testing.assert_array_equal(F.kernel("horizontal_edge"), np.array([[1, 0, -1]] * 3).T)
    np.testing.assert_array_equal(F.kernel("diagonal_edge"), [[1, 0, -1], [0, 0, 0], [-1, 0, 1]])
    np.testing.assert_array_equal(F.kernel("laplacian"), [[0, 1, 0], [1, -4, 1], [0, 1, 0]])
    np.testing.assert_allclose(F.kernel("box", ksize=(2, 4)).sum(), 1.0, rtol=1e-6)
    assert F.kernel("box", ksize=(2, 4)).shape == (2, 4)
    assert set(F.names()) >= {"sobel_x", "sobel_y", "scharr_x", "scharr_y", "laplacian4", "laplacian8",
                              "vertical_edge", "horizontal_edge", "diagonal_edge", "sharpen", "box",
                              "gaussian", "gradient_magnitude", "gradient_orientation", "kernel", "gray"}


def test_serial_and_parallel_paths_agree():
    img = np.random.default_rng(3).integers(0, 256, (120, 300, 3), dtype=np.uint8)
    want = {n: F.apply(img, n) for n in ("sobel_x", "gaussian", "sharpen")}
    F.set_parallel(False)
    try:
        for n, w in want.items():
            np.testing.assert_array_equal(F.apply(img, n), w)
    finally:
        F.set_parallel(True)


# every kernel family the plans dispatch to, on a frame big enough for the thread pool
_WAYS = [("sobel_x", {}, "u8"), ("sharpen", {}, "u8"), ("gaussian", {"ksize": 5}, "u8"),
         ("gaussian", {"ksize": 7, "sigma": 1.5}, "u8"), ("box", {"ksize": 3}, "u8"),
         ("box", {"ksize": 7}, "u8"), ("gradient_magnitude", {}, "u8"), ("laplacian4", {}, "f32"),
         ("sobel_y", {}, "f32"), ("gaussian", {"ksize": 7, "sigma": 1.5}, "f32"),
         ("kernel", {"kernel": np.arange(12, dtype=np.float32).reshape(3, 4) / 7}, "u8")]


def _cv_ref(img, name, p):
    if name == "sobel_x":
        return cv2.Sobel(img, -1, 1, 0)
    if name == "sobel_y":
        return cv2.Sobel(img, -1, 0, 1)
    if name == "gaussian":
        return cv2.GaussianBlur(img, (p["ksize"], p["ksize"]), p.get("sigma", 0))
    if name == "box":
        return cv2.blur(img, (p["ksize"], p["ksize"]))
    if name == "gradient_magnitude":
        f = img.astype(np.float32)
        m = cv2.magnitude(cv2.Sobel(f, cv2.CV_32F, 1, 0), cv2.Sobel(f, cv2.CV_32F, 0, 1))
        return cv2.convertScaleAbs(m) if img.dtype == np.uint8 else m
    k = p["kernel"] if name == "kernel" else F.kernel(name)
    return cv2.filter2D(img, -1, k)


@pytest.mark.parametrize("mode", [False, "always", True, "openmp"],
                         ids=["serial", "parallel", "timed-choice", "parallel-openmp"])
@pytest.mark.parametrize("name,params,dtype", _WAYS, ids=[f"{w[0]}-{w[2]}" for w in _WAYS])
def test_each_thread_way_equals_opencv(name, params, dtype, mode):
    """The serial kernel, the parallel call (row chunks over the spin pool, or split in numba's
    thread count on the OpenMP pool, its fallback) and the default timed choice between serial
    and parallel (its probe calls run both ways) all give OpenCV's result."""
    import numba
    rng = np.random.default_rng(11)
    img = rng.integers(0, 256, (97, 401), dtype=np.uint8)  # odd sizes: uneven row blocks, tails
    if dtype == "f32":
        img = img.astype(np.float32)
    ref = _cv_ref(img, name, params)
    before = numba.get_num_threads()
    F._spin[0] = mode != "openmp"
    F.set_parallel("always" if mode == "openmp" else mode)
    try:
        for threads in sorted({1, numba.config.NUMBA_NUM_THREADS}):
            numba.set_num_threads(threads)
            for _ in range(2 * F._PROBE + 4):  # through the probe and into the chosen way
                _check(F.apply(img, name, **params), ref, f"{name} {mode} {threads}",
                       float(np.abs(img).max()) * 64)
    finally:
        F.set_parallel(True)
        F._spin[0] = True
        numba.set_num_threads(before)


def test_parallel_calls_from_several_threads_at_once():
    """The spin pool serves one caller at a time; a second thread's parallel call meanwhile runs
    on the OpenMP pool. Either way every result equals the serial one."""
    import threading
    rng = np.random.default_rng(5)
    imgs = [rng.integers(0, 256, (200, 320), dtype=np.uint8) for _ in range(3)]
    F.set_parallel(False)
    try:
        want = [F.apply(im, "sobel_x") for im in imgs]
    finally:
        F.set_parallel(True)
    errors = []

    def worker(k):
        try:
            for _ in range(30):
                np.testing.assert_array_equal(F.apply(imgs[k], "sobel_x"), want[k])
        except Exception as e:  # reported below: a thread's assertion does not fail the test
            errors.append(e)
    F.set_parallel("always")
    try:
        threads = [threading.Thread(target=worker, args=(k,)) for k in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        F.set_parallel(True)
    assert not errors, errors[0]


def test_set_parallel_rejects_other_values():
    with pytest.raises(ValueError, match="always"):
        F.set_parallel("sometimes")


# ----------------------------------------------------------------------------- FilterChain
def test_chain_equals_opencv_sequence_and_round_trips_json():
    rng = np.random.default_rng(5)
    img = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
    chain = F.FilterChain(["gray", "gaussian:ksize=5,sigma=1.2", ("sobel_x", {"ksize": 3}),
                           {"name": "box", "ksize": [3, 5], "border": "replicate"}])
    g = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    g = cv2.GaussianBlur(g, (5, 5), 1.2)
    g = cv2.Sobel(g, -1, 1, 0)
    ref = cv2.blur(g, (5, 3), borderType=cv2.BORDER_REPLICATE)
    np.testing.assert_array_equal(chain.apply(img), ref)
    cfg = json.loads(json.dumps(chain.to_config()))
    again = F.FilterChain.from_config(cfg)
    assert again.to_config() == chain.to_config()
    np.testing.assert_array_equal(again.apply(img), ref)
    out = np.empty(ref.shape, np.uint8)
    assert again.apply(img, out=out) is out


def test_chain_with_user_kernel_round_trips():
    k = np.array([[0.5, -1.25], [2.0, 0.0]], np.float32)
    chain = F.FilterChain([k, "sharpen"])
    img = np.random.default_rng(1).uniform(0, 1, (9, 8)).astype(np.float32)
    again = F.FilterChain.from_config(json.loads(json.dumps(chain.to_config())))
    np.testing.assert_array_equal(again.apply(img), chain.apply(img))


def test_as_conv_kernels_equals_chain_away_from_borders():
    rng = np.random.default_rng(2)
    img = rng.uniform(0, 255, (30, 34, 3)).astype(np.float32)
    chain = F.FilterChain(["gray", "gaussian", "sobel_y", "laplacian8"])
    w = chain.as_conv_kernels()
    assert w.dtype == np.float32 and w.shape == (1, 3, 7, 7)
    want = chain.apply(img)
    # valid cross-correlation of the BGR image with the OIHW weight, written out
    H, W = img.shape[:2]
    got = np.zeros((H - 6, W - 6))
    for c in range(3):
        for i in range(7):
            for j in range(7):
                got += w[0, c, i, j] * img[i:i + H - 6, j:j + W - 6, c]
    # float32 chain vs the composed kernel: measured 4.5e-7 of the largest response
    np.testing.assert_allclose(got, want[3:-3, 3:-3], atol=1e-5 * np.abs(want).max())
    assert F.FilterChain(["sobel_x"]).as_conv_kernels().shape == (1, 1, 3, 3)
    bank = F.bank(["sobel_x", "sobel_y", "gaussian:ksize=5"])
    assert bank.shape == (3, 1, 5, 5) and bank.dtype == np.float32
    np.testing.assert_array_equal(bank[0, 0, 1:4, 1:4], F.kernel("sobel_x"))


# ------------------------------------------------------------------------------ validation
@pytest.mark.parametrize("call, exc, words", [
    (lambda: F.apply([[1, 2]], "sobel_x"), TypeError, ["image"]),
    (lambda: F.apply(np.zeros((4, 4), np.int16), "sobel_x"), TypeError, ["image", "int16"]),
    (lambda: F.apply(np.zeros((2, 4, 4, 1), np.uint8), "sobel_x"), ValueError, ["image", "(2, 4, 4, 1)"]),
    (lambda: F.apply(np.zeros((4, 6), np.uint8)[:, ::2], "sobel_x"), ValueError, ["image", "contiguous"]),
    (lambda: F.apply(np.zeros((0, 4), np.uint8), "sobel_x"), ValueError, ["image", "empty"]),
    (lambda: F.apply(np.zeros((4, 4, 5), np.uint8), "sobel_x"), ValueError, ["image", "(4, 4, 5)"]),
    (lambda: F.apply(np.zeros((4, 4), np.uint8), "sobelz"), ValueError, ["sobelz", "sobel_x", "gaussian"]),
    (lambda: F.apply(np.zeros((4, 4), np.uint8), "sobel_x", size=3), ValueError, ["size", "ksize"]),
    (lambda: F.apply(np.zeros((4, 4), np.uint8), "sobel_x", border="wrap"), ValueError, ["border", "wrap"]),
    (lambda: F.apply(np.zeros((4, 4), np.uint8), "gaussian", ksize=4), ValueError, ["ksize", "odd"]),
    (lambda: F.apply(np.zeros((4, 4), np.uint8), "gaussian", sigma="a"), TypeError, ["sigma"]),
    (lambda: F.apply(np.zeros((4, 4), np.uint8), "box", ksize=0), ValueError, ["ksize", "0"]),
    (lambda: F.apply(np.zeros((4, 4), np.uint8), "box", ksize=2.5), TypeError, ["ksize"]),
    (lambda: F.apply(np.zeros((4, 4), np.uint8), "sobel_x", ksize=4), ValueError, ["ksize", "4"]),
    (lambda: F.apply(np.zeros((4, 4), np.uint8), "sobel_x", out=np.zeros((4, 5), np.uint8)),
     ValueError, ["out", "(4, 4)", "(4, 5)"]),
    (lambda: F.apply(np.zeros((4, 4), np.uint8), "sobel_x", out=np.zeros((4, 4), np.float32)),
     TypeError, ["out", "uint8", "float32"]),
    (lambda: (lambda a: F.apply(a, "sobel_x", out=a))(np.zeros((4, 4), np.uint8)), ValueError, ["out", "overlap"]),
    (lambda: F.apply(np.zeros((4, 4), np.uint8), "sobel_x", gray=True), ValueError, ["gray", "(4, 4)"]),
    (lambda: F.apply(np.zeros((4, 4), np.uint8), "gray"), ValueError, ["gray", "(4, 4)"]),
    (lambda: F.apply(np.zeros((4, 4), np.uint8), np.zeros((2, 2, 2))), ValueError, ["kernel", "(2, 2, 2)"]),
    (lambda: F.apply(np.zeros((4, 4), np.uint8), np.array([[np.nan]])), ValueError, ["kernel", "finite"]),
    (lambda: F.apply(np.zeros((4, 4), np.uint8), "kernel"), ValueError, ["kernel"]),
    (lambda: F.apply(np.zeros((4, 4), np.uint8), "gradient_magnitude", operator="prewitt"),
     ValueError, ["operator", "prewitt"]),
    (lambda: F.kernel("gradient_magnitude"), ValueError, ["gradient_magnitude", "linear"]),
    (lambda: F.FilterChain(["sobel_x", "gray"]), ValueError, ["gray", "first"]),
    (lambda: F.FilterChain([42]), TypeError, ["spec", "42"]),
    (lambda: F.FilterChain(["gaussian:ksize"]), ValueError, ["key=value"]),
    (lambda: F.FilterChain([{"ksize": 3}]), ValueError, ["name"]),
    (lambda: F.FilterChain(["gradient_magnitude"]).as_conv_kernels(), ValueError, ["linear"]),
    (lambda: F.FilterChain.from_config([1, 2]), ValueError, ["config"]),
])
def test_validation_errors_name_the_parameter(call, exc, words):
    with pytest.raises(exc) as info:
        call()
    msg = str(info.value)
    for w in words:
        assert w in msg, f"{w!r} not in {msg!r}"


def test_fast_path_still_validates_after_a_cached_call():
    """apply() caches the bound kernel of a validated call; a later call with the same key but a
    bad out, a non-contiguous image or a same-valued parameter of another type must still raise."""
    img = np.zeros((6, 8), np.uint8)
    F.apply(img, "box", ksize=3, out=np.empty((6, 8), np.uint8))  # now cached
    F.apply(img, "box", ksize=3)
    with pytest.raises(TypeError, match="ksize"):
        F.apply(img, "box", ksize=3.0)
    with pytest.raises(TypeError, match="out"):
        F.apply(img, "box", ksize=3, out=np.empty((6, 8), np.float32))
    with pytest.raises(ValueError, match="out"):
        F.apply(img, "box", ksize=3, out=np.empty((6, 9), np.uint8))
    with pytest.raises(ValueError, match="overlap"):
        F.apply(img, "box", ksize=3, out=img)
    with pytest.raises(ValueError, match="contiguous"):
        F.apply(np.zeros((6, 16), np.uint8)[:, ::2], "box", ksize=3)


@pytest.mark.parametrize("ksize", [(3, 3), (5, 5), (3, 5), (1, 5), (5, 3)])
def test_box_uint8_every_window_sum_matches_opencv(ksize):
    """The uint8 box division runs as a 16-bit multiply-high found at plan time; every window sum
    0 .. 255*area must round as cv2.blur does (a ramp image of noise reaches all of them)."""
    rng = np.random.default_rng(sum(ksize))
    img = rng.integers(0, 256, (64, 512), dtype=np.uint8)
    img[:32] = np.sort(img[:32], axis=None).reshape(32, 512)  # long runs of equal values
    img[0, :] = 255
    img[1:8, :] = 255
    got = F.apply(img, "box", ksize=ksize)
    _check(got, cv2.blur(img, ksize[::-1], borderType=cv2.BORDER_REFLECT_101), f"box {ksize}")
    s = np.arange(255 * ksize[0] * ksize[1] + 1)
    plan = F._plan("test", "box", {"ksize": ksize}, True)
    if plan.post == F.POST_MULHI:  # the rule itself, over every sum, against OpenCV's formula
        area = ksize[0] * ksize[1]
        mul = (1 << 23) / area
        dv, ds = int(mul), area // 2
        if mul - dv < 0.5:
            ds += 1
        else:
            dv += 1
        assert np.array_equal((((s + plan.p0) * plan.p1) >> 16) >> plan.mh, ((s + ds) * dv) >> 23)


# ------------------------------------------------------------------------------------ CLI
def _cli(*args):
    return subprocess.run([sys.executable, "-m", "edgecnn", "filter", *args], capture_output=True,
                          text=True, timeout=300)


def test_cli_writes_filtered_image(tmp_path):
    img = np.random.default_rng(0).integers(0, 256, (24, 32, 3), dtype=np.uint8)
    src, dst = tmp_path / "in.png", tmp_path / "out.png"
    cv2.imwrite(str(src), img)
    r = _cli(str(src), "--filter", "gray", "--filter", "gaussian:ksize=5", "-f", "sobel_x", "--out", str(dst))
    assert r.returncode == 0, r.stderr
    ref = cv2.Sobel(cv2.GaussianBlur(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY), (5, 5), 0), -1, 1, 0)
    np.testing.assert_array_equal(cv2.imread(str(dst), cv2.IMREAD_UNCHANGED), ref)


def test_cli_errors_name_the_file_and_list_filters(tmp_path):
    r = _cli(str(tmp_path / "missing.png"), "-f", "sobel_x", "--out", str(tmp_path / "o.png"))
    assert r.returncode != 0 and "missing.png" in r.stderr
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    r = _cli(str(bad), "-f", "sobel_x", "--out", str(tmp_path / "o.png"))
    assert r.returncode != 0 and "bad.png" in r.stderr
    good = tmp_path / "g.png"
    cv2.imwrite(str(good), np.zeros((4, 4), np.uint8))
    r = _cli(str(good), "-f", "sobelz", "--out", str(tmp_path / "o.png"))
    assert r.returncode != 0 and "sobelz" in r.stderr and "scharr_x" in r.stderr


@pytest.mark.parametrize("out,words", [("o.xyz", ["'.xyz'", "no image writer"]),
                                       ("nowhere/o.png", ["nowhere", "does not exist"])])
def test_cli_refuses_an_unwritable_out_before_filtering(tmp_path, out, words):
    good = tmp_path / "g.png"
    cv2.imwrite(str(good), np.zeros((4, 4), np.uint8))
    r = _cli(str(good), "-f", "sobel_x", "--out", str(tmp_path / out))
    assert r.returncode == 1 and str(tmp_path / out) in r.stderr and all(w in r.stderr for w in words)
    assert "OpenCV(" not in r.stderr and "Traceback" not in r.stderr, r.stderr  # one line, ours
    assert sorted(os.listdir(tmp_path)) == ["g.png"]


def test_cli_show_without_display_says_so(tmp_path, monkeypatch):
    good = tmp_path / "g.png"
    cv2.imwrite(str(good), np.zeros((4, 4), np.uint8))
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    r = _cli(str(good), "-f", "sobel_x", "--show")
    assert r.returncode == 0 and "no display" in r.stderr


@pytest.mark.parametrize("border", list(BORDERS))
@pytest.mark.parametrize("shape", [(1, 1), (1, 6), (6, 1), (2, 2), (3, 3), (2, 7, 3), (7, 2, 3),
                                   (5, 9, 3), (64, 600)])
def test_float32_3x3_in_place_kernel_edges(shape, border):
    """float32 3x3 kernels read the frame in place: the one-pass kernel rewrites the first/last
    rows and columns through the border maps (named taps compiled in, user taps at run time), the
    separable one (gaussian, box) maps rows and pads its column line; every thread way, on frames
    from 1x1 up."""
    rng = np.random.default_rng(len(shape) * 100 + shape[0] * 10 + shape[1])
    img = rng.uniform(-100, 100, shape).astype(np.float32)
    user = rng.uniform(-1, 1, (3, 3)).astype(np.float32)
    for mode in (False, "always"):
        F.set_parallel(mode)
        try:
            for name, k in (("laplacian4", None), ("sobel_y", None), ("laplacian8", None),
                            ("kernel", user), ("gaussian", None), ("box", None)):
                kk = F.kernel(name) if k is None else k
                ref = cv2.filter2D(img, -1, kk, borderType=BORDERS[border])
                got = F.apply(img, k if k is not None else name, border=border)
                _check(got, ref, f"{name} {shape} {border} {mode}", float(np.abs(img).max()) * 9)
        finally:
            F.set_parallel(True)


@pytest.mark.parametrize("dtype", [np.uint8, np.float32], ids=["u8", "f32"])
@pytest.mark.parametrize("border", list(BORDERS))
@pytest.mark.parametrize("ksize,sigma", [((7, 7), 1.5), ((7, 5), (2.0, 0.8)), ((3, 7), 1.1),
                                         ((7, 7), 0.0), ((5, 7), 3.0)])
def test_gaussian_up_to_7_taps_fused_kernel(ksize, sigma, border, dtype):
    """Gaussians with a 6- or 7-tap side (uint8 Q8 sums too big for 16 bits: uint16 row pass,
    int32 column pass) on frames smaller and larger than the kernel, serial and parallel."""
    rng = np.random.default_rng(ksize[0] * 10 + ksize[1])
    sy, sx = sigma if isinstance(sigma, tuple) else (sigma, sigma)
    for shape in [(2, 3), (9, 11, 3), (97, 401)]:
        img = rng.integers(0, 256, shape, dtype=np.uint8)
        img = img if dtype == np.uint8 else img.astype(np.float32)
        ref = cv2.GaussianBlur(img, ksize[::-1], sigmaX=sx, sigmaY=sy, borderType=BORDERS[border])
        for mode in (False, "always"):
            F.set_parallel(mode)
            try:
                got = F.apply(img, "gaussian", ksize=ksize, sigma=sigma, border=border)
            finally:
                F.set_parallel(True)
            _check(got, ref, f"gaussian {ksize} {sigma} {shape} {border} {mode}",
                   float(np.abs(img).max()))


@pytest.mark.parametrize("border", list(BORDERS))
@pytest.mark.parametrize("ksize", [(3, 3), (5, 3), (5, 5), (3, 5)])
def test_uint8_box_flat_strips_and_running_sums(ksize, border):
    """uint8 boxes of 3 or 5 a side run in strips of flat vertical-then-horizontal passes whose
    row ends are redone through the column map, the 5-wide division's shift as a second
    multiply-high (the running-sum kernel, flat off, too): bit-exact with cv2.blur on frames
    from 1x1 up, odd widths, 1 to 4 channels, several strips, every thread way."""
    rng = np.random.default_rng(ksize[0] * 10 + ksize[1])
    shapes = [(1, 1), (1, 6), (6, 1), (2, 2), (3, 3), (2, 7, 3), (7, 2, 3), (5, 9, 3), (4, 5, 4),
              (17, 33), (40, 101, 3), (35, 2, 2), (97, 401)]
    for shape in shapes:
        img = rng.integers(0, 256, shape, dtype=np.uint8)
        if shape == (97, 401):
            img[:8] = 255  # full windows: the largest sums
        ref = cv2.blur(img, ksize[::-1], borderType=BORDERS[border])
        for flat in (True, False):
            for mode in (False, "always"):
                F._BOXFLAT[0] = flat
                F._FAST.clear()  # bound calls keep the kernel chosen when first bound
                F.set_parallel(mode)
                try:
                    got = F.apply(img, "box", ksize=ksize, border=border)
                finally:
                    F.set_parallel(True)
                    F._BOXFLAT[0] = True
                    F._FAST.clear()
                _check(got, ref, f"box {ksize} {shape} {border} {mode} flat={flat}")


def _drive_pick(pick, calls, cost):
    """Run ``calls`` calls through a _Pick at 2 threads; cost(call index, parallel) is a probe's
    time. Returns the way each call took (True: parallel)."""
    ways = []
    for i in range(calls):
        w = pick.way(2)
        if w in (2, 3):
            pick.record(w, cost(i, w == 3))
        ways.append(w in (1, 3))
    return ways


def test_timed_choice_revisits_a_choice_made_at_a_bad_moment(monkeypatch):
    # the first probe sees parallel calls slowed (another library's workers still spinning):
    # serial is chosen, and parallel is back within the first re-check, ~80 calls later
    monkeypatch.setattr(F, "_parallel", [True])
    pick = F._Pick()
    ways = _drive_pick(pick, 400, lambda i, par: (2.0 if i < 20 else 0.6) if par else 1.0)
    assert not any(ways[12:F._REPROBE_FIRST])  # serial after the first probe
    back = F._REPROBE_FIRST + 2 * F._PROBE  # the re-check's last probe call
    assert all(ways[back:back + 50])  # parallel after the re-check
    # while the choice holds, re-checks get rarer: 400 more calls hold at most 3 more probes
    n_probe = 0
    for i in range(400):
        w = pick.way(2)
        if w in (2, 3):
            n_probe += 1
            pick.record(w, 0.6 if w == 3 else 1.0)
    assert n_probe <= 3 * 2 * F._PROBE


def _parallel_probes(times):
    """cost() for _drive_pick: serial probes take 1.0, parallel ones ``times`` in turn."""
    n = []

    def cost(i, par):
        if not par:
            return 1.0
        n.append(i)
        return times[(len(n) - 1) % len(times)]
    return cost


def test_timed_choice_sees_through_parallel_probes_slowed_by_interference(monkeypatch):
    # 3 of the 5 parallel probes slowed (OpenCV's workers still spinning after its calls, say):
    # the fast end of the probes decides, so the row stays parallel (by the median it went serial)
    monkeypatch.setattr(F, "_parallel", [True])
    ways = _drive_pick(F._Pick(), F._REPROBE_FIRST, _parallel_probes([1.8, 0.6, 1.8, 0.6, 1.8]))
    assert all(ways[2 + 2 * F._PROBE:])
    # but a way that is faster in one probe only loses
    ways = _drive_pick(F._Pick(), F._REPROBE_FIRST, _parallel_probes([1.8, 0.6, 1.8, 1.8, 1.8]))
    assert not any(ways[2 + 2 * F._PROBE:])


def test_timed_choice_keeps_serial_when_parallel_is_slower(monkeypatch):
    # a core busy with other work: parallel loses every probe, serial is kept, checks get rarer
    monkeypatch.setattr(F, "_parallel", [True])
    pick = F._Pick()
    ways = _drive_pick(pick, 3000, lambda i, par: 2.0 if par else 1.0)
    probe_calls = 2 * F._PROBE
    assert sum(ways) <= 1 + probe_calls // 2 * 7  # only the parallel probe calls ran parallel
    assert pick.every > F._REPROBE_FIRST * 8
