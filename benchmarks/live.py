"""Per-frame cost of the ``edgecnn live`` pipeline on 640x480 frames holding 4 digits, stage by stage,
beside an OpenCV-only pipeline of the same steps timed in the same run (frames interleaved A B / B A).

    python benchmarks/live.py [--frames 300] [--model lenet5] [--threads 2] [--json PATH]

Stages (both sides): gray (edgecnn.filters "gray" against cv2.cvtColor), paper (local paper brightness on a 16 px grid),
binarize+components (ink relative to the paper, threshold, 8-connected components), candidates (stroke
merging and size/aspect/fill filters: the same compiled function on both sides, fed each side's
components), normalize (MNIST-style 28x28 per candidate), inference (the same classifier on both sides,
one batch: on the CPU a few digits take edgecnn.inference's fast path). The OpenCV side: resize
INTER_AREA + dilate + resize INTER_LINEAR for the paper, compare, connectedComponentsWithStats, and per
candidate crop + resize INTER_AREA + moments + shift.
After the frames, the classifier call alone on the same batches, interleaved with the same batch through
Model.predict (the general executor the classifier used before the fast path), as a same-run reference.
Frames come from tests/livevideo.py (real MNIST test digits on an unevenly lit, noisy page).
"""
import argparse
import json
import os
import pathlib
import sys
import time

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

STAGES = ("gray", "paper", "binarize+components", "candidates", "normalize", "inference")


def make_frames(mnist_dir, n=20, seed=0):
    import livevideo
    frames, truth = livevideo.make_frames(mnist_dir, n_frames=n, size=(480, 640), cols=2, rows=2,
                                          scene_len=1, seed=seed)
    return frames, truth


class Ours:
    def __init__(self, detector, digits_detector=None):
        self.d = detector
        self.dd = digits_detector

    def run(self, frame, t):
        d = self.d
        c = time.perf_counter
        t0 = c()
        gray = d.gray(frame)
        t1 = c()
        paper = d.paper(gray)
        t2 = c()
        runs = d.runs(gray, paper)
        t3 = c()
        boxes, cand = d.candidates(gray.shape, runs)
        t4 = c()
        batch = d.normalize(gray, paper, runs, boxes, cand)
        t5 = c()
        idx, conf = d.classify(batch)
        t6 = c()
        for k, a, b in zip(STAGES, (t0, t1, t2, t3, t4, t5), (t1, t2, t3, t4, t5, t6)):
            t[k].append((b - a) * 1e3)
        t["total"].append((t6 - t0) * 1e3)
        if self.dd is not None:  # the same candidates through edgecnn.digits.to_mnist_28 (not in total)
            t7 = c()
            self.dd.normalize(gray, paper, runs, boxes, cand)
            t.setdefault(DIGITS, []).append((c() - t7) * 1e3)
        self.last_batch = batch
        return boxes, idx


DIGITS = "normalize via digits.to_mnist_28"
ALONE = "classifier.predict alone"
EXECUTOR = "inference via Model.predict"


class OpenCVOnly:
    """The same steps with OpenCV calls (and NumPy glue) only."""

    def __init__(self, detector):
        import cv2
        self.cv2 = cv2
        self.d = detector
        self.k3 = np.ones((3, 3), np.uint8)

    def run(self, frame, t):
        cv2, d, cfg = self.cv2, self.d, self.d.config
        c = time.perf_counter
        t0 = c()
        gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        t1 = c()
        h, w = gray.shape
        small = cv2.resize(gray, (-(-w // cfg.tile), -(-h // cfg.tile)), interpolation=cv2.INTER_AREA)
        paper = cv2.resize(cv2.dilate(small, self.k3), (w, h), interpolation=cv2.INTER_LINEAR)
        t2 = c()
        limit = cv2.convertScaleAbs(paper, alpha=1.0 - cfg.threshold / 255.0)
        mask = cv2.compare(gray, limit, cv2.CMP_LT)
        n, labels, st, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
        t3 = c()
        stats = np.empty((n - 1, 5), np.int32)
        stats[:, 0] = st[1:, 0]
        stats[:, 1] = st[1:, 1]
        stats[:, 2] = st[1:, 0] + st[1:, 2]
        stats[:, 3] = st[1:, 1] + st[1:, 3]
        stats[:, 4] = st[1:, 4]
        from edgecnn.live_detect import merge_pieces_cpu
        from edgecnn import live_kernels as K
        group, box, alive = merge_pieces_cpu(stats, cfg.min_area, np.float32(cfg.merge_gap))
        boxes, cand = K.select_candidates_cpu(stats, group, box, alive, h, w, cfg.min_size, cfg.max_size * h,
                                              cfg.min_aspect, cfg.max_aspect, cfg.min_fill, cfg.max_fill,
                                              cfg.reject_border, cfg.max_candidates)
        t4 = c()
        batch = np.zeros((len(boxes), 28, 28), np.uint8)
        for k, (x0, y0, x1, y1) in enumerate(boxes):
            a0, b0, a1, b1 = max(x0 - 1, 0), max(y0 - 1, 0), min(x1 + 1, w), min(y1 + 1, h)
            g = gray[b0:b1, a0:a1]
            p = paper[b0:b1, a0:a1]
            ink = cv2.divide(cv2.subtract(p, g), p, scale=255)
            lab = labels[b0:b1, a0:a1]
            own = np.isin(lab, np.nonzero(cand == k)[0] + 1)
            ink[(lab > 0) & ~own] = 0
            ink[ink <= cfg.low] = 0
            peak = int(ink[own].max()) if own.any() else 0
            if peak:
                ink = cv2.convertScaleAbs(ink, alpha=255.0 / (0.8 * peak))
            ys, xs = np.nonzero(ink)
            if len(ys) == 0:
                continue
            ink = ink[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
            hh, ww = ink.shape
            s = 20.0 / max(hh, ww)
            nh, nw = max(1, round(hh * s)), max(1, round(ww * s))
            dig = cv2.resize(ink, (nw, nh), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
            m = cv2.moments(dig)
            if m["m00"] <= 0:
                continue
            oy = int(np.floor(14 - m["m01"] / m["m00"] + 0.5))
            ox = int(np.floor(14 - m["m10"] / m["m00"] + 0.5))
            y0c, x0c = max(oy, 0), max(ox, 0)
            y1c, x1c = min(oy + nh, 28), min(ox + nw, 28)
            if y1c > y0c and x1c > x0c:
                batch[k, y0c:y1c, x0c:x1c] = dig[y0c - oy:y1c - oy, x0c - ox:x1c - ox]
        t5 = c()
        idx, conf = d.classify(batch)
        t6 = c()
        for k, a, b in zip(STAGES, (t0, t1, t2, t3, t4, t5), (t1, t2, t3, t4, t5, t6)):
            t[k].append((b - a) * 1e3)
        t["total"].append((t6 - t0) * 1e3)
        return boxes, idx


def stats_of(v):
    a = np.asarray(v)
    return {"median": float(np.median(a)), "p95": float(np.percentile(a, 95))}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=300, help="frames per side")
    ap.add_argument("--model", default="lenet5",
                    help="zoo model (untrained weights: same cost) or a model file")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--mnist", default=os.environ.get("EDGECNN_DATA_DIR", str(HERE.parent.parent / "shared" /
                                                                            "data" / "mnist")))
    ap.add_argument("--json", default=str(HERE / "results" / "live.json"))
    a = ap.parse_args(argv)

    import cv2
    import edgecnn
    from edgecnn._jit import set_num_threads
    from edgecnn.live_detect import DigitDetector
    cv2.setNumThreads(a.threads)
    set_num_threads(a.threads)
    if os.path.exists(a.model):
        clf = edgecnn.load(a.model)
    else:
        from edgecnn import models
        from edgecnn.data import Normalization
        from edgecnn.io import Classifier
        norm = Normalization("zscore", mean=33.3, std=78.6)
        clf = Classifier(models.build(a.model), {"normalization": norm})
    det = DigitDetector(clf)
    from edgecnn.live_detect import DetectConfig
    det_digits = DigitDetector(clf, DetectConfig(normalizer="digits"))
    frames, truth = make_frames(a.mnist)
    t0 = time.perf_counter()
    det.warmup((480, 640, 3))
    warm = time.perf_counter() - t0
    sides = {"edgecnn": Ours(det, det_digits), "opencv": OpenCVOnly(det)}
    times = {s: {k: [] for k in (*STAGES, "total")} for s in sides}
    for s in sides.values():  # warm both sides (OpenCV allocations, batch sizes of the classifier)
        for f in frames:
            s.run(f, {k: [] for k in (*STAGES, "total")})
    agree = 0
    for i in range(a.frames):
        f = frames[i % len(frames)]
        order = list(sides) if i % 2 == 0 else list(sides)[::-1]
        out = {n: sides[n].run(f, times[n]) for n in order}
        agree += len(out["edgecnn"][0]) == len(out["opencv"][0]) == len(truth[i % len(frames)])
    batches = []
    for f in frames:  # the classifier alone vs the general executor on the same batches, interleaved
        sides["edgecnn"].run(f, {k: [] for k in (*STAGES, "total")})
        batches.append(sides["edgecnn"].last_batch)
    fast, general = [], []
    for i in range(a.frames):
        b = batches[i % len(batches)]
        for k in ((0, 1) if i % 2 == 0 else (1, 0)):
            t0 = time.perf_counter()
            clf.predict(b) if k == 0 else clf.model.predict(clf.prepare(b))
            (fast, general)[k].append((time.perf_counter() - t0) * 1e3)
    res = {n: {k: stats_of(v) for k, v in t.items()} for n, t in times.items()}
    pre = {n: [sum(x) for x in zip(*(times[n][k] for k in STAGES[:-1]))] for n in sides}
    for n in sides:
        res[n]["pipeline without inference"] = stats_of(pre[n])

    print(f"edgecnn live pipeline, 640x480 frames with 4 MNIST digits, {a.frames} frames per side, "
          f"{a.threads} threads, model {a.model}; kernel warm-up {warm:.2f} s")
    print(f"{'stage':<28}{'edgecnn med':>12}{'p95':>9}{'opencv med':>12}{'p95':>9}{'ratio':>8}   (ms)")
    for k in (*STAGES, "pipeline without inference", "total"):
        e, o = res["edgecnn"][k], res["opencv"][k]
        ratio = e["median"] / o["median"] if o["median"] > 0 else float("nan")
        print(f"{k:<28}{e['median']:>12.3f}{e['p95']:>9.3f}{o['median']:>12.3f}{o['p95']:>9.3f}{ratio:>8.2f}")
    d = stats_of(times["edgecnn"][DIGITS])
    res["edgecnn"][DIGITS] = d
    print(f"{DIGITS:<28}{d['median']:>12.3f}{d['p95']:>9.3f}   (the same candidates; not in total)")
    d = res["edgecnn"][ALONE] = stats_of(fast)
    e = res["edgecnn"][EXECUTOR] = stats_of(general)
    print(f"{ALONE:<28}{d['median']:>12.3f}{d['p95']:>9.3f}   (the same batches, "
          f"interleaved with:)")
    print(f"{EXECUTOR:<28}{e['median']:>12.3f}{e['p95']:>9.3f}   (the general executor, as before the "
          f"fast path)")
    print(f"frames where both sides found exactly the 4 digits: {agree}/{a.frames}")
    target = res["edgecnn"]["total"]["median"]
    print(f"target: median <= 2 ms per frame: {'met' if target <= 2.0 else 'MISSED'} ({target:.3f} ms)")
    out = {"frames": a.frames, "threads": a.threads, "model": a.model, "warmup_s": warm, "results": res,
           "both_found_all_4": agree, "load_average": os.getloadavg()}
    p = pathlib.Path(a.json)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(out, indent=1))
    print(f"wrote {p}")


if __name__ == "__main__":
    main()
