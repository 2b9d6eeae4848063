"""Synthetic test videos for ``edgecnn live``: real MNIST test digits as dark ink on a light page.

The page is unevenly lit (a diagonal gradient plus a soft shadow, varying over time) and noisy; several
digits per frame sit at known positions, some of them moving. Reads the IDX files directly (independent
of edgecnn.data) and returns the ground truth per frame, so tests can score what ``edgecnn live`` finds.

    python tests/livevideo.py OUT.mp4 [--frames 60]     # also writes OUT.truth.json

Also: ``trained_model`` (lenet5 trained through the library, cached) and ``untrained_model``.
"""
import gzip
import hashlib
import json
import os
import pathlib

import numpy as np


def load_test_digits(mnist_dir):
    d = pathlib.Path(mnist_dir)

    def read(name, offset):
        p = d / name
        raw = gzip.open(p).read() if p.suffix == ".gz" else p.read_bytes()
        return np.frombuffer(raw, np.uint8, offset=offset)

    def pick(stem, offset):
        for name in (stem + ".gz", stem):
            if (d / name).exists():
                return read(name, offset)
        raise FileNotFoundError(f"{stem} not found in {d}")

    images = pick("t10k-images-idx3-ubyte", 16).reshape(-1, 28, 28)
    labels = pick("t10k-labels-idx1-ubyte", 8)
    return images, labels


def illumination(h, w, t, rng_phase):
    """Light falling off diagonally (240 -> ~135) with a moving soft shadow: a 1.8x brightness range."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    ramp = 240.0 - 95.0 * (0.6 * xx / w + 0.4 * yy / h)
    cx = w * (0.3 + 0.4 * np.sin(0.05 * t + rng_phase) ** 2)
    cy = h * 0.6
    shadow = 1.0 - 0.22 * np.exp(-(((xx - cx) / (0.25 * w)) ** 2 + ((yy - cy) / (0.3 * h)) ** 2))
    return ramp * shadow


def _scaled_digit(img, scale):
    import cv2
    size = int(round(28 * scale))
    return cv2.resize(img, (size, size), interpolation=cv2.INTER_LINEAR).astype(np.float32) / 255.0


def make_frames(mnist_dir, n_frames=60, size=(480, 640), cols=3, rows=2, scene_len=3, seed=0,
                noise=5.0, ink=0.85):
    """Frames (uint8 BGR) and truth: per frame a list of {"box": [x, y, w, h], "label": d, "index": i}.

    The page is split into rows x cols cells; each cell holds one digit, scaled 1.6-2.4x (45-67 px), that
    changes every ``scene_len`` frames; odd cells move a few pixels per frame. Digits never overlap.
    """
    images, labels = load_test_digits(mnist_dir)
    rng = np.random.default_rng(seed)
    h, w = size
    ch, cw = h // rows, w // cols
    frames, truth = [], []
    n_scenes = -(-n_frames // scene_len)
    scenes = []
    for _ in range(n_scenes):
        cells = []
        for cell in range(rows * cols):
            i = int(rng.integers(len(images)))
            scale = float(rng.uniform(1.6, 2.4))
            dig = _scaled_digit(images[i], scale)
            s = dig.shape[0]
            moving = cell % 2 == 1
            vx, vy = (rng.integers(-4, 5), rng.integers(-3, 4)) if moving else (0, 0)
            run_x, run_y = abs(vx) * scene_len, abs(vy) * scene_len  # room for the motion
            x = int(rng.integers(12, cw - s - 12 - run_x)) + (run_x if vx < 0 else 0)
            y = int(rng.integers(12, ch - s - 12 - run_y)) + (run_y if vy < 0 else 0)
            cells.append((i, dig, int(x), int(y), int(vx), int(vy)))
        scenes.append(cells)
    phase = float(rng.uniform(0, np.pi))
    for t in range(n_frames):
        light = illumination(h, w, t, phase)
        alpha = np.zeros((h, w), np.float32)
        objs = []
        for cell, (i, dig, x, y, vx, vy) in enumerate(scenes[t // scene_len]):
            k = t % scene_len
            gx = (cell % cols) * cw + x + vx * k
            gy = (cell // cols) * ch + y + vy * k
            s = dig.shape[0]
            alpha[gy:gy + s, gx:gx + s] = np.maximum(alpha[gy:gy + s, gx:gx + s], dig)
            ys, xs = np.nonzero(dig > 0.25)
            objs.append({"box": [int(gx + xs.min()), int(gy + ys.min()), int(xs.max() - xs.min() + 1),
                                 int(ys.max() - ys.min() + 1)], "label": int(labels[i]), "index": int(i)})
        page = light * (1.0 - ink * alpha) + rng.normal(0.0, noise, (h, w)).astype(np.float32)
        gray = np.clip(page + 0.5, 0, 255).astype(np.uint8)
        frames.append(np.repeat(gray[:, :, None], 3, axis=2))
        truth.append(objs)
    return frames, truth


def write_video(path, frames, fps=30):
    import cv2
    h, w = frames[0].shape[:2]
    fourcc = cv2.VideoWriter_fourcc(*("mp4v" if str(path).endswith(".mp4") else "MJPG"))
    vw = cv2.VideoWriter(str(path), fourcc, fps, (w, h))
    if not vw.isOpened():
        raise RuntimeError(f"cannot write video {path}")
    for f in frames:
        vw.write(f)
    vw.release()


def write_folder(path, frames):
    import cv2
    p = pathlib.Path(path)
    p.mkdir(parents=True, exist_ok=True)
    for i, f in enumerate(frames):
        cv2.imwrite(str(p / f"frame_{i:05d}.png"), f)


def iou(a, b):
    ax0, ay0, aw, ah = a
    bx0, by0, bw, bh = b
    ix = max(0, min(ax0 + aw, bx0 + bw) - max(ax0, bx0))
    iy = max(0, min(ay0 + ah, by0 + bh) - max(ay0, by0))
    inter = ix * iy
    return inter / float(aw * ah + bw * bh - inter)


def score(records, truth, min_iou=0.5):
    """Compare JSONL records with the truth: (found_right, total, stray_detections, wrong_list)."""
    by_frame = {r["frame"]: r["detections"] for r in records}
    found = total = 0
    stray = []
    wrong = []
    for f, objs in enumerate(truth):
        dets = by_frame.get(f, [])
        for o in objs:
            total += 1
            hit = [d for d in dets if iou(d["box"], o["box"]) >= min_iou]
            if any(d["label"] == o["label"] for d in hit):
                found += 1
            else:
                wrong.append((f, o, hit))
        for d in dets:
            if not any(iou(d["box"], o["box"]) > 0.1 for o in objs):
                stray.append((f, d))
    return found, total, stray, wrong


# -- a small trained model for the live tests ---------------------------------------------------------
# Training lenet5 for 2 epochs costs minutes on 2 shared cores, so the file is kept in pytest's cache
# (.pytest_cache/d/edgecnn-live-model) keyed by the library version and RECIPE, and reused by later runs.
# EDGECNN_LIVE_MODEL=/path/model.ecnn uses a given model file instead.
RECIPE = dict(model="lenet5", epochs=2, seed=0)


def trained_model(cache_dir, mnist_dir, log=print):
    given = os.environ.get("EDGECNN_LIVE_MODEL")
    if given:
        return pathlib.Path(given)
    import edgecnn
    from edgecnn import io as eio
    from edgecnn.train import TrainConfig, Trainer
    key = hashlib.sha1(repr((edgecnn.__version__, sorted(RECIPE.items()))).encode()).hexdigest()[:12]
    path = pathlib.Path(cache_dir) / f"live-{RECIPE['model']}-{key}.ecnn"
    if path.exists():
        try:
            eio.load(path)
            return path
        except Exception:  # a stale or partial file: train again
            path.unlink()
    log(f"training {RECIPE} for the live tests (cached at {path})")
    result = Trainer(TrainConfig(data_dir=str(mnist_dir), **RECIPE), run_dir=str(path) + ".run").run()
    eio.save(path, result.model, {"normalization": result.normalization, "filters": None},
             metadata={"training": result.summary()})
    return path


def untrained_model(path):
    """A freshly initialized lenet5 (for tests that only need boxes drawn: use --min-confidence 0)."""
    from edgecnn import io as eio
    from edgecnn import models
    from edgecnn.data import Normalization
    eio.save(path, models.build("lenet5"), {"normalization": Normalization("zscore", mean=33.3, std=78.6),
                                             "filters": None})
    return path


if __name__ == "__main__":
    import argparse
    import os
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--mnist", default=os.environ.get("EDGECNN_DATA_DIR", "../shared/data/mnist"))
    a = ap.parse_args()
    fr, tr = make_frames(a.mnist, a.frames)
    if a.out.endswith((".mp4", ".avi")):
        write_video(a.out, fr)
    else:
        write_folder(a.out, fr)
    pathlib.Path(a.out + ".truth.json").write_text(json.dumps(tr))
