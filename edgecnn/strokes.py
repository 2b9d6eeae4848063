"""Stroke width made MNIST-like before a digit is scaled down to 20 px.

MNIST's digits were written with thick strokes: 2.0 px wide at 28x28 (median over the 10,000 test digits;
10-90 % range 1.5-2.8, 1.0 at the 0.5th percentile), measured by stroke_width over the pixels above 127
(their soft edges add more). A ballpoint digit held close to a camera is 150-200 px tall with 2-3 px
strokes: scaled to 20 px they become faint hairlines (0.3 px), and the classifier, trained on MNIST,
misreads them (default model in `edgecnn live`, MNIST test digits redrawn along their centre line with
a 2 px pen at 168 px: 79 % right; 97.6 % at 70 px; 99.2 % as MNIST drew them). So a crop whose strokes would come out thinner than all but 0.5 % of MNIST's (THIN) is dilated
first, with a square of half-side r chosen so that they come out at MNIST's median (STROKE); strokes
MNIST could have are left as they are.
"""
import numpy as np

from ._jit import njit

STROKE = 2.0  # px at 28x28: MNIST's median stroke width by stroke_width (see above) ...
THIN = 1.0    # ... and its 0.5th percentile: thinner strokes are brought to STROKE
INK = 127     # the stroke core: pixels above this, on a crop stretched so that ink peaks at 255


@njit
def stroke_width(crop, thr):
    """2 x area / perimeter of the pixels above ``thr``, the perimeter counted in pixel sides that face
    a pixel at or below ``thr`` (or the crop's edge): the width of strokes much longer than wide
    (a straight band w px wide and L long: 2wL / (2L + 2w))."""
    H, W = crop.shape
    area = 0
    sides = 0
    for y in range(H):
        for x in range(W):
            if crop[y, x] > thr:
                area += 1
                sides += ((y == 0 or crop[y - 1, x] <= thr) + (y == H - 1 or crop[y + 1, x] <= thr)
                          + (x == 0 or crop[y, x - 1] <= thr) + (x == W - 1 or crop[y, x + 1] <= thr))
    return 2.0 * area / sides if sides else 0.0


@njit
def _max_run_rows(src, r, out):
    """out[y, x] = max(src[y, x - r .. x + r]) within the row (van Herk / Gil-Werman: three
    comparisons a pixel whatever r, from prefix and suffix maxima over blocks of 2r + 1)."""
    H, W = src.shape
    k = 2 * r + 1
    g = np.empty(W, src.dtype)
    h = np.empty(W, src.dtype)
    for y in range(H):
        row = src[y]
        for b in range(0, W, k):
            e = min(b + k, W)
            g[b] = row[b]
            for x in range(b + 1, e):
                g[x] = max(g[x - 1], row[x])
            h[e - 1] = row[e - 1]
            for x in range(e - 2, b - 1, -1):
                h[x] = max(h[x + 1], row[x])
        for x in range(W):
            lo = max(x - r, 0)
            hi = min(x + r, W - 1)
            # [lo, hi] spans at most two blocks: the suffix max of lo's block and the prefix max to hi
            out[y, x] = max(h[lo], g[hi]) if lo // k != hi // k else _block_max(row, lo, hi)


@njit
def _block_max(row, lo, hi):
    m = row[lo]
    for x in range(lo + 1, hi + 1):
        m = max(m, row[x])
    return m


@njit
def dilate_square(src, r):
    """Grey-level dilation by a (2r+1) x (2r+1) square over src padded with r zeros on every side:
    returns (H + 2r, W + 2r), as cv2.dilate of the padded image with a rectangular kernel."""
    H, W = src.shape
    pad = np.zeros((H + 2 * r, W + 2 * r), src.dtype)
    pad[r:r + H, r:r + W] = src
    rows = np.empty_like(pad)
    _max_run_rows(pad, r, rows)
    cols = np.empty((pad.shape[1], pad.shape[0]), src.dtype)
    out_t = np.empty_like(cols)
    cols[:, :] = rows.T
    _max_run_rows(cols, r, out_t)
    return np.ascontiguousarray(out_t.T)


@njit
def ink_box(crop):
    """(r0, r1, c0, c1): the rows and columns, inclusive, holding pixels > 0 (r1 = -1: none)."""
    H, W = crop.shape
    r0, r1, c0, c1 = H, -1, W, -1
    for y in range(H):
        for x in range(W):
            if crop[y, x] > 0:
                r0 = min(r0, y)
                r1 = max(r1, y)
                c0 = min(c0, x)
                c1 = max(c1, x)
    return r0, r1, c0, c1


@njit
def thicken_radius(crop, thin, stroke, ink):
    """The half-side r of the square that brings the strokes of ``crop`` (ink > 0 marks the digit's
    box, > ``ink`` its stroke cores) to ``stroke`` px once the box's longest side is scaled to 20 px,
    when they would come out thinner than ``thin``; else 0. Dilating by r adds 2r to the stroke and
    to the box: (w + 2r) / (L + 2r) = stroke / 20."""
    r0, r1, c0, c1 = ink_box(crop)
    if r1 < 0:
        return 0
    L = max(r1 - r0 + 1, c1 - c0 + 1)
    w = stroke_width(crop[r0:r1 + 1, c0:c1 + 1], ink)
    if w <= 0 or w * 20.0 / L >= thin:
        return 0
    r = (stroke * L - 20.0 * w) / (40.0 - 2.0 * stroke)
    return int(r + 0.5) if r >= 0.5 else 0


def thicken(crop, thin=THIN, stroke=STROKE, ink=INK):
    """``crop`` (white ink on black, stretched so ink peaks near 255) dilated so that strokes that
    would come out thinner than ``thin`` at MNIST's scale come out ``stroke`` px wide; the crop
    itself otherwise."""
    if not isinstance(crop, np.ndarray) or crop.ndim != 2 or crop.dtype not in (np.uint8, np.float32):
        what = f"{crop.dtype} {crop.shape}" if isinstance(crop, np.ndarray) else type(crop).__name__
        raise ValueError(f"thicken: crop must be a 2-D uint8 or float32 array, got {what}")
    r = thicken_radius(crop, float(thin), float(stroke), crop.dtype.type(ink))
    return dilate_square(crop, r) if r else crop
