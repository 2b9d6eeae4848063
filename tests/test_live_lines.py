"""Ruled and grid paper (edgecnn.live_lines): lines are cut out of the ink, digits written over them
are still found. References: masks whose line pixels are known by construction, and the real MNIST
test digits of tests/livevideo.py with the truth it records."""
import numpy as np
import pytest

import livevideo
from edgecnn import live_lines as L
from edgecnn.live_detect import DetectConfig, DigitDetector


def runs_of(mask):
    """Row runs of a boolean mask, written here independently of edgecnn's run kernels."""
    h, w = mask.shape
    cap = w // 2 + 1
    starts, ends, counts = np.zeros((h, cap), np.int32), np.zeros((h, cap), np.int32), np.zeros(h, np.int32)
    for y in range(h):
        edges = np.flatnonzero(np.diff(np.concatenate([[0], mask[y].astype(np.int8), [0]])))
        pairs = edges.reshape(-1, 2)
        counts[y] = len(pairs)
        starts[y, :len(pairs)], ends[y, :len(pairs)] = pairs[:, 0], pairs[:, 1]
    return starts, ends, counts


def line_map(mask, min_len=100, width=3):
    h, w = mask.shape
    out = np.full((h, w), 99, np.uint8)
    L.line_pixels_cpu(*runs_of(mask), h, w, min_len, min_len, width, out)
    return out


def test_a_line_goes_and_the_stroke_crossing_it_stays():
    m = np.zeros((120, 240), bool)
    m[60, :] = True            # a ruled line, 1 px
    m[30:90, 100:105] = True   # a stroke 5 px wide crossing it
    m[20, 20:80] = True        # a short thin dash: shorter than a line
    out = line_map(m)
    assert (out[~m] == 0).all()  # nothing but ink is ever marked
    line = np.zeros_like(m)
    line[60, :100] = line[60, 105:] = True
    assert (out[line] == L.HORIZONTAL).all()
    assert (out[30:90, 100:105] == 0).all()  # the crossing stroke keeps its pixels on the line too
    assert (out[20] == 0).all()


def test_tilted_lines_and_grid_crossings():
    h, w = 200, 300
    m = np.zeros((h, w), bool)
    xs = np.arange(w)
    ys = np.round(40 + np.tan(np.radians(8)) * xs).astype(int)  # paper turned 8 degrees
    m[ys, xs] = m[ys + 1, xs] = True
    m[:, 150:152] = True  # a vertical grid line, 2 px, crossing the tilted one
    out = line_map(m, min_len=120)
    assert (out[~m] == 0).all()
    assert (out[m] != 0).mean() > 0.99, f"{(out[m] == 0).sum()} line pixels left"
    crossing = m[:, 150:152] & (np.arange(h)[:, None] >= ys[150] - 1) & (np.arange(h)[:, None] <= ys[151] + 2)
    assert (out[:, 150:152][crossing] != 0).all()


def test_a_page_without_long_ink_is_left_alone():
    m = np.zeros((100, 100), bool)
    m[10:90, 50:53] = True  # a tall thin stroke, but shorter than min_len
    m[50, 10:90] = True
    assert (line_map(m, min_len=95) == 0).all()


def test_line_settings_are_checked():
    with pytest.raises(ValueError, match="line_length"):
        DetectConfig(line_length=1.5).validate()
    with pytest.raises(ValueError, match="line_width"):
        DetectConfig(line_width=0).validate()


@pytest.fixture(scope="module")
def model(request, mnist_dir, tmp_path_factory):
    cache = getattr(request.config, "cache", None)  # the same cached model as test_live_cli's
    where = cache.mkdir("edgecnn-live-model") if cache is not None else tmp_path_factory.mktemp("live-model")
    from edgecnn import io
    return io.load(livevideo.trained_model(where, mnist_dir))


def paper_lines(frames, spacing, darkness, grid):
    """The frames printed on ruled (or squared) paper: lines ``darkness`` darker than the page,
    under the ink as well (the ink is multiplied in)."""
    h, w = frames[0].shape[:2]
    lines = np.zeros((h, w), np.float32)
    lines[7::spacing] = 1
    if grid:
        lines[:, 7::spacing] = 1
    shade = (1 - darkness * lines)[:, :, None]
    return [np.clip(f * shade + 0.5, 0, 255).astype(np.uint8) for f in frames]


@pytest.mark.slow
@pytest.mark.parametrize("grid", [False, True], ids=["ruled", "grid"])
def test_digits_on_lined_paper_are_found(model, mnist_dir, grid):
    frames, truth = livevideo.make_frames(mnist_dir, n_frames=60, scene_len=2, seed=1)
    lined = paper_lines(frames, 32, 0.35, grid)
    scores = {}
    for name, cfg in (("lines cut", DetectConfig()), ("lines kept", DetectConfig(line_length=0))):
        det = DigitDetector(model, cfg)
        recs = [{"frame": i, "detections": [d.to_json() for d in det.process(f)]} for i, f in enumerate(lined)]
        scores[name] = livevideo.score(recs, truth)
    found, total, stray, wrong = scores["lines cut"]
    print(f"lines cut: {found}/{total}; lines kept: {scores['lines kept'][0]}/{total}")
    # ruled: the bar of the plain-page live test. Grid paper loses more strokes to its lines: with this
    # test's small model it measured 349/360 (96.9 %) when written, so its bar is 95 % (README: a miss)
    bar = 0.95 if grid else 0.97
    assert found >= bar * total, f"{found}/{total} digits found with the right label; misses: {wrong[:10]}"
    assert stray == [], f"detections off the digits: {stray}"
    assert scores["lines kept"][0] < 0.5 * total  # the lines really join the digits without the cut
