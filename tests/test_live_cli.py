"""``edgecnn live`` end to end, without a camera: a synthetic video of real MNIST test digits on an unevenly
lit, noisy page (tests/livevideo.py), run headless through the command; plus error paths, recording,
frame limits and Ctrl-C. The accuracy test needs a trained model (trained through the library once and
cached, see livevideo.trained_model)."""
import _thread
import json
import os
import subprocess
import sys
import threading
import time

import pytest

import cv2  # a dependency: a broken install must fail, not skip

import livevideo  # noqa: E402
from conftest import default_sigint  # noqa: E402

ENV = dict(os.environ, OPENCV_LOG_LEVEL="ERROR")
ENV.pop("DISPLAY", None)  # headless by default here; the window path is test_live_gui.py


def live(*args, timeout=600):
    t = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "edgecnn", "live", *map(str, args)], capture_output=True,
                       text=True, timeout=timeout, env=ENV)
    return r, time.monotonic() - t


@pytest.fixture(scope="module")
def model(request, mnist_dir, tmp_path_factory):
    cache = getattr(request.config, "cache", None)  # None under -p no:cacheprovider: train into tmp
    where = cache.mkdir("edgecnn-live-model") if cache is not None else tmp_path_factory.mktemp("live-model")
    return livevideo.trained_model(where, mnist_dir)


@pytest.fixture(scope="module")
def untrained(tmp_path_factory):
    return livevideo.untrained_model(tmp_path_factory.mktemp("m") / "untrained.ecnn")


@pytest.fixture(scope="module")
def video(tmp_path_factory, mnist_dir):
    """60 frames, 6 digits each (30 scenes of 2 frames: 180 distinct MNIST test digits, half moving)."""
    frames, truth = livevideo.make_frames(mnist_dir, n_frames=60, scene_len=2, seed=1)
    path = tmp_path_factory.mktemp("video") / "digits.mp4"
    livevideo.write_video(path, frames)
    return path, truth


@pytest.fixture(scope="module")
def folder(tmp_path_factory, mnist_dir):
    frames, truth = livevideo.make_frames(mnist_dir, n_frames=6, scene_len=3, seed=2)
    path = tmp_path_factory.mktemp("frames")
    livevideo.write_folder(path, frames)
    return path, truth


def read_jsonl(path):
    return [json.loads(line) for line in open(path)]


@pytest.mark.slow
def test_digits_in_a_video_are_found_and_nothing_else(video, model, tmp_path):
    path, truth = video
    out, summ = tmp_path / "out.jsonl", tmp_path / "summary.json"
    r, _ = live(path, "--headless", "--model", model, "--output", out, "--summary-json", summ)
    assert r.returncode == 0, r.stderr
    recs = read_jsonl(out)
    assert [x["frame"] for x in recs] == list(range(len(truth)))  # a file is read losslessly
    for x in recs:  # the exact per-frame schema
        assert set(x) == {"frame", "time_ms", "latency_ms", "detections"}
        assert set(x["latency_ms"]) >= {"capture", "preprocess", "inference", "draw"}
        for d in x["detections"]:
            assert set(d) == {"box", "label", "confidence"}
            assert len(d["box"]) == 4 and all(isinstance(v, int) for v in d["box"])
            assert isinstance(d["label"], int) and 0.5 <= d["confidence"] <= 1.0
    found, total, stray, wrong = livevideo.score(recs, truth)
    print(f"found {found}/{total} = {found / total:.2%}; misses: {wrong}")
    assert found >= 0.97 * total, f"{found}/{total} digits found with the right label; misses: {wrong[:10]}"
    assert stray == [], f"detections on blank page: {stray}"
    s = json.load(open(summ))
    assert s["frames"] == len(truth) and s["end"] == "end of source" and s["ok"]
    assert s["warmup_s"] > 0 and set(s["latency_ms"]["total"]) == {"p50", "p95", "p99", "max"}
    assert "FPS" in r.stderr and "p95" in r.stderr and "warm-up" in r.stderr


def test_missing_camera_fails_fast_with_a_message(untrained):
    r, took = live("7", "--headless", "--model", untrained)
    assert r.returncode != 0
    assert "camera 7" in r.stderr and "backend" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    assert took < 5.0, f"took {took:.1f} s (process start included)"


def test_missing_file_and_model_fail_with_messages(tmp_path, untrained, folder):
    r, _ = live(tmp_path / "nope.mp4", "--headless", "--model", untrained)
    assert r.returncode != 0 and "nope.mp4" in r.stderr and "Traceback" not in r.stderr
    r, _ = live(folder[0], "--headless", "--model", tmp_path / "none.ecnn")
    assert r.returncode != 0 and "none.ecnn" in r.stderr and "not found" in r.stderr
    bad = tmp_path / "bad.ecnn"
    bad.write_bytes(b"junk")
    r, _ = live(folder[0], "--headless", "--model", bad)
    assert r.returncode != 0 and "bad.ecnn" in r.stderr and "Traceback" not in r.stderr
    r, _ = live(folder[0], "--headless", "--model", untrained, "--view", "nonsense")
    assert r.returncode == 2 and "view" in r.stderr
    r, _ = live(folder[0], "--window", "--model", untrained)  # a window was asked for, there is no display
    assert r.returncode == 2 and "--headless" in r.stderr and "DISPLAY" in r.stderr


def test_default_model_is_what_train_saves():
    from edgecnn.live import default_model_path
    from edgecnn_cli.train import DEFAULT_OUTPUT
    assert default_model_path() == DEFAULT_OUTPUT


def test_max_frames_and_record(folder, untrained, tmp_path):
    path, truth = folder
    rec, out = tmp_path / "annotated.mp4", tmp_path / "o.jsonl"
    # no --headless and no DISPLAY: headless is chosen automatically, and said so
    r, _ = live(path, "--model", untrained, "--min-confidence", "0", "--max-frames", 4,
                "--record", rec, "--output", out)
    assert r.returncode == 0, r.stderr
    assert "headless (no display" in r.stderr
    assert len(read_jsonl(out)) == 4 and "max frames (4)" in r.stderr
    cap = cv2.VideoCapture(str(rec))
    frames = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        frames.append(f)
    assert len(frames) == 4 and frames[0].shape == (480, 640, 3)
    # the boxes are drawn (0, 200, 0) around each digit of the truth
    f = frames[0].astype(int)
    for o in truth[0]:
        x, y, w, h = o["box"]
        edge = f[max(y - 2, 0):y + 1, x:x + w]
        assert ((edge[..., 1] > 150) & (edge[..., 0] < 90) & (edge[..., 2] < 90)).mean() > 0.3, o


class Endless:
    """A live in-process source that never ends (for the Ctrl-C test)."""

    def __init__(self, frame):
        from edgecnn.live_sources import FrameSource
        self.__class__ = type("EndlessSource", (FrameSource,), {
            "live": True, "backend": "test", "open": lambda s: None,
            "read": lambda s: (time.sleep(0.005), frame)[1],
            "release": lambda s: setattr(s, "released", True)})
        FrameSource.__init__(self, "endless")
        self.released = False


def test_ctrl_c_releases_the_source_within_1_s(untrained, folder, sigint_raises):
    import edgecnn
    from edgecnn.live import LiveOptions, run
    frame = cv2.imread(str(sorted(folder[0].iterdir())[0]))
    src = Endless(frame)
    t_int = {}

    def interrupt():
        time.sleep(0.5)
        t_int["t"] = time.monotonic()
        _thread.interrupt_main()

    def log(msg):  # Ctrl-C half a second into the frame loop
        if "kernels compiled" in msg:
            threading.Thread(target=interrupt, daemon=True).start()
    s = run(LiveOptions(source=src, headless=True), edgecnn.load(untrained), log=log)
    took = time.monotonic() - t_int["t"]
    assert s["end"] == "interrupted" and s["released"] and src.released
    assert s["frames"] > 0
    assert took < 1.0, f"{took:.2f} s from Ctrl-C to return"


def test_sigint_to_the_command_ends_it_with_a_summary(folder, untrained, tmp_path):
    # a long folder (the same frame many times) so that the run is still going when SIGINT arrives
    big = tmp_path / "many"
    big.mkdir()
    first = sorted(folder[0].iterdir())[0]
    for i in range(3000):
        os.symlink(first, big / f"f{i:05d}.png")
    p = subprocess.Popen([sys.executable, "-m", "edgecnn", "live", str(big), "--headless", "--model",
                          str(untrained)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                         env=ENV, preexec_fn=default_sigint)
    lines = []
    for line in p.stderr:
        lines.append(line)
        if "kernels compiled" in line:
            break
    time.sleep(1.0)
    t = time.monotonic()
    p.send_signal(2)
    _, rest = p.communicate(timeout=30)
    took = time.monotonic() - t
    err = "".join(lines) + rest
    assert "ended: interrupted" in err, err
    assert "Traceback" not in err
    assert took < 1.5, f"{took:.2f} s from SIGINT to exit (interpreter shutdown included)"


def test_ctrl_c_during_warm_up_releases_the_source_and_exits_130(folder, untrained, monkeypatch):
    from click.testing import CliRunner

    from edgecnn import live_detect, live_sources
    from edgecnn_cli.main import main
    released = []
    real_release = live_sources.FrameSource.release

    def release(self):
        released.append(self.describe())
        return real_release(self)

    def interrupted(self, shape):
        raise KeyboardInterrupt
    monkeypatch.setattr(live_sources.FrameSource, "release", release)
    monkeypatch.setattr(live_detect.DigitDetector, "warmup", interrupted)
    r = CliRunner().invoke(main, ["live", str(folder[0]), "--headless", "--model", str(untrained)])
    assert r.exit_code == 130, r.output
    assert "interrupted before the first frame; the source was released" in r.output
    assert "Aborted" not in r.output and "Traceback" not in r.output
    assert released


def test_live_modules_do_not_import_cv2_at_import():
    code = ("import sys, edgecnn.live, edgecnn.live_detect, edgecnn.live_sources, edgecnn.live_overlay; "
            "print('cv2' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.stdout.strip() == "False", r.stdout + r.stderr
