"""The window path of ``edgecnn live`` under a virtual X server (Debian's xvfb): the window shows boxes,
the HUD and the side filter view; s saves a snapshot; q quits within 1 s. Screenshots come from
``xwd`` (read here) or ImageMagick's ``import``; keys from ``xdotool`` (the key part skips without it)."""
import os
import select
import shutil
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import cv2  # a dependency: a broken install must fail, not skip

import livevideo  # noqa: E402
from conftest import default_sigint  # noqa: E402

pytestmark = pytest.mark.gui

if shutil.which("Xvfb") is None:
    pytest.skip("Xvfb is not installed (Debian: apt-get install xvfb); the window path needs a display",
                allow_module_level=True)
if shutil.which("xwd") is None and shutil.which("import") is None:
    pytest.skip("no screenshot tool (xwd from x11-apps, or ImageMagick's import)", allow_module_level=True)


@pytest.fixture(scope="module")
def display():
    # Xvfb picks a free display itself and writes its number to the pipe (-displayfd): choosing one here
    # by looking for a free socket raced with a test suite running beside this one, and both then
    # drew their windows on the same screen
    rfd, wfd = os.pipe()
    proc = subprocess.Popen(["Xvfb", "-displayfd", str(wfd), "-screen", "0", "1600x900x24",
                             "-nolisten", "tcp"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, pass_fds=(wfd,))
    os.close(wfd)
    number = b""
    deadline = time.monotonic() + 10
    while not number.endswith(b"\n") and time.monotonic() < deadline and proc.poll() is None:
        ready, _, _ = select.select([rfd], [], [], 0.1)
        if ready:
            chunk = os.read(rfd, 16)
            if not chunk:
                break
            number += chunk
    os.close(rfd)
    if not number.strip().isdigit():
        proc.kill()
        pytest.skip("Xvfb did not start")
    yield f":{int(number)}"
    proc.terminate()
    proc.wait(5)


def read_xwd(raw):
    """BGR image from an XWD dump (ZPixmap, 24/32 bits per pixel, as Xvfb's root window gives)."""
    h = np.frombuffer(raw[:100], ">u4")
    header_size, fmt, bpp, bpl, ncolors = int(h[0]), int(h[2]), int(h[11]), int(h[12]), int(h[19])
    width, height, byte_order = int(h[4]), int(h[5]), int(h[7])
    rmask, gmask, bmask = int(h[14]), int(h[15]), int(h[16])
    if fmt != 2 or bpp not in (24, 32):
        raise ValueError(f"unsupported XWD: format {fmt}, {bpp} bits per pixel")
    start = header_size + 12 * ncolors
    rows = np.frombuffer(raw[start:start + bpl * height], np.uint8).reshape(height, bpl)
    px = rows[:, :width * (bpp // 8)].reshape(height, width, bpp // 8).astype(np.uint32)
    order = range(bpp // 8) if byte_order == 0 else range(bpp // 8 - 1, -1, -1)
    value = sum(px[..., i] << (8 * k) for k, i in enumerate(order))

    def channel(mask):
        shift = (mask & -mask).bit_length() - 1
        return ((value & mask) >> shift).astype(np.uint8)
    return np.dstack([channel(bmask), channel(gmask), channel(rmask)])


def screenshot(disp):
    env = dict(os.environ, DISPLAY=disp)
    if shutil.which("xwd"):
        raw = subprocess.run(["xwd", "-root", "-silent"], capture_output=True, env=env, timeout=20).stdout
        return read_xwd(raw) if raw else None
    raw = subprocess.run(["import", "-window", "root", "png:-"], capture_output=True, env=env,
                         timeout=20).stdout
    return cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_COLOR) if raw else None


def overlay_seen(img):
    """(green box pixels, HUD background pixels) in a BGR screenshot."""
    if img is None:
        return 0, 0
    b, g, r = (img[..., i].astype(int) for i in range(3))
    boxes = int(((g == 200) & (b == 0) & (r == 0)).sum())
    hud = int(((b == 40) & (g == 40) & (r == 40)).sum())
    return boxes, hud


def test_window_shows_the_overlay_and_keys_work(display, tmp_path, mnist_dir):
    frames, truth = livevideo.make_frames(mnist_dir, n_frames=1, seed=3)
    src = tmp_path / "frames"
    src.mkdir()
    cv2.imwrite(str(src / "a.png"), frames[0])
    for i in range(4000):  # a long run: the window must stay up while we look at it
        os.symlink(src / "a.png", src / f"f{i:05d}.png")
    model = livevideo.untrained_model(tmp_path / "untrained.ecnn")
    snaps = tmp_path / "snaps"
    snaps.mkdir()
    env = dict(os.environ, DISPLAY=display, QT_QPA_PLATFORM="xcb", OPENCV_LOG_LEVEL="ERROR")
    p = subprocess.Popen([sys.executable, "-m", "edgecnn", "live", str(src), "--window", "--model",
                          str(model), "--min-confidence", "0", "--view", "gradient_magnitude",
                          "--snapshot-dir", str(snaps)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env,
                         preexec_fn=default_sigint)
    lines = []  # (time, line) of stderr, read as it comes

    def reader():
        for line in p.stderr:
            lines.append((time.monotonic(), line))
    threading.Thread(target=reader, daemon=True).start()

    def err():
        return "".join(ln for _, ln in lines)
    try:
        deadline = time.monotonic() + 120
        seen = (0, 0)
        while time.monotonic() < deadline and p.poll() is None:
            seen = overlay_seen(screenshot(display))
            if seen[0] > 500 and seen[1] > 500:
                break
            time.sleep(0.5)
        assert p.poll() is None, (f"the run ended before the overlay was seen (last screenshot: box and HUD "
                                  f"pixels {seen}):\n{err()}")
        assert seen[0] > 500, f"no green boxes on screen: {seen}"
        assert seen[1] > 500, f"no HUD on screen: {seen}"
        img = screenshot(display)
        # the window holds the 640x480 frame and the 640x480 filter view side by side
        cols = np.nonzero(((img[..., 1] == 200) & (img[..., 0] == 0)).any(axis=0))[0]
        assert cols.max() - cols.min() > 300  # boxes spread over the frame

        if shutil.which("xdotool") is None:
            p.send_signal(2)
            p.wait(30)
            time.sleep(0.2)
            assert "ended: interrupted" in err()
            pytest.skip("xdotool is not installed: keys not tested (apt-get install xdotool)")
        xenv = dict(os.environ, DISPLAY=display)
        wid = subprocess.run(["xdotool", "search", "--name", "edgecnn live"], capture_output=True, text=True,
                             env=xenv).stdout.split()
        assert wid, "window not found by name"
        subprocess.run(["xdotool", "windowfocus", "--sync", wid[0]], env=xenv, timeout=10)
        subprocess.run(["xdotool", "key", "s"], env=xenv, timeout=10)
        deadline = time.monotonic() + 20
        while not list(snaps.glob("edgecnn-snapshot-*[0-9].png")) and time.monotonic() < deadline:
            time.sleep(0.1)
        shots = list(snaps.glob("edgecnn-snapshot-*[0-9].png"))
        assert len(shots) == 1, "s saved no snapshot"
        assert overlay_seen(cv2.imread(str(shots[0])))[0] > 500
        t = time.monotonic()
        subprocess.run(["xdotool", "key", "q"], env=xenv, timeout=10)
        p.wait(30)
        time.sleep(0.2)
        ended = [tt for tt, ln in lines if "ended: quit key" in ln]
        assert ended, err()
        # q is read once per frame, then the source is released and the window closed; interpreter
        # shutdown after the summary is not counted
        assert ended[0] - t < 1.0, f"{ended[0] - t:.2f} s from q to the summary"
        assert "windows closed in" in err()
        # the window is gone
        time.sleep(0.3)
        gone = subprocess.run(["xdotool", "search", "--name", "edgecnn live"], capture_output=True, text=True,
                              env=xenv).stdout.split()
        assert gone == []
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
