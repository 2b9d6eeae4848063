"""Frame sources and the capture thread of ``edgecnn live``: error paths, reconnect/backoff, newest-frame
semantics, lossless files, prompt stop. No camera needed."""
import threading
import time

import numpy as np
import pytest

import cv2  # a dependency: a broken install must fail, not skip

from edgecnn.live_sources import (Capture, CameraSource, FrameSource, ImageFolderSource,  # noqa: E402
                                  SourceError, VideoFileSource, open_source)


def test_nonexistent_path_fails_at_once_naming_it(tmp_path):
    missing = tmp_path / "nope.mp4"
    t = time.monotonic()
    with pytest.raises(SourceError, match="nope.mp4"):
        open_source(str(missing))
    assert time.monotonic() - t < 0.5


def test_missing_camera_fails_within_5_s_naming_source_and_backend():
    src = open_source("7")
    assert isinstance(src, CameraSource)
    t = time.monotonic()
    with pytest.raises(SourceError) as e:
        src.open()
    assert time.monotonic() - t < 5.0
    msg = str(e.value)
    assert "camera 7" in msg and "backend" in msg, msg


def test_hanging_backend_is_abandoned_in_time():
    class Hangs(CameraSource):
        def _open_capture(self):
            time.sleep(3)
            raise AssertionError("should have been abandoned")
    src = Hangs(3, timeout=0.5)
    t = time.monotonic()
    with pytest.raises(SourceError, match="no answer within 0.5 s"):
        src.open()
    assert time.monotonic() - t < 1.0


def test_unreadable_video_file_fails_naming_it(tmp_path):
    bad = tmp_path / "garbage.mp4"
    bad.write_bytes(b"not a video at all" * 10)
    src = open_source(str(bad))
    assert isinstance(src, VideoFileSource)
    with pytest.raises(SourceError, match="garbage.mp4"):
        src.open()


def test_empty_folder_fails_and_folder_reads_in_name_order(tmp_path):
    with pytest.raises(SourceError, match="no images"):
        open_source(str(tmp_path)).open()
    for i in (2, 0, 1):
        cv2.imwrite(str(tmp_path / f"f{i}.png"), np.full((8, 8, 3), 10 * i, np.uint8))
    (tmp_path / "notes.txt").write_text("ignored")
    src = open_source(str(tmp_path))
    assert isinstance(src, ImageFolderSource)
    src.open()
    got = []
    while (f := src.read()) is not None:
        got.append(int(f[0, 0, 0]))
    assert got == [0, 10, 20] and src.finished


def test_stream_urls_are_streams():
    assert open_source("rtsp://127.0.0.1:9/x").live


def test_video_file_is_read_losslessly_in_order(tmp_path):
    path = str(tmp_path / "v.avi")
    vw = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"MJPG"), 30, (32, 24))
    for i in range(12):
        vw.write(np.full((24, 32, 3), 20 * i, np.uint8))
    vw.release()
    src = open_source(path)
    src.open()
    cap = Capture(src).start()
    got = []
    while (item := cap.get(timeout=2)) is not None:
        time.sleep(0.005)  # a slow consumer must not lose frames of a file
        got.append((item[0], int(item[1].mean() + 0.5)))
    assert [g[0] for g in got] == list(range(12))
    assert all(abs(v - 20 * i) <= 3 for i, v in got)
    assert cap.dropped == 0 and cap.ended and cap.error is None
    assert cap.stop()


class FakeLive(FrameSource):
    """A live source scripted by a list: a frame value, None (failed read); reopen fails while
    ``dead`` is set. Records the times of open() calls."""
    live = True
    backend = "fake"

    def __init__(self, script, dead_opens=0, period=0.0):
        super().__init__("fake camera")
        self.script = list(script)
        self.dead_opens = dead_opens
        self.period = period
        self.opens = []
        self.released = 0

    def open(self):
        self.opens.append(time.monotonic())
        if self.dead_opens > 0:
            self.dead_opens -= 1
            raise SourceError("cannot open fake camera (backend fake)")

    def read(self):
        if self.period:
            time.sleep(self.period)
        if not self.script:
            time.sleep(0.01)
            return None
        v = self.script.pop(0)
        return None if v is None else np.full((4, 4), v, np.uint8)

    def release(self):
        self.released += 1


def test_reconnects_with_backoff_then_gives_up_cleanly():
    src = FakeLive([1, 2, None, None, None], dead_opens=99)
    logs = []
    cap = Capture(src, reconnects=3, failures=3, backoff=0.05, max_backoff=0.15, log=logs.append).start()
    got = []
    t = time.monotonic()
    while (item := cap.get(timeout=5)) is not None:
        got.append(int(item[1][0, 0]))
    assert got[-1] == 2 and len(got) + cap.dropped == 2  # live: frame 1 may be replaced by 2 unseen
    assert cap.ended and cap.reconnect_count == 3
    assert "gave up after 3 reconnects" in cap.error and "fake camera" in cap.error
    gaps = np.diff([t] + src.opens)
    assert len(src.opens) == 3
    # waits of 0.05, 0.10, 0.15 s (doubling, capped) before the attempts
    assert gaps[1] >= 0.09 and gaps[2] >= 0.14, gaps
    assert time.monotonic() - t < 2.0
    assert sum("reconnect" in m for m in logs) == 3
    assert cap.stop()


def test_reconnect_recovers_and_frames_continue():
    src = FakeLive([1, None, None, None, 5, 6], dead_opens=1)
    cap = Capture(src, reconnects=4, failures=3, backoff=0.02, log=lambda m: None).start()
    got = []
    deadline = time.monotonic() + 5
    while (not got or got[-1] != 6) and time.monotonic() < deadline:
        item = cap.get(timeout=0.5)
        if item is not None:
            got.append(int(item[1][0, 0]))
    assert got[-1] == 6 and set(got) <= {1, 5, 6} and len(got) + cap.dropped == 3
    assert cap.reconnect_count == 2 and cap.error is None
    assert cap.stop()


def test_live_source_keeps_only_the_newest_frame_and_counts_drops():
    src = FakeLive(list(range(1, 41)), period=0.002)
    cap = Capture(src).start()
    seen = []
    while True:
        item = cap.get(timeout=0.3)
        if item is None:
            break
        seen.append(item[0])
        time.sleep(0.02)  # a slow consumer
    assert seen == sorted(seen)
    assert seen[-1] == 39 or cap.ended
    assert len(seen) < 40 and cap.dropped > 0
    assert len(seen) + cap.dropped == cap.read_count
    assert cap.stop()


def test_stop_is_prompt_and_releases_the_source():
    src = FakeLive([], period=0.05)  # reads keep failing slowly, reconnect waits pending
    cap = Capture(src, reconnects=100, failures=1, backoff=5.0, log=lambda m: None).start()
    time.sleep(0.2)
    t = time.monotonic()
    assert cap.stop(timeout=1.0)
    assert time.monotonic() - t < 1.0
    assert src.released >= 1


def test_a_crashing_backend_ends_the_capture_with_a_message():
    class Boom(FakeLive):
        def read(self):
            raise RuntimeError("driver exploded")
    cap = Capture(Boom([])).start()
    assert cap.get(timeout=2) is None
    assert cap.ended and "driver exploded" in cap.error


def test_capture_thread_runs_no_kernels():
    """Only the capture thread touches the source; the caller's thread stays free for kernels."""
    threads = []

    class Spy(FakeLive):
        def read(self):
            threads.append(threading.current_thread().name)
            return super().read()
    cap = Capture(Spy([1, 2, 3])).start()
    while cap.get(timeout=0.3) is not None:
        pass
    cap.stop()
    assert threads and set(threads) == {"edgecnn-capture"}
