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


def test_long_means_off_the_frame_or_most_of_it():
    """A line runs off the frame and spans min_len, or spans FREE_LINE of the frame (paper smaller
    than the view); a digit's stroke, which ends on the paper, is shorter than that."""
    h, w = 100, 200
    m = np.zeros((h, w), bool)
    m[20, 0:70] = True       # off the left edge, 70 >= min_len 60: a line
    m[50, 30:170] = True     # 140 px, ends 30 px from either edge, under 0.75 * 200: not a line
    m[80, 15:185] = True     # 170 px >= 0.75 * 200 anywhere: a line
    m[25:88, 100:102] = True  # 63 px >= 60 but ends 12 px short of the edges, under 0.75 * 100: a stroke
    out = line_map(m, min_len=60)
    assert (out[20, 0:70] == L.HORIZONTAL).all()
    assert (out[50] == 0).all()
    assert (out[80, 15:100] == L.HORIZONTAL).all() and (out[80, 102:185] == L.HORIZONTAL).all()
    assert (out[25:80, 100:102] == 0).all() and (out[81:88, 100:102] == 0).all()
    assert (out[~m] == 0).all()


def test_warmup_compiles_the_line_cut_too(monkeypatch):
    """`edgecnn live` compiles its kernels on a dummy frame before the first read; a first page with
    lines must not stop the stream for the cut's compile."""
    calls = []
    real = L.line_pixels_cpu
    monkeypatch.setattr(L, "line_pixels_cpu", lambda *a: calls.append(1) or real(*a))

    class Uniform:
        class_names = [str(i) for i in range(10)]

        def predict(self, batch):
            calls.append("classified")
            return np.full((len(batch), 10), 0.1, np.float32)
    DigitDetector(Uniform()).warmup((480, 640, 3))
    assert calls.count(1) == 1 and "classified" in calls, calls


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


def paper_lines(frames, spacing, darkness, grid, angle=0.0, width=1):
    """The frames printed on ruled (or squared) paper turned by ``angle`` degrees: anti-aliased lines
    ``width`` px wide (drawn by OpenCV), ``darkness`` darker than the page, under the ink as well."""
    import cv2
    h, w = frames[0].shape[:2]
    m = np.zeros((h, w), np.uint8)
    t = np.tan(np.radians(angle))
    for y0 in range(7 - w, h + w, spacing):
        cv2.line(m, (0, y0), (w - 1, int(round(y0 + t * (w - 1)))), 255, width, cv2.LINE_AA)
        if grid:
            cv2.line(m, (y0, 0), (int(round(y0 - t * (h - 1))), h - 1), 255, width, cv2.LINE_AA)
    shade = (1 - darkness * m.astype(np.float32) / 255)[:, :, None]
    return [np.clip(f * shade + 0.5, 0, 255).astype(np.uint8) for f in frames]


@pytest.mark.slow
@pytest.mark.parametrize("grid, angle, width", [(False, 0, 1), (True, 0, 1), (False, 5, 2), (True, 3, 1)],
                         ids=["ruled", "grid", "ruled-5deg-2px", "grid-3deg"])
def test_digits_on_lined_paper_are_found_as_on_plain_paper(model, mnist_dir, grid, angle, width):
    """The reference is the same detector on the same frames without the lines: the lines may cost at
    most 2 % of the digits. The tests' small model reads 349 of these 360 on plain paper; when this
    was written, with the lines cut: ruled 351, grid 348, ruled 5 degrees 2 px 348, grid 3 degrees
    345; with the lines kept, none."""
    frames, truth = livevideo.make_frames(mnist_dir, n_frames=60, scene_len=2, seed=1)
    lined = paper_lines(frames, 32, 0.35, grid, angle, width)
    scores = {}
    for name, cfg, fr in (("plain", DetectConfig(), frames), ("lines cut", DetectConfig(), lined),
                          ("lines kept", DetectConfig(line_length=0), lined)):
        det = DigitDetector(model, cfg)
        recs = [{"frame": i, "detections": [d.to_json() for d in det.process(f)]} for i, f in enumerate(fr)]
        scores[name] = livevideo.score(recs, truth)
    found, total, stray, wrong = scores["lines cut"]
    plain = scores["plain"][0]
    print(f"plain {plain}/{total}; lines cut {found}/{total}; lines kept {scores['lines kept'][0]}/{total}")
    assert found >= plain - 0.02 * total, f"{found}/{total} found on lined paper, {plain} on plain; misses: {wrong[:10]}"
    assert stray == [], f"detections off the digits: {stray}"
    assert scores["lines kept"][0] < 0.5 * total  # without the cut the lines really do join the digits


def test_the_command_line_cuts_lines_unless_told_to_keep_them(mnist_dir, tmp_path):
    """`edgecnn live --keep-lines` turns the cut off (for a thin straight stroke filling the picture)."""
    import json

    from test_live_cli import live
    frames, truth = livevideo.make_frames(mnist_dir, n_frames=3, scene_len=3, seed=2)
    livevideo.write_folder(tmp_path / "ruled", paper_lines(frames, 32, 0.35, grid=False))
    model = livevideo.untrained_model(tmp_path / "untrained.ecnn")  # boxes are counted, not labels
    counts = {}
    for flag in ("--cut-lines", "--keep-lines"):
        out = tmp_path / f"{flag}.jsonl"
        r, _ = live(tmp_path / "ruled", "--headless", "--model", model, "--min-confidence", "0", flag,
                    "--output", out)
        assert r.returncode == 0, r.stderr
        counts[flag] = sum(len(json.loads(line)["detections"]) for line in open(out))
    assert counts["--cut-lines"] == sum(len(t) for t in truth) and counts["--keep-lines"] == 0, counts
