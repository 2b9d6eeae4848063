"""edgecnn.strokes: pen strokes thinner than MNIST's are thickened before a digit is scaled to 20 px.
References: OpenCV's dilate, straight bands of known width, the real MNIST test set, and MNIST digits
redrawn with a thin pen (tests/penstrokes.py)."""
import numpy as np
import pytest

import cv2  # a dependency: a broken install must fail, not skip

from edgecnn import digits
from edgecnn.strokes import INK, STROKE, THIN, dilate_square, stroke_width, thicken
from livevideo import load_test_digits
from penstrokes import on_paper, pen_digit


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_dilate_square_equals_opencv(dtype):
    rng = np.random.default_rng(0)
    for _ in range(150):
        h, w, r = int(rng.integers(1, 30)), int(rng.integers(1, 30)), int(rng.integers(1, 12))
        a = (rng.random((h, w)) * 255).astype(dtype)
        pad = np.zeros((h + 2 * r, w + 2 * r), dtype)
        pad[r:r + h, r:r + w] = a
        ref = cv2.dilate(pad, np.ones((2 * r + 1, 2 * r + 1), np.uint8), borderType=cv2.BORDER_CONSTANT,
                         borderValue=0)
        got = dilate_square(a, r)
        assert got.dtype == dtype and np.array_equal(got, ref), (h, w, r)


@pytest.mark.parametrize("w", [1, 2, 3, 5, 8])
def test_stroke_width_of_straight_bands(w):
    L = 150
    img = np.zeros((w + 20, L + 20), np.uint8)
    img[10:10 + w, 10:10 + L] = 255
    want = w * L / (L + w)  # 2 x area / perimeter of a w x L band
    assert stroke_width(img, np.uint8(INK)) == pytest.approx(want)
    assert stroke_width(np.ascontiguousarray(img.T), np.uint8(INK)) == pytest.approx(want)


def test_the_constants_are_mnists_own_stroke_widths(mnist_dir):
    images, _ = load_test_digits(mnist_dir)
    ws = np.array([stroke_width(im, np.uint8(INK)) for im in images])  # MNIST's box is already 20 px
    assert np.median(ws) == pytest.approx(STROKE, abs=0.05)
    assert np.percentile(ws, 0.5) == pytest.approx(THIN, abs=0.05)


def test_mnist_digits_are_left_alone(mnist_dir):
    """thicken leaves a digit with strokes MNIST has alone (the very same array): all but MNIST's
    thinnest 0.5 % of the 10,000 test digits (box already 20 px)."""
    images, _ = load_test_digits(mnist_dir)
    kept = sum(thicken(im) is im for im in images)
    assert kept >= 0.99 * len(images), kept


@pytest.mark.parametrize("crop", [np.zeros((3, 4, 3), np.uint8), np.zeros((5, 5), np.float64), [[0, 1]]])
def test_thicken_refuses_what_it_cannot_read(crop):
    with pytest.raises(ValueError, match="thicken: crop must be a 2-D uint8 or float32 array"):
        thicken(crop)


@pytest.fixture(scope="module")
def pen_photos(mnist_dir):
    """200 MNIST test digits written with a 2 px pen, 168 px tall, photographed on paper."""
    images, labels = load_test_digits(mnist_dir)
    rng = np.random.default_rng(0)
    return [on_paper(pen_digit(im, 168, 2), rng) for im in images[:200]], labels[:200]


def core_width(field):
    return stroke_width(field, np.uint8(INK))


def test_thin_pen_digits_come_out_with_mnists_stroke_width(pen_photos):
    """Without thickening, edgecnn.digits made them hairlines: median 0.4 px at 28x28."""
    photos, _ = pen_photos
    ws = np.array([core_width(digits.to_mnist_28(p)) for p in photos])
    assert np.percentile(ws, 10) >= THIN and np.median(ws) == pytest.approx(STROKE, abs=0.5)


def test_live_normalizer_thickens_the_same_way(pen_photos):
    """The fused normalizer of `edgecnn live` (one compiled call for all candidates)."""
    from edgecnn.live_detect import DetectConfig, DigitDetector

    class Record:
        class_names = [str(i) for i in range(10)]

        def predict(self, batch):
            self.batch = np.array(batch)
            return np.full((len(batch), 10), 0.1, np.float32)
    photos, _ = pen_photos
    clf = Record()
    det = DigitDetector(clf, DetectConfig(min_confidence=0))
    ws = []
    for p in photos[:60]:
        det.process(cv2.cvtColor(p, cv2.COLOR_GRAY2BGR))
        ws += [core_width(f) for f in clf.batch if f.max() > 0]
    assert len(ws) >= 60 and np.percentile(ws, 10) >= THIN and np.median(ws) == pytest.approx(STROKE, abs=0.5)


@pytest.fixture(scope="module")
def lenet(request, tmp_path_factory, mnist_dir):
    """The test suite's lenet5 (2 epochs), as test_live_cli trains and caches it."""
    import edgecnn
    from livevideo import trained_model
    cache = getattr(request.config, "cache", None)
    where = cache.mkdir("edgecnn-live-model") if cache is not None else tmp_path_factory.mktemp("live-model")
    return edgecnn.load(trained_model(where, mnist_dir))


def test_a_trained_model_reads_thin_pen_digits_through_predict(pen_photos, lenet):
    """`edgecnn predict`'s preprocessing (edgecnn.digits): 85.5 % right without thickening."""
    photos, labels = pen_photos
    batch = np.stack([digits.to_mnist_28(p) for p in photos])
    acc = float((lenet.predict(batch).argmax(axis=1) == labels).mean())
    assert acc >= 0.95, acc


def test_a_trained_model_reads_thin_pen_digits_through_live(pen_photos, lenet):
    """`edgecnn live`'s detector, one digit a photo: found once, with the right label (98.5 % here;
    87.5 % without thickening)."""
    from edgecnn.live_detect import DetectConfig, DigitDetector
    photos, labels = pen_photos
    det = DigitDetector(lenet, DetectConfig(min_confidence=0))
    right = 0
    for p, label in zip(photos, labels):
        found = det.process(cv2.cvtColor(p, cv2.COLOR_GRAY2BGR))
        right += len(found) == 1 and int(found[0].label) == int(label)
    assert right >= 0.95 * len(photos), right
