"""Per-frame digit detection and classification: the part of ``edgecnn live`` that does the work.

frame -> gray -> optional filter chain -> ink relative to the local paper (survives uneven light) ->
threshold (fixed level or Otsu) -> runs -> connected components -> broken strokes merged -> size, aspect
and fill filters -> each candidate normalized the MNIST way -> one batch through the classifier ->
low-confidence candidates rejected. Everything here runs on the calling (main) thread.
"""
import time
from dataclasses import dataclass

import numpy as np

from . import live_kernels as K
from . import live_lines as L
from ._jit import njit
from .live_mnist import normalize_candidates_cpu


@dataclass
class DetectConfig:
    tile: int = 16              # paper-brightness grid cell, px (larger than a stroke is wide)
    binarize: str = "adaptive"  # "adaptive": ink > threshold; "otsu": Otsu level of the ink image, floored
    threshold: int = 64         # ink level (255 * darkness relative to the paper); 64 = 25% darker
    low: int = 32               # faint ink kept as the soft edge of a stroke in a candidate box (half the
                                # threshold; lower lets paper noise speckle the 28x28 digit)
    min_size: int = 12          # smallest digit height, px
    max_size: float = 0.9       # largest digit height, fraction of frame height
    min_area: int = 6           # smaller specks are noise, not stroke pieces
    min_aspect: float = 0.45    # height / width
    max_aspect: float = 15.0
    max_fill: float = 0.92      # ink area / box area: solid blobs are not digits (thin "1"s excepted)
    min_fill: float = 0.04
    merge_gap: float = 0.35     # vertical gap (fraction of height) across which broken strokes merge
    reject_border: bool = True  # digits cut by the frame edge are not classified
    min_confidence: float = 0.5
    max_candidates: int = 64
    line_length: float = 0.3    # ruled/grid paper lines: thin ink running off the frame and spanning
                                # this fraction of its width (height for vertical lines) or more, or
                                # 0.75 of it anywhere, is cut out first (0: off; see live_lines)
    line_width: int = 6         # thickest line looked for, px (the cut follows the thickness measured)
    normalizer: str = "fused"   # "fused": one Numba call for all candidates (live_mnist); "digits":
                                # edgecnn.digits.to_mnist_28 per crop (the `edgecnn predict` path, slower)

    def validate(self):
        if self.binarize not in ("adaptive", "otsu"):
            raise ValueError(f"DetectConfig: binarize must be 'adaptive' or 'otsu', got {self.binarize!r}")
        if not 0 <= self.min_confidence <= 1:
            raise ValueError(f"DetectConfig: min_confidence must be in [0, 1], got {self.min_confidence}")
        if self.normalizer not in ("fused", "digits"):
            raise ValueError(f"DetectConfig: normalizer must be 'fused' or 'digits', got {self.normalizer!r}")
        if self.tile < 4:
            raise ValueError(f"DetectConfig: tile must be >= 4 px, got {self.tile}")
        if not 0 < self.threshold < 255:
            raise ValueError(f"DetectConfig: threshold must be in 1..254, got {self.threshold}")
        if not 0 <= self.line_length <= 1:
            raise ValueError(f"DetectConfig: line_length must be in [0, 1] (0: keep lines), got {self.line_length}")
        if not (isinstance(self.line_width, (int, np.integer)) and self.line_width >= 1):
            raise ValueError(f"DetectConfig: line_width must be an integer >= 1 px, got {self.line_width!r}")
        return self


@dataclass
class Detection:
    box: tuple          # (x, y, w, h) in source-frame pixels
    label: object       # class name (int for digits)
    confidence: float

    def to_json(self):
        return {"box": [int(v) for v in self.box], "label": self.label,
                "confidence": round(float(self.confidence), 4)}


@njit
def merge_pieces_cpu(stats, min_area, gap_frac):
    """Group stroke pieces that belong to one digit: returns group id per component (-1 = speck).

    Two pieces join when they overlap horizontally by half the narrower one and the vertical gap between
    them is at most ``gap_frac`` of the taller one, or when one box lies mostly inside the other (a 4 or a
    5 written in two strokes), or when a piece under half the other's height lies within 20% of that
    height from it (a cut-off stroke tip). Side-by-side digits of similar height never join.
    """
    n = stats.shape[0]
    box = stats[:, :4].copy()
    alive = np.zeros(n, np.bool_)
    group = np.full(n, -1, np.int64)
    for i in range(n):
        if stats[i, 4] >= min_area:
            alive[i] = True
            group[i] = i
    changed = True
    while changed:
        changed = False
        for i in range(n):
            if not alive[i]:
                continue
            for j in range(i + 1, n):
                if not alive[j]:
                    continue
                ax0, ay0, ax1, ay1 = box[i, 0], box[i, 1], box[i, 2], box[i, 3]
                bx0, by0, bx1, by1 = box[j, 0], box[j, 1], box[j, 2], box[j, 3]
                ox = min(ax1, bx1) - max(ax0, bx0)
                oy = min(ay1, by1) - max(ay0, by0)
                wmin = min(ax1 - ax0, bx1 - bx0)
                hmax = max(ay1 - ay0, by1 - by0)
                gap = -oy
                join = ox * 2 >= wmin and gap <= gap_frac * hmax
                if not join and ox > 0 and oy > 0:
                    amin = min((ax1 - ax0) * (ay1 - ay0), (bx1 - bx0) * (by1 - by0))
                    join = ox * oy * 5 >= amin * 3
                if not join and min(ay1 - ay0, by1 - by0) * 2 <= hmax:
                    # a fragment (under half the other's height) touching distance of a bigger piece: the
                    # tip of a stroke the threshold cut off, not a digit of its own
                    near = np.float32(0.2) * hmax
                    join = -ox <= near and -oy <= near
                if join:
                    box[i, 0] = min(ax0, bx0)
                    box[i, 1] = min(ay0, by0)
                    box[i, 2] = max(ax1, bx1)
                    box[i, 3] = max(ay1, by1)
                    alive[j] = False
                    for k in range(n):
                        if group[k] == j:
                            group[k] = i
                    changed = True
    return group, box, alive


class DigitDetector:
    """Detect and classify digits in frames. ``classifier`` follows edgecnn.io's Classifier API
    (``predict(uint8 (N, 28, 28)) -> probabilities (N, K)``, ``class_names``); ``chain`` is an optional
    edgecnn.filters FilterChain run on the grayscale frame before binarization."""

    def __init__(self, classifier, config=None, chain=None, normalize=None):
        self.classifier = classifier
        self.config = (config or DetectConfig()).validate()
        self.chain = chain
        self._normalize = normalize
        if normalize is None and self.config.normalizer == "digits":
            from .digits import to_mnist_28
            self._normalize = lambda crop: to_mnist_28(crop, invert=False)
        names = list(getattr(classifier, "class_names", None) or range(10))
        self.labels = [_as_label(n) for n in names]
        self._bufs = {}
        self.last_gray = None
        self.last_batch = None

    # -- stages -------------------------------------------------------------------------------------
    def gray(self, frame):
        if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or not (
                frame.ndim == 2 or (frame.ndim == 3 and frame.shape[2] in (3, 4))):
            what = f"{frame.dtype} {frame.shape}" if isinstance(frame, np.ndarray) else type(frame).__name__
            raise ValueError(f"DigitDetector: frame must be uint8 (H, W) or (H, W, 3|4), got {what}")
        if frame.ndim == 2:
            return np.ascontiguousarray(frame)
        if frame.shape[2] == 3 and frame.flags.c_contiguous and frame.flags.writeable:
            # cvtColor's integers, 16 pixels a step, on this thread: ~0.03 ms a 640x480 frame. Not
            # through filters.apply: its parallel way lost to OpenCV's workers still spinning from a
            # cv2 call (0.10 ms in the benchmark's interleaved pipelines), and it adds ~2 us of checks.
            # (A read-only frame would make Numba compile a read-only specialisation mid-stream.)
            from ._filter_kernels import to_gray
            gray = np.empty(frame.shape[:2], np.uint8)
            to_gray[True, False](frame, gray, 1)
            return gray
        if frame.size == 0:  # cvtColor refuses empty images: nothing to detect
            return np.empty(frame.shape[:2], np.uint8)
        import cv2
        code = cv2.COLOR_BGR2GRAY if frame.shape[2] == 3 else cv2.COLOR_BGRA2GRAY
        return cv2.cvtColor(frame, code)

    def filtered(self, gray):
        if self.chain is None:
            return gray
        y = self.chain.apply(gray)
        if y.dtype != np.uint8:
            y = np.clip(y, 0, 255).astype(np.uint8)
        return np.ascontiguousarray(y)

    def _buf(self, key, shape, dtype):
        b = self._bufs.get(key)
        if b is None or b.shape != shape:
            b = self._bufs[key] = np.empty(shape, dtype)
        return b

    def paper(self, gray):
        """Paper brightness on a tile grid (the local background that ink is measured against)."""
        c = self.config
        h, w = gray.shape
        th, tw = -(-h // c.tile), -(-w // c.tile)
        tiles = self._buf("tiles", (th, tw), np.float32)
        paper = self._buf("paper", (th, tw), np.float32)
        K.paper_tiles_cpu(gray, c.tile, tiles)
        K.max3x3_cpu(tiles, paper)
        return paper

    def ink_image(self, gray, paper):
        """uint8 ink image of the whole frame (255 * darkness relative to the local paper)."""
        h, w = gray.shape
        ink = self._buf("ink", (h, w), np.uint8)
        K.ink_cpu(gray, paper, self.config.tile, 0, h, 0, w, ink)
        return ink

    def runs(self, gray, paper):
        """Labelled runs of ink above the threshold: (rrow, rx0, rx1, comp, stats)."""
        c = self.config
        h, w = gray.shape
        cap = w // 2 + 1
        starts = self._buf("starts", (h, cap), np.int32)
        ends = self._buf("ends", (h, cap), np.int32)
        counts = self._buf("counts", (h,), np.int32)
        if c.binarize == "otsu":
            ink = self.ink_image(gray, paper)
            thr = max(c.threshold, int(K.otsu_cpu(ink)))
            K.row_runs_cpu(ink, np.uint8(thr), starts, ends, counts)
        else:
            K.ink_runs_cpu(gray, paper, c.tile, c.threshold, starts, ends, counts)
        runs = K.label_runs_cpu(starts, ends, counts)
        if c.line_length > 0:  # a page-wide component may hold paper lines (costs nothing otherwise)
            long_h, long_v = max(int(c.line_length * w), 1), max(int(c.line_length * h), 1)
            if L.has_long_component(runs[4], long_h, long_v):
                runs = self._without_lines(starts, ends, counts, w, long_h, long_v)
        return runs

    def _without_lines(self, starts, ends, counts, w, long_h, long_v):
        """The runs labelled again with ruled and grid lines cut out (edgecnn.live_lines); the line
        runs come back as one extra component that is never a digit."""
        h, cap = starts.shape
        lines = self._buf("lines", (h, w), np.uint8)
        L.line_pixels_cpu(starts, ends, counts, h, w, long_h, long_v, self.config.line_width, lines)
        ink = [self._buf(k, (h, cap), np.int32) for k in ("ink_starts", "ink_ends")]
        line = [self._buf(k, (h, cap), np.int32) for k in ("line_starts", "line_ends")]
        ink_counts, line_counts = self._buf("ink_counts", (h,), np.int32), self._buf("line_counts", (h,), np.int32)
        L.split_runs_cpu(starts, ends, counts, lines, ink[0], ink[1], ink_counts, line[0], line[1], line_counts)
        rrow, rx0, rx1, comp, stats = K.label_runs_cpu(ink[0], ink[1], ink_counts)
        L.drop_line_debris(rrow, rx0, rx1, comp, stats, lines, self.config.line_width)
        return L.with_line_runs(rrow, rx0, rx1, comp, stats, line[0], line[1], line_counts)

    def candidates(self, shape, runs):
        """Boxes (M, 4) as x0, y0, x1, y1 of plausible digits, and the candidate of each component."""
        c = self.config
        stats = runs[4]
        h, w = shape
        group, box, alive = merge_pieces_cpu(stats, c.min_area, np.float32(c.merge_gap))
        return K.select_candidates_cpu(stats, group, box, alive, h, w, c.min_size, c.max_size * h,
                                       c.min_aspect, c.max_aspect, c.min_fill, c.max_fill,
                                       c.reject_border, c.max_candidates)

    def normalize(self, gray, paper, runs, boxes, cand_of_comp):
        """uint8 (N, 28, 28) MNIST-style digits (white on black) for the candidates."""
        rrow, rx0, rx1, comp, _ = runs
        batch = np.empty((len(boxes), 28, 28), np.uint8)
        low = np.uint8(self.config.low)
        tile = self.config.tile
        if self._normalize is None:  # the fused kernel: one call for all candidates
            normalize_candidates_cpu(gray, paper, tile, rrow, rx0, rx1, comp, cand_of_comp, boxes, low, batch)
            return batch
        h, w = gray.shape
        for k, (x0, y0, x1, y1) in enumerate(boxes):
            a0, b0, a1, b1 = max(x0 - 1, 0), max(y0 - 1, 0), min(x1 + 1, w), min(y1 + 1, h)
            crop = np.empty((b1 - b0, a1 - a0), np.uint8)
            peak = K.paint_crop_cpu(gray, paper, tile, rrow, rx0, rx1, comp, cand_of_comp, k,
                                    a0, b0, a1, b1, low, crop)
            K.stretch_cpu(crop, peak)
            batch[k] = self._normalize(crop)
        return batch

    def classify(self, batch):
        if len(batch) == 0:
            return np.zeros((0,), np.int64), np.zeros((0,), np.float32)
        probs = np.asarray(self.classifier.predict(batch))
        idx = probs.argmax(axis=1)
        return idx, probs[np.arange(len(idx)), idx]

    # -- the whole frame ---------------------------------------------------------------------------
    def process(self, frame, timings=None):
        """Detections for one frame; ``timings`` (dict) receives per-stage milliseconds."""
        t0 = time.perf_counter()
        gray = self.filtered(self.gray(frame))
        paper = self.paper(gray)
        runs = self.runs(gray, paper)
        boxes, cand_of_comp = self.candidates(gray.shape, runs)
        batch = self.normalize(gray, paper, runs, boxes, cand_of_comp)
        self.last_gray = gray
        self.last_batch = batch
        t1 = time.perf_counter()
        idx, conf = self.classify(batch)
        t2 = time.perf_counter()
        dets = []
        for (x0, y0, x1, y1), i, p in zip(boxes.tolist(), idx, conf):
            if p >= self.config.min_confidence:
                dets.append(Detection((x0, y0, x1 - x0, y1 - y0), self.labels[int(i)], float(p)))
        if timings is not None:
            timings["preprocess"] = (t1 - t0) * 1e3
            timings["inference"] = (t2 - t1) * 1e3
        return dets

    def warmup(self, shape):
        """Compile every kernel on a dummy frame of ``shape`` holding one digit-like ring (so candidate,
        normalization and classifier paths all run) and a ruled line above it (so the paper-line cut
        compiles too, not on the first page with lines); returns seconds."""
        t = time.perf_counter()
        frame = np.full(shape, 200, np.uint8)
        h, w = shape[:2]
        s = max(min(h, w) // 4, 20)
        y0, x0, t_ = h // 2 - s // 2, w // 2 - s // 3, max(s // 10, 2)
        frame[y0:y0 + s, x0:x0 + 2 * s // 3] = 40
        frame[y0 + t_:y0 + s - t_, x0 + t_:x0 + 2 * s // 3 - t_] = 200
        frame[max(y0 - max(s // 4, 3), 0)] = 120
        self.process(frame)
        return time.perf_counter() - t


def _as_label(name):
    try:
        return int(name)
    except (TypeError, ValueError):
        return str(name)
