"""MNIST-style normalization of one digit crop (fallback used only when edgecnn.digits is absent).

MNIST's recipe: the digit's bounding box, longest side scaled to 20 px keeping the aspect ratio (with
anti-aliasing), placed in a 28x28 field so that its centre of mass sits at pixel (14, 14).
"""
import numpy as np

from ._jit import njit
from .live_kernels import paint_crop_cpu, stretch_cpu
from .strokes import INK, STROKE, THIN, dilate_square, ink_box, thicken_radius


@njit
def _resample_axis_weights(n_in, n_out):
    """Weights of a 1-D area (box) resampler: output i averages input [i*s, (i+1)*s), s = n_in/n_out;
    when enlarging (s < 1) it falls back to linear interpolation between pixel centres."""
    s = n_in / n_out
    idx = np.zeros((n_out, 2), np.int64)
    wts = np.zeros((n_out, n_in), np.float32)
    for i in range(n_out):
        if s >= 1.0:
            a = i * s
            b = (i + 1) * s
            j0 = int(a)
            j1 = min(int(np.ceil(b)), n_in)
            for j in range(j0, j1):
                cover = min(b, j + 1.0) - max(a, float(j))
                if cover > 0:
                    wts[i, j] = np.float32(cover / s)
            idx[i, 0] = j0
            idx[i, 1] = j1
        else:
            c = (i + 0.5) * s - 0.5
            if c < 0:
                c = 0.0
            j0 = min(int(c), n_in - 1)
            j1 = min(j0 + 1, n_in - 1)
            f = c - j0
            wts[i, j0] += np.float32(1 - f)
            wts[i, j1] += np.float32(f)
            idx[i, 0] = j0
            idx[i, 1] = j1 + 1
    return idx, wts


@njit
def to_mnist_28_cpu(crop, out):
    """crop: uint8 (h, w), white ink on black; out: uint8 (28, 28). Uses the bounding box of ink > 0."""
    r0, r1, c0, c1 = ink_box(crop)
    if r1 < 0:
        out[:, :] = 0
        return
    crop = crop[r0:r1 + 1, c0:c1 + 1]
    h, w = crop.shape
    longest = max(h, w)
    nh = max(1, int(round(h * 20.0 / longest)))
    nw = max(1, int(round(w * 20.0 / longest)))
    iy, wy = _resample_axis_weights(h, nh)
    ix, wx = _resample_axis_weights(w, nw)
    tmp = np.zeros((h, nw), np.float32)
    for y in range(h):
        for i in range(nw):
            s = np.float32(0)
            for j in range(ix[i, 0], ix[i, 1]):
                s += wx[i, j] * np.float32(crop[y, j])
            tmp[y, i] = s
    box = np.zeros((nh, nw), np.float32)
    m = np.float32(0)
    my = np.float32(0)
    mx = np.float32(0)
    for i in range(nh):
        for x in range(nw):
            s = np.float32(0)
            for j in range(iy[i, 0], iy[i, 1]):
                s += wy[i, j] * tmp[j, x]
            box[i, x] = s
            m += s
            my += s * np.float32(i)
            mx += s * np.float32(x)
    out[:, :] = 0
    if m <= 0:
        oy = (28 - nh) // 2
        ox = (28 - nw) // 2
    else:
        oy = int(np.floor(np.float32(14) - my / m + np.float32(0.5)))
        ox = int(np.floor(np.float32(14) - mx / m + np.float32(0.5)))
    for i in range(nh):
        yy = i + oy
        if yy < 0 or yy >= 28:
            continue
        for x in range(nw):
            xx = x + ox
            if 0 <= xx < 28:
                v = box[i, x] + np.float32(0.5)
                out[yy, xx] = np.uint8(min(v, np.float32(255)))


def to_mnist_28(crop):
    """uint8 (h, w) white-on-black crop -> uint8 (28, 28) the MNIST way."""
    crop = np.ascontiguousarray(crop, dtype=np.uint8)
    if crop.ndim != 2 or crop.size == 0:
        raise ValueError(f"to_mnist_28: crop must be a non-empty 2-D uint8 array, got shape {crop.shape}")
    out = np.empty((28, 28), np.uint8)
    to_mnist_28_cpu(crop, out)
    return out


@njit
def normalize_candidates_cpu(gray, paper, tile, rrow, rx0, rx1, comp, cand_of_comp, boxes, low, out):
    """All candidates in one call: crop with a 1 px margin (the anti-aliased edge the threshold cut
    off), blank other components, stretch the darkest stroke to 255, thicken strokes thinner than
    MNIST's (edgecnn.strokes), then the MNIST recipe."""
    h, w = gray.shape
    for c in range(boxes.shape[0]):
        a0 = max(boxes[c, 0] - 1, 0)
        b0 = max(boxes[c, 1] - 1, 0)
        a1 = min(boxes[c, 2] + 1, w)
        b1 = min(boxes[c, 3] + 1, h)
        crop = np.empty((b1 - b0, a1 - a0), np.uint8)
        peak = paint_crop_cpu(gray, paper, tile, rrow, rx0, rx1, comp, cand_of_comp, c, a0, b0, a1, b1, low,
                              crop)
        stretch_cpu(crop, peak)
        r = thicken_radius(crop, THIN, STROKE, np.uint8(INK))
        to_mnist_28_cpu(dilate_square(crop, r) if r else crop, out[c])
