"""MNIST-way preprocessing of a single image, checked against real MNIST digits and the recipe itself."""
import gzip

import numpy as np
import pytest

from edgecnn.digits import to_mnist_28


@pytest.fixture(scope="module")
def digits(mnist_dir):
    """The first 200 MNIST test digits, read here directly from the IDX file (independent of edgecnn.data)."""
    path = mnist_dir / "t10k-images-idx3-ubyte.gz"
    raw = gzip.open(path).read() if path.exists() else (mnist_dir / "t10k-images-idx3-ubyte").read_bytes()
    return np.frombuffer(raw, np.uint8, offset=16).reshape(-1, 28, 28)[:200]


def centre_of_mass(a):
    a = a.astype(np.float64)
    idx = np.arange(a.shape[0])
    return (a.sum(1) @ idx) / a.sum(), (a.sum(0) @ idx) / a.sum()


def best_shift_error(y, x):
    """Mean absolute error after the best whole-pixel shift of at most 1 px: a centre of mass that
    lies on a half pixel may round either way (MNIST's own centring had the same ambiguity)."""
    y, best = y.astype(int), None
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            e = np.abs(np.roll(y, (dy, dx), axis=(0, 1)) - x).mean()
            best = e if best is None else min(best, e)
    return best


def bbox(a):
    ys, xs = np.nonzero(a)
    return ys.min(), ys.max(), xs.min(), xs.max()


def test_an_mnist_digit_comes_back_almost_unchanged(digits):
    """MNIST digits already follow the recipe, so the recipe must (nearly) reproduce them."""
    for x in digits:
        y = to_mnist_28(x, invert=False)
        assert y.dtype == np.uint8 and y.shape == (28, 28)
        assert best_shift_error(y, x) < 2.0


def test_dark_ink_pasted_on_a_light_page_comes_back(digits):
    """Independent check: paste the digit (dark on light) at a random place on a bigger page."""
    rng = np.random.default_rng(0)
    for x in digits:
        page = np.full((100, 130), 235, np.uint8)
        r, c = rng.integers(0, 100 - 28), rng.integers(0, 130 - 28)
        page[r:r + 28, c:c + 28] = 235 - (x.astype(np.int32) * 215 // 255)
        y = to_mnist_28(page)                      # auto-inverts: the border is light
        assert best_shift_error(y, x) < 2.5


def test_scaled_noisy_photo_of_a_digit_is_close(digits):
    """A 2.5x larger digit with noise: the recipe scales it back to a 20 px box, centred by mass."""
    import cv2
    rng = np.random.default_rng(1)
    cors = []
    for x in digits[:100]:
        big = cv2.resize(x, (70, 70), interpolation=cv2.INTER_CUBIC)
        page = np.full((160, 120), 220, np.float64)
        page[40:110, 20:90] -= big.astype(np.float64) * 0.8
        page += rng.normal(0, 3, page.shape)
        y = to_mnist_28(np.clip(page, 0, 255).astype(np.uint8))
        cy, cx = centre_of_mass(y)
        assert abs(cy - 14) <= 0.5 + 1e-9 and abs(cx - 14) <= 0.5 + 1e-9
        t, b, left, r = bbox(y)
        assert max(b - t, r - left) + 1 in (20, 21, 22)   # 20 px box, +-1 px of anti-aliased edge
        cors.append(np.corrcoef(y.ravel(), x.ravel())[0, 1])
    assert np.median(cors) > 0.9, np.median(cors)


def test_recipe_on_a_synthetic_bar():
    """A tall dark bar on white: longest side -> 20 px, aspect kept, centred, inverted to light."""
    page = np.full((200, 100), 255, np.uint8)
    page[20:180, 40:60] = 0                          # 160 x 20 bar
    y = to_mnist_28(page)
    t, b, left, r = bbox(y > 128)
    assert b - t + 1 == 20 and r - left + 1 in (2, 3, 4)   # 160 -> 20 rows, 20 -> 2.5 columns
    cy, cx = centre_of_mass(y)
    assert abs(cy - 14) <= 0.5 and abs(cx - 14) <= 0.5
    assert y.max() == 255 and y[0, 0] == 0


def test_light_on_dark_is_not_inverted_and_colour_is_accepted(digits):
    x = digits[0]
    page = np.zeros((60, 60), np.uint8)
    page[10:38, 20:48] = x
    np.testing.assert_array_equal(to_mnist_28(page), to_mnist_28(page, invert=False))
    bgr = np.repeat(page[:, :, None], 3, axis=2)
    np.testing.assert_array_equal(to_mnist_28(bgr), to_mnist_28(page))


def test_blank_and_flat_images_give_an_empty_field():
    for img in (np.full((40, 40), 255, np.uint8), np.zeros((5, 5), np.uint8), np.full((30, 30), 128, np.uint8)):
        y = to_mnist_28(img)
        assert y.shape == (28, 28) and not y.any()


def test_bad_input_names_the_parameter():
    with pytest.raises(ValueError, match="image must be"):
        to_mnist_28(np.zeros((2, 3, 4, 5), np.uint8))
    with pytest.raises(ValueError, match="image must be"):
        to_mnist_28(np.zeros((0, 5), np.uint8))
    with pytest.raises(TypeError, match="image must be numeric"):
        to_mnist_28(np.array([["a", "b"], ["c", "d"]]))
