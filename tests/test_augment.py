"""edgecnn.augment: the affine warp against float64 and OpenCV references, seeding, thread independence.

Tolerance for the warp: the kernel evaluates sampling coordinates in float32. Coordinates are below
~64 px in magnitude and take three roundings (|err| <= 3 * 64 * 2**-24 ~ 1.2e-5 px per axis); bilinear
interpolation of 0..255 pixels has slope <= 255 per px along each axis, so values may differ by
<= 2 * 255 * 1.2e-5 ~ 6e-3 from an exact evaluation at the same (float32) map, plus a few float32
rounding steps of the 0..255 result (~1e-4). Hence ATOL = 6e-3 + 1e-4.
"""
import numba
import numpy as np
import pytest
from reference.affine import affine_forward_matrix_ref, bilinear_warp_ref

from edgecnn.augment import Augment, affine_warp, affine_warp_bilinear_cpu, inverse_maps, warp_scratch
from edgecnn.data import Batches, Normalization, load_mnist

ATOL = 6e-3 + 1e-4


@pytest.fixture(scope="module")
def digits(mnist_dir):
    return load_mnist(mnist_dir, download=False).test_images[:32].copy()


def _warp(x, maps):
    return affine_warp(x, maps)


def test_identity_reproduces_input_exactly(digits):
    for x in (digits, digits.astype(np.float32)):
        y = Augment(shift=0, rotate=0, scale=0).apply(x)
        assert y.dtype == np.float32 and y.shape == (32, 1, 28, 28)
        np.testing.assert_array_equal(y[:, 0], digits.astype(np.float32))
    ident = np.tile(np.array([1, 0, 0, 0, 1, 0], np.float32), (32, 1))
    np.testing.assert_array_equal(_warp(digits, ident), digits.astype(np.float32))


@pytest.mark.parametrize("dx, dy", [(1, 0), (0, -2), (3, 2), (-4, -1)])
def test_integer_shift_is_an_exact_zero_filled_translation(digits, dx, dy):
    maps = inverse_maps(np.full(32, dx, float), np.full(32, dy, float), np.zeros(32), np.ones(32), 28, 28)
    got = _warp(digits, maps)
    expected = np.zeros((32, 28, 28), np.float32)
    src = digits.astype(np.float32)
    expected[:, max(dy, 0):28 + min(dy, 0), max(dx, 0):28 + min(dx, 0)] = \
        src[:, max(-dy, 0):28 + min(-dy, 0), max(-dx, 0):28 + min(-dx, 0)]
    np.testing.assert_array_equal(got, expected)


def test_inverse_maps_invert_the_forward_transform():
    rng = np.random.default_rng(0)
    n = 20
    dx, dy = rng.uniform(-3, 3, n), rng.uniform(-3, 3, n)
    angle, scale = rng.uniform(-40, 40, n), rng.uniform(0.7, 1.3, n)
    maps = inverse_maps(dx, dy, angle, scale, 28, 30)
    for k in range(n):
        inv = np.linalg.inv(affine_forward_matrix_ref(dx[k], dy[k], angle[k], scale[k], 28, 30))
        np.testing.assert_allclose(maps[k], inv[:2].ravel(), rtol=0, atol=4e-6)  # float32 rounding of ~30


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_random_warps_match_float64_reference(digits, dtype):
    aug = Augment(shift=4, rotate=30, scale=0.3)
    x = digits.astype(dtype)
    maps = inverse_maps(*aug.draw(32, np.random.default_rng(1)), 28, 28)
    got = _warp(x, maps)
    for k in range(32):
        ref = bilinear_warp_ref(digits[k], maps[k].astype(np.float64))
        np.testing.assert_allclose(got[k], ref, rtol=0, atol=ATOL)


def test_random_warps_match_opencv(digits):
    import cv2  # a dependency: a broken install must fail, not skip
    aug = Augment(shift=3, rotate=25, scale=0.2)
    maps = inverse_maps(*aug.draw(32, np.random.default_rng(2)), 28, 28)
    got = _warp(digits, maps)
    for k in range(32):
        m = maps[k].reshape(2, 3).astype(np.float64)
        flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
        cv = cv2.warpAffine(digits[k].astype(np.float32), m, (28, 28), flags=flags,
                            borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        np.testing.assert_allclose(got[k], cv, rtol=0, atol=ATOL)
        # uint8 output is rounded to the nearest integer: 0.5 more.
        cv8 = cv2.warpAffine(digits[k], m, (28, 28), flags=flags, borderMode=cv2.BORDER_CONSTANT,
                             borderValue=0)
        np.testing.assert_allclose(got[k], cv8, rtol=0, atol=0.5 + ATOL)


def test_warp_far_outside_is_zero(digits):
    maps = inverse_maps(np.full(32, 100.0), np.full(32, -1e6), np.zeros(32), np.ones(32), 28, 28)
    assert not _warp(digits, maps).any()


def test_kernel_reads_nothing_out_of_range_for_nan_or_huge_maps(digits):
    # The host entry point refuses non-finite maps; the kernel itself clamps them (NaN -> outside).
    maps = np.tile(np.array([1, 0, np.nan, 0, 1, 0], np.float32), (32, 1))
    maps[1::2] = [3e38, 0, 0, 0, -3e38, 0]
    out = np.full((32, 28, 28), 7, np.float32)
    affine_warp_bilinear_cpu(digits, maps, out, *warp_scratch(28, 28))
    assert not out.any()


@pytest.mark.parametrize("h, w", [(20, 33), (31, 7)])
def test_non_square_images_match_reference(h, w):
    rng = np.random.default_rng(h * w)
    x = rng.integers(0, 256, (6, h, w), dtype=np.uint8)
    maps = inverse_maps(rng.uniform(-3, 3, 6), rng.uniform(-3, 3, 6), rng.uniform(-30, 30, 6),
                        rng.uniform(0.8, 1.2, 6), h, w)
    got = affine_warp(x, maps)
    for k in range(6):
        ref = bilinear_warp_ref(x[k], maps[k].astype(np.float64))
        np.testing.assert_allclose(got[k], ref, rtol=0, atol=ATOL)


@pytest.mark.parametrize("kwargs, param, exc", [
    (dict(maps=np.zeros((3, 6), np.float32)), "maps", ValueError),
    (dict(maps=np.zeros((4, 6), np.float64)), "maps", TypeError),
    (dict(maps=np.full((4, 6), np.nan, np.float32)), "maps", ValueError),
    (dict(out=np.zeros((4, 1, 28, 28), np.float32)), "out", ValueError),
    (dict(scratch=warp_scratch(27, 28)), "scratch", ValueError),
])
def test_affine_warp_bad_arguments_name_the_parameter(kwargs, param, exc):
    args = dict(images=np.zeros((4, 28, 28), np.uint8), maps=np.zeros((4, 6), np.float32))
    args.update(kwargs)
    with pytest.raises(exc, match=f"affine_warp: {param}"):
        affine_warp(**args)


def test_parameters_are_uniform_in_range():
    aug = Augment(shift=2, rotate=10, scale=0.1)
    dx, dy, angle, scale = aug.draw(20000, np.random.default_rng(0))
    for v, lo, hi in ((dx, -2, 2), (dy, -2, 2), (angle, -10, 10), (scale, 0.9, 1.1)):
        assert v.min() >= lo and v.max() < hi
        assert v.min() < lo + 0.01 * (hi - lo) and v.max() > hi - 0.01 * (hi - lo)
        assert abs(v.mean() - (lo + hi) / 2) < 0.02 * (hi - lo)


def test_seeded_and_reproducible(digits):
    a = Augment(seed=3).apply(digits)
    b = Augment(seed=3).apply(digits)
    c = Augment(seed=4).apply(digits)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert not np.array_equal(a[:, 0], digits.astype(np.float32))
    aug = Augment(seed=3)
    state = aug.get_state()
    first = aug.apply(digits)
    aug.set_state(state)
    np.testing.assert_array_equal(aug.apply(digits), first)
    r1 = Augment().apply(digits, rng=np.random.default_rng(9))
    r2 = Augment(seed=77).apply(digits, rng=np.random.default_rng(9))
    np.testing.assert_array_equal(r1, r2)


def test_same_result_for_any_thread_count(digits):
    before = numba.get_num_threads()
    try:
        results = []
        for threads in sorted({1, numba.config.NUMBA_NUM_THREADS}):
            numba.set_num_threads(threads)
            results.append(Augment(shift=3, rotate=20, scale=0.2, seed=5).apply(digits))
    finally:
        numba.set_num_threads(before)
    for r in results[1:]:
        np.testing.assert_array_equal(r, results[0])


def test_writes_into_out(digits):
    out = np.empty((32, 1, 28, 28), np.float32)
    assert Augment().apply(digits, out=out) is out


def test_batches_with_augment_match_manual_pipeline_and_resume(digits):
    labels = np.arange(32, dtype=np.uint8) % 10
    aug, norm = Augment(seed=1), Normalization()
    b = Batches(digits, labels, 8, seed=2, augment=aug, normalization=norm)
    assert len([x for x, _ in b]) == 4  # epoch 0
    # Manual pipeline (unshuffled, so batch k holds images 8k..8k+7): parameters from
    # batch_rng(epoch 0, k), warp, then normalization.
    c = Batches(digits, labels, 8, seed=2, augment=Augment(seed=1), normalization=norm, shuffle=False)
    for index, (x, _) in enumerate(c):
        manual = norm.apply(Augment(seed=1).apply(digits[8 * index:8 * index + 8], rng=c.batch_rng(0, index)))
        np.testing.assert_array_equal(x, manual)
    # Resume mid-epoch in epoch 1 gives the same batches as the uninterrupted run.
    second = [(x.copy(), y.copy()) for x, y in b]
    r = Batches(digits, labels, 8, seed=2, augment=Augment(seed=1), normalization=norm)
    r.set_state({**b.get_state(), "epoch": 1, "position": 2})
    resumed = [(x.copy(), y.copy()) for x, y in r]
    assert len(resumed) == 2
    for (x1, y1), (x2, y2) in zip(resumed, second[2:]):
        np.testing.assert_array_equal(x1, x2)
        np.testing.assert_array_equal(y1, y2)


@pytest.mark.parametrize("kwargs, param", [
    (dict(shift=-1), "shift"),
    (dict(shift=14), "shift"),
    (dict(rotate=180), "rotate"),
    (dict(rotate=float("nan")), "rotate"),
    (dict(scale=1.0), "scale"),
    (dict(scale="0.1"), "scale"),
    (dict(seed=-1), "seed"),
])
def test_bad_settings_name_the_parameter(kwargs, param):
    with pytest.raises(ValueError, match=param):
        Augment(**kwargs)


@pytest.mark.parametrize("images, out, rng, param, exc", [
    (np.zeros((2, 28, 28), np.float64), None, None, "images", TypeError),
    (np.zeros((28, 28), np.uint8), None, None, "images", ValueError),
    (np.zeros((2, 3, 28, 28), np.uint8), None, None, "images", ValueError),
    (np.zeros((2, 28, 28), np.uint8)[:, ::2], None, None, "images", ValueError),
    ("img", None, None, "images", TypeError),
    (np.zeros((2, 28, 28), np.uint8), np.zeros((2, 28, 28), np.float32), None, "out", ValueError),
    (np.zeros((2, 28, 28), np.uint8), np.zeros((2, 1, 28, 28), np.float64), None, "out", TypeError),
    (np.zeros((2, 28, 28), np.uint8), None, 42, "rng", TypeError),
])
def test_bad_apply_arguments_name_the_parameter(images, out, rng, param, exc):
    with pytest.raises(exc, match=f"Augment.apply: {param}"):
        Augment().apply(images, out=out, rng=rng)


def test_out_overlapping_input_is_refused():
    x = np.zeros((2, 1, 28, 28), np.float32)
    with pytest.raises(ValueError, match="out must not overlap"):
        Augment().apply(x, out=x)


def test_config_round_trip():
    aug = Augment(shift=1.5, rotate=5, scale=0.05, seed=7)
    assert Augment.from_config(aug.to_config()).to_config() == aug.to_config()


def test_batches_step_with_augment_allocates_no_image_buffers(mnist_dir):
    import tracemalloc
    data = load_mnist(mnist_dir, download=False)
    b = Batches(data.test_images[:2048], data.test_labels[:2048], 256, augment=Augment(), drop_last=True)
    it = iter(b)
    next(it)
    next(it)
    tracemalloc.start()
    try:
        for _ in range(4):
            next(it)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # The batch is 256*784*4 = 800 kB. What a step allocates is the per-image parameter arrays
    # (a few float64 values per image: ~40 kB for 256 images), no image-sized buffers.
    assert peak < 64_000, f"a step allocated {peak} bytes"
