"""The per-frame pipeline of ``edgecnn live`` (edgecnn.live_detect / live_kernels / live_mnist), without a
camera or a trained model. References: OpenCV's connected components, the MNIST files themselves."""
import re

import numpy as np
import pytest

import cv2  # a dependency: a broken install must fail, not skip

from edgecnn import live_kernels as K  # noqa: E402
from edgecnn.live_detect import DetectConfig, DigitDetector  # noqa: E402
from edgecnn.live_mnist import to_mnist_28  # noqa: E402


class OneHot:
    """A stand-in classifier: always class ``k`` with probability ``p``; records the batches it saw."""
    class_names = [str(i) for i in range(10)]

    def __init__(self, k=3, p=0.9):
        self.k, self.p, self.batches = k, p, []

    def predict(self, batch):
        self.batches.append(np.array(batch))
        out = np.full((len(batch), 10), (1 - self.p) / 9, np.float32)
        out[:, self.k] = self.p
        return out


def page(h=240, w=320, seed=0, noise=4.0):
    """Light paper lit unevenly (240 at the top left, ~140 at the bottom right) with sensor noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    light = 240 - 100 * (0.6 * xx / w + 0.4 * yy / h)
    return light, rng.normal(0, noise, (h, w)).astype(np.float32)


def render(light, noise, alpha):
    return np.clip(light * (1 - 0.85 * alpha) + noise + 0.5, 0, 255).astype(np.uint8)


def runs_of_mask(mask):
    h, w = mask.shape
    gray = np.where(mask, 0, 200).astype(np.uint8)
    paper = np.full((-(-h // 16), -(-w // 16)), 200, np.float32)
    cap = w // 2 + 1
    starts = np.empty((h, cap), np.int32)
    ends = np.empty((h, cap), np.int32)
    counts = np.empty(h, np.int32)
    K.ink_runs_cpu(gray, paper, 16, 64, starts, ends, counts)
    return K.label_runs_cpu(starts, ends, counts)


@pytest.mark.parametrize("seed", range(12))
def test_run_labeling_matches_opencv_components(seed):
    rng = np.random.default_rng(seed)
    h, w = rng.integers(1, 60), rng.integers(1, 70)
    mask = rng.random((h, w)) < rng.uniform(0.05, 0.6)
    rrow, rx0, rx1, comp, stats = runs_of_mask(mask)
    n, _, ref, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    got = sorted((int(a), int(b), int(c - a), int(d - b), int(e)) for a, b, c, d, e in stats)
    want = sorted(tuple(int(v) for v in r) for r in ref[1:])
    assert got == want
    # every ink pixel is in exactly one run
    painted = np.zeros_like(mask)
    for y, a, b in zip(rrow, rx0, rx1):
        assert not painted[y, a:b].any()
        painted[y, a:b] = True
    assert (painted == mask).all()


def test_blank_unevenly_lit_page_has_no_ink():
    light, noise = page()
    gray = render(light, noise, np.zeros_like(light))
    det = DigitDetector(OneHot())
    paper = det.paper(gray)
    rrow = det.runs(gray, paper)[0]
    assert len(rrow) == 0
    # a single global threshold cannot do this: Otsu on the raw page marks the dark corner as ink
    t, binary = cv2.threshold(gray, 0, 255, cv2.THRESH_BINARY_INV | cv2.THRESH_OTSU)
    assert binary.mean() > 20
    assert det.process(gray) == []


def test_paper_estimate_follows_the_light_under_ink():
    light, noise = page(noise=0.0)
    alpha = np.zeros_like(light)
    alpha[100:140, 100:104] = 1.0  # a stroke
    gray = render(light, noise, alpha)
    det = DigitDetector(OneHot())
    ink = det.ink_image(gray, det.paper(gray))
    assert ink[100:140, 100:104].min() > 150                    # the stroke is strong ink ...
    off = np.ones_like(ink, bool)
    off[96:144, 96:108] = False
    # ... the paper, lit 240 or 140, is not: it stays far below the threshold (64). Not 0: the 3x3 max over
    # the tile grid (which lets a stroke-filled tile borrow its neighbours' paper) overestimates the
    # paper by about one tile's worth of the lighting gradient, measured 16 at the dark corner.
    assert ink[off].max() <= 20


def _digit_alpha(light, img, y, x, scale):
    s = int(round(28 * scale))
    d = cv2.resize(img, (s, s), interpolation=cv2.INTER_LINEAR).astype(np.float32) / 255
    alpha = np.zeros_like(light)
    alpha[y:y + s, x:x + s] = d
    return alpha


def aligned_corr(a, b):
    """Correlation of two 28x28 digits at the best whole-pixel shift (-1..1 each way): MNIST centres by
    whole pixels, so a resampled copy may sit one pixel off and still be the same digit."""
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    best = -1.0
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            s = np.roll(np.roll(a, dy, 0), dx, 1)
            best = max(best, np.corrcoef(s.ravel(), b.ravel())[0, 1])
    return best


def test_mnist_digits_come_back_as_themselves(mnist_dir):
    """A real MNIST digit printed on the page and cut out again matches the original 28x28 image."""
    import livevideo
    images, labels = livevideo.load_test_digits(mnist_dir)
    light, noise = page(seed=1)
    clf = OneHot()
    det = DigitDetector(clf, DetectConfig(min_confidence=0))
    corr = []
    for i in range(0, 40):
        alpha = _digit_alpha(light, images[i], 60 + (i % 3) * 20, 40 + (i % 5) * 30, 1.6 + 0.1 * (i % 7))
        dets = det.process(render(light, noise, alpha))
        assert len(dets) == 1, f"digit {i} ({labels[i]}): {len(dets)} detections"
        corr.append(aligned_corr(clf.batches[-1][0], images[i]))
    # measured: median 0.93, lowest 0.70 (a 5 printed at 1.6x, whose thin bar tip softens in the
    # round trip 28 -> 45 px -> 20 px)
    assert np.median(corr) > 0.9, np.round(corr, 2)
    assert min(corr) > 0.65, np.round(corr, 2)


def test_fallback_normalization_agrees_with_edgecnn_digits(mnist_dir):
    """live_mnist's fused kernel and edgecnn.digits.to_mnist_28 (used by `edgecnn predict`) give the same
    28x28 digit for the same clean crop, and both reproduce MNIST."""
    import edgecnn.digits as digits
    import livevideo
    images, _ = livevideo.load_test_digits(mnist_dir)
    for i in range(25):
        big = cv2.resize(images[i], (56 + i, 56 + i), interpolation=cv2.INTER_LINEAR)
        ys, xs = np.nonzero(big)
        crop = np.ascontiguousarray(big[ys.min():ys.max() + 1, xs.min():xs.max() + 1])
        ours = to_mnist_28(crop)
        theirs = digits.to_mnist_28(crop, invert=False)
        # measured over these 25: lowest 0.924 between the two, 0.917 ours vs MNIST (digits' own: 0.894);
        # they differ by whole-pixel centring and digits' contrast stretch / faint-pixel cleanup
        assert aligned_corr(ours, theirs) > 0.9
        assert aligned_corr(ours, images[i]) > 0.9


def test_mnist_layout_of_the_fallback():
    crop = np.zeros((50, 20), np.uint8)
    crop[:, 5:15] = 255
    out = to_mnist_28(crop)
    ys, xs = np.nonzero(out)
    assert ys.max() - ys.min() + 1 == 20                      # longest side scaled to 20
    assert xs.max() - xs.min() + 1 == 4                       # aspect kept: ink 50 x 10 -> 20 x 4
    m = out.astype(np.float64)
    cy = (m.sum(1) @ np.arange(28)) / m.sum()
    cx = (m.sum(0) @ np.arange(28)) / m.sum()
    assert abs(cy - 14) <= 0.5 and abs(cx - 14) <= 0.5        # centre of mass at (14, 14)
    assert not to_mnist_28(np.zeros((5, 5), np.uint8)).any()
    with pytest.raises(ValueError, match="crop"):
        to_mnist_28(np.zeros((0, 4), np.uint8))


def test_broken_strokes_merge_and_neighbours_do_not():
    light, noise = page(seed=2)
    alpha = np.zeros_like(light)
    # a "5" in two strokes: a top bar, then a gap of 4 px, then the body
    alpha[50:56, 60:90] = 1
    alpha[60:100, 60:66] = 1
    alpha[76:82, 60:88] = 1
    alpha[82:100, 84:90] = 1
    alpha[96:102, 60:90] = 1
    # two digits side by side, 6 px apart ("1" "1")
    alpha[50:100, 200:206] = 1
    alpha[50:100, 212:218] = 1
    clf = OneHot()
    dets = DigitDetector(clf, DetectConfig(min_confidence=0)).process(render(light, noise, alpha))
    boxes = sorted(d.box for d in dets)
    assert len(boxes) == 3, boxes
    assert boxes[0] == (60, 50, 30, 52)
    assert [b[0] for b in boxes[1:]] == [200, 212]


def test_blobs_specks_and_cut_digits_are_rejected():
    light, noise = page(seed=3)
    alpha = np.zeros_like(light)
    alpha[40:90, 40:90] = 1          # a solid square: not a digit
    alpha[150:152, 150:152] = 1      # a speck
    alpha[0:40, 250:256] = 1         # a stroke cut by the top edge
    alpha[120:128, 20:120] = 1       # a long horizontal bar (height / width too small)
    dets = DigitDetector(OneHot(), DetectConfig(min_confidence=0)).process(render(light, noise, alpha))
    assert dets == []


def test_low_confidence_is_rejected_and_labels_are_ints():
    light, noise = page(seed=4)
    alpha = np.zeros_like(light)
    alpha[60:110, 100:106] = 1
    gray = render(light, noise, alpha)
    d = DigitDetector(OneHot(k=7, p=0.9), DetectConfig(min_confidence=0.5)).process(gray)
    assert [(x.label, round(x.confidence, 3)) for x in d] == [(7, 0.9)]
    assert d[0].to_json() == {"box": [100, 60, 6, 50], "label": 7, "confidence": 0.9}
    assert DigitDetector(OneHot(k=7, p=0.4), DetectConfig(min_confidence=0.5)).process(gray) == []


def test_otsu_mode_finds_the_same_digit():
    light, noise = page(seed=5)
    alpha = np.zeros_like(light)
    alpha[60:110, 100:106] = 1
    gray = render(light, noise, alpha)
    d = DigitDetector(OneHot(), DetectConfig(binarize="otsu", min_confidence=0)).process(gray)
    assert [x.box for x in d] == [(100, 60, 6, 50)]


def test_color_and_gray_frames_agree_and_bad_frames_fail_clearly():
    light, noise = page(seed=6)
    alpha = np.zeros_like(light)
    alpha[60:110, 100:106] = 1
    gray = render(light, noise, alpha)
    det = DigitDetector(OneHot(), DetectConfig(min_confidence=0))
    assert det.process(gray) == det.process(np.repeat(gray[:, :, None], 3, axis=2))
    with pytest.raises(ValueError, match="frame"):
        det.process(np.zeros((4, 4, 2), np.uint8))


@pytest.mark.parametrize("frame", [np.zeros((50, 50), np.float32), np.ones((50, 50, 3), np.float32),
                                   np.ones((50, 50, 3), np.uint16), [[1, 2]]])
def test_non_uint8_frames_fail_naming_dtype_and_shape(frame):
    """A float frame in [0, 1] used to become all black (no detections, no error)."""
    what = f"{frame.dtype} {frame.shape}" if isinstance(frame, np.ndarray) else "list"
    with pytest.raises(ValueError, match="frame must be uint8.*got " + re.escape(what)):
        DigitDetector(OneHot()).process(frame)


@pytest.mark.parametrize("shape", [(0, 0, 3), (0, 640, 3), (480, 0, 3), (0, 5, 4), (0, 7)])
def test_empty_frames_have_no_detections(shape):
    assert DigitDetector(OneHot()).process(np.zeros(shape, np.uint8)) == []


def test_read_only_frames_take_opencv_not_a_new_specialisation(monkeypatch):
    """Numba types a read-only array apart: handing one to the gray kernel compiled it mid-stream."""
    from edgecnn import _filter_kernels as K
    light, noise = page(seed=6)
    alpha = np.zeros_like(light)
    alpha[60:110, 100:106] = 1
    bgr = np.ascontiguousarray(np.repeat(render(light, noise, alpha)[:, :, None], 3, axis=2))
    det = DigitDetector(OneHot(), DetectConfig(min_confidence=0))
    kernel, seen = K.to_gray[True, False], []

    def spy(frame, out, nchunks):
        seen.append(frame.flags.writeable)
        return kernel(frame, out, nchunks)
    monkeypatch.setitem(K.to_gray, (True, False), spy)
    want = det.process(bgr)
    ro = bgr.copy()
    ro.flags.writeable = False
    assert det.process(ro) == want and seen == [True]
    assert det.gray(ro).tolist() == det.gray(bgr).tolist()


@pytest.mark.parametrize("field,value", [("binarize", "median"), ("min_confidence", 1.5), ("tile", 2),
                                         ("normalizer", "x"),
                                         ("threshold", 0)])
def test_config_validation_names_the_parameter(field, value):
    with pytest.raises(ValueError, match=field):
        DetectConfig(**{field: value}).validate()


def test_warmup_runs_the_classifier():
    clf = OneHot()
    det = DigitDetector(clf)
    det.warmup((120, 160, 3))
    assert len(clf.batches) == 1 and clf.batches[0].shape[1:] == (28, 28)


def test_digits_normalizer_path_finds_the_same_digit(mnist_dir):
    import livevideo
    images, _ = livevideo.load_test_digits(mnist_dir)
    light, noise = page(seed=7)
    gray = render(light, noise, _digit_alpha(light, images[3], 80, 120, 2.0))
    a, b = OneHot(), OneHot()
    da = DigitDetector(a, DetectConfig(min_confidence=0)).process(gray)
    db = DigitDetector(b, DetectConfig(min_confidence=0, normalizer="digits")).process(gray)
    assert [d.box for d in da] == [d.box for d in db] and len(da) == 1
    assert aligned_corr(a.batches[-1][0], b.batches[-1][0]) > 0.9
