"""``edgecnn live``: classify handwritten digits in a camera stream, a video, an image folder or a URL.

    from edgecnn.live import LiveOptions, run
    summary = run(LiveOptions(source="0", model="edgecnn-model.ecnn"))

The main loop: open the source (fails fast with the source and backend named), compile every kernel on a
dummy frame (timed and reported), start the capture thread, then per frame: detect and classify
(edgecnn.live_detect), draw (edgecnn.live_overlay), show / record / write one JSON line. Ends at the end
of a file, after ``max_frames``, on q / Esc / Ctrl-C / window close, or when a live source stays dead
after its reconnects; always releases the source and closes windows, then returns a summary.
With ``device="cuda"`` the model runs on the GPU (each frame's candidates go up as one batch, the
logits come back); the frame stages (gray, filters, binarization, components, crops: edgecnn.live_kernels
and live_mnist, Numba CPU kernels without CUDA twins) stay on the CPU, where they take about 0.6 ms.
Pieces: live_sources (sources, capture thread), live_detect (pipeline), live_kernels / live_mnist
(Numba kernels), live_overlay (drawing).
"""
import json
import os
import sys
import time
from dataclasses import dataclass, field

import numpy as np

from .live_sources import Capture, SourceError, open_source

WINDOW = "edgecnn live"
STAGES = ("capture", "preprocess", "inference", "draw")


@dataclass
class LiveOptions:
    source: object = 0                 # camera index, video file, image folder or stream URL
    model: str = None                  # model file (None: DEFAULT_MODEL)
    headless: bool = None              # None: automatic (no display, or a headless OpenCV build)
    output: str = None                 # JSON lines, one object per frame
    record: str = None                 # annotated video (mp4)
    max_frames: int = None
    filters: tuple = ()                # FilterChain specs run on the gray frame before binarization
    view: str = None                   # side-by-side filter view (one of live_overlay.VIEW_FILTERS)
    min_confidence: float = 0.5
    binarize: str = "adaptive"
    threshold: int = 64
    min_size: int = 12
    snapshot_dir: str = "."
    reconnects: int = 5
    open_timeout: float = 4.0
    device: str = "cpu"
    detect: dict = field(default_factory=dict)  # further DetectConfig fields


DEFAULT_MODEL = "edgecnn-model.ecnn"  # what `edgecnn train` writes by default (cli/train.py DEFAULT_OUTPUT)


def default_model_path():
    return DEFAULT_MODEL


def display_problem():
    """None when a window can be shown, else the reason why not."""
    import cv2
    info = cv2.getBuildInformation()
    gui = [ln.split(":", 1)[1].strip() for ln in info.splitlines() if ln.strip().startswith("GUI:")]
    if gui and gui[0].upper() == "NONE":
        return "OpenCV is a headless build (no GUI backend)"
    has_display = os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    if sys.platform.startswith("linux") and not has_display:
        return "no display (DISPLAY is not set)"
    return None


def _percentiles(values):
    if not values:
        return {}
    a = np.asarray(values, np.float64)
    return {"p50": round(float(np.percentile(a, 50)), 3), "p95": round(float(np.percentile(a, 95)), 3),
            "p99": round(float(np.percentile(a, 99)), 3), "max": round(float(a.max()), 3)}


class _Recorder:
    def __init__(self, path, fps):
        self.path, self.fps, self.writer = path, fps, None

    def write(self, img):
        import cv2
        if self.writer is None:
            h, w = img.shape[:2]
            self.writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*"mp4v"), self.fps, (w, h))
            if not self.writer.isOpened():
                raise OSError(f"cannot write video {self.path} (mp4v codec unavailable?)")
            self.size = (w, h)
        if (img.shape[1], img.shape[0]) != self.size:  # the side view was toggled: keep one frame size
            img = cv2.resize(img, self.size)
        self.writer.write(img)

    def close(self):
        if self.writer is not None:
            self.writer.release()


def build_detector(opts, classifier):
    from .live_detect import DetectConfig, DigitDetector
    cfg = DetectConfig(min_confidence=opts.min_confidence, binarize=opts.binarize, threshold=opts.threshold,
                       min_size=opts.min_size, **opts.detect)
    chain = None
    if opts.filters:
        from .filters import FilterChain
        chain = FilterChain(list(opts.filters))
    return DigitDetector(classifier, cfg, chain)


def save_snapshot(folder, image, n, log):
    """Save ``image`` as the first free edgecnn-snapshot-NNN.png (NNN >= n) in ``folder``. Returns
    (the path or None, the next number to try). Snapshots of an earlier session are never
    overwritten, and a folder that cannot be written is reported without ending the session."""
    from ._fsutil import write_image
    while os.path.exists(os.path.join(folder, f"edgecnn-snapshot-{n:03d}.png")):
        n += 1
    path = os.path.join(folder, f"edgecnn-snapshot-{n:03d}.png")
    try:
        write_image(path, image)
    except (ValueError, OSError) as e:
        log(f"live: snapshot not saved: {e}")
        return None, n
    log(f"live: snapshot {path}")
    return path, n + 1


def run(opts, classifier=None, log=None):
    """Run the live loop; returns the summary dict. Raises SourceError when the source cannot be opened,
    FileNotFoundError / edgecnn.io.ModelFileError for a missing or bad model file and ValueError for bad
    options, before any frame is read."""
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    from .device import resolve
    try:
        device = resolve(opts.device, what=f"live: --device {opts.device}")  # CudaUnavailableError: the fix
    except ValueError as e:
        raise ValueError(f"live: {e}") from None
    if opts.max_frames is not None and opts.max_frames < 1:
        raise ValueError(f"live: max_frames must be >= 1, got {opts.max_frames}")
    from . import live_overlay as ov
    if opts.view is not None and opts.view not in ov.VIEW_FILTERS:
        raise ValueError(f"live: view must be one of {[v for v in ov.VIEW_FILTERS if v]}, got {opts.view!r}")
    model_path = None
    if classifier is None:
        model_path = opts.model or default_model_path()
        if not os.path.exists(model_path):
            hint = " (train one with `edgecnn train`, or pass --model FILE)" if opts.model is None else ""
            raise FileNotFoundError(f"live: model file {model_path} not found{hint}")
    from .live_detect import DetectConfig
    DetectConfig(min_confidence=opts.min_confidence, binarize=opts.binarize, threshold=opts.threshold,
                 min_size=opts.min_size, **opts.detect).validate()

    headless = opts.headless
    if not headless:
        problem = display_problem()
        if problem and headless is None:
            log(f"live: headless ({problem})")
            headless = True
        elif problem:
            raise ValueError(f"live: cannot open a window: {problem}; use --headless")
        headless = bool(headless)

    # the source first: a dead camera fails in seconds, before the model and kernels load
    source = open_source(opts.source, timeout=opts.open_timeout)
    source.open()
    log(f"live: opened {source.describe()}")
    try:
        if classifier is None:
            from .io import load
            classifier = load(model_path)
        if device != "cpu":
            classifier.to(device)  # the model on the GPU; frame stages stay on the CPU (see module doc)
            log(f"live: inference on {device}")
        detector = build_detector(opts, classifier)
        warm = detector.warmup((480, 640, 3))
    except BaseException:
        source.release()
        raise
    log(f"live: kernels compiled/loaded on a dummy frame in {warm:.2f} s")
    return _loop(opts, source, detector, headless, warm, log)


def _loop(opts, source, detector, headless, warm, log):
    import cv2
    from . import live_overlay as ov
    cap = Capture(source, reconnects=opts.reconnects, log=log).start()
    out = open(opts.output, "w") if opts.output else None
    rec = _Recorder(opts.record, source.fps or 30.0) if opts.record else None
    view_i = ov.VIEW_FILTERS.index(opts.view) if opts.view else 0
    lat = {k: [] for k in (*STAGES, "total")}
    frames = 0
    reason = "end of source"
    paused = False
    snapshots = snap_next = 0
    annotated = None
    t_start = time.perf_counter()
    fps_t, fps_n, fps = t_start, 0, 0.0
    if not headless:
        cv2.namedWindow(WINDOW, cv2.WINDOW_AUTOSIZE)
    try:
        while True:
            if opts.max_frames is not None and frames >= opts.max_frames:
                reason = f"max frames ({opts.max_frames})"
                break
            key = -1
            if not headless:
                key = cv2.waitKey(1 if not paused else 30) & 0xFF
                if key in (ord("q"), 27):
                    reason = "quit key"
                    break
                if key == ord(" "):
                    paused = not paused
                elif key == ord("f"):
                    view_i = (view_i + 1) % len(ov.VIEW_FILTERS)
                elif key == ord("s") and annotated is not None:
                    saved, snap_next = save_snapshot(opts.snapshot_dir, annotated, snap_next, log)
                    snapshots += saved is not None
                if cv2.getWindowProperty(WINDOW, cv2.WND_PROP_VISIBLE) < 1:
                    reason = "window closed"
                    break
                if paused:
                    continue
            item = cap.get(timeout=0.05 if not headless else 0.5)
            if item is None:
                if cap.ended:
                    break
                continue
            index, frame, read_ms = item
            t0 = time.perf_counter()
            timing = {"capture": read_ms}
            dets = detector.process(frame, timing)
            t1 = time.perf_counter()
            if not headless or rec is not None:
                img = ov.to_bgr(frame)
                ov.draw_detections(img, dets)
                ov.draw_hud(img, fps, {k: timing.get(k, 0.0) for k in STAGES},
                            f"dropped {cap.dropped}" + (" | paused" if paused else ""))
                name = ov.VIEW_FILTERS[view_i]
                if name is not None:
                    ink = detector.ink_image(detector.last_gray, detector.paper(detector.last_gray)) \
                        if name == "ink" else None
                    img = ov.compose(img, ov.filter_view(detector.last_gray, name, ink))
                annotated = img
                if not headless:
                    cv2.imshow(WINDOW, img)
                if rec is not None:
                    rec.write(img)
            t2 = time.perf_counter()
            timing["draw"] = (t2 - t1) * 1e3
            timing["total"] = timing["capture"] + (t2 - t0) * 1e3
            for k in lat:
                lat[k].append(timing.get(k, 0.0))
            frames += 1
            fps_n += 1
            if t2 - fps_t >= 0.5:
                fps, fps_t, fps_n = fps_n / (t2 - fps_t), t2, 0
            if out is not None:
                rec_json = {"frame": int(index), "time_ms": round((t0 - t_start) * 1e3, 3),
                            "latency_ms": {k: round(timing[k], 3) for k in (*STAGES, "total")},
                            "detections": [d.to_json() for d in dets]}
                out.write(json.dumps(rec_json) + "\n")
    except KeyboardInterrupt:
        reason = "interrupted"
    finally:
        t_end = time.perf_counter()
        released = cap.stop(timeout=0.5)
        if out is not None:
            out.close()
        if rec is not None:
            rec.close()
        if not headless:
            cv2.destroyAllWindows()
            for _ in range(4):  # let the GUI backend process the close events
                cv2.waitKey(1)
        t_closed = time.perf_counter()
    if cap.error:
        reason = f"source failed: {cap.error}"
    wall = t_end - t_start
    summary = {"source": source.describe(), "frames": frames, "dropped": cap.dropped,
               "reconnects": cap.reconnect_count, "seconds": round(wall, 3),
               "fps": round(frames / wall, 2) if wall > 0 else 0.0, "warmup_s": round(warm, 3),
               "end": reason, "released": released, "close_ms": round((t_closed - t_end) * 1e3, 1),
               "snapshots": snapshots,
               "latency_ms": {k: _percentiles(v) for k, v in lat.items()}}
    summary["ok"] = cap.error is None
    return summary


def format_summary(s):
    lines = [f"{s['frames']} frames in {s['seconds']:.2f} s ({s['fps']:.1f} FPS), {s['dropped']} dropped, "
             f"ended: {s['end']}; kernel warm-up {s['warmup_s']:.2f} s; source released and windows "
             f"closed in {s['close_ms']:.0f} ms"]
    for k, p in s["latency_ms"].items():
        if p:
            lines.append(f"  {k:<10} ms  p50 {p['p50']:7.3f}  p95 {p['p95']:7.3f}  p99 {p['p99']:7.3f}  "
                         f"max {p['max']:7.3f}")
    return "\n".join(lines)


__all__ = ["LiveOptions", "run", "format_summary", "default_model_path", "display_problem", "SourceError"]
