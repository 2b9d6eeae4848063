"""Single-image preprocessing "the MNIST way", shared by ``edgecnn predict`` and ``edgecnn live``.

MNIST digits were made like this (LeCun et al.): the ink's bounding box scaled so its longest side is
20 px (aspect kept, anti-aliased), placed in a 28x28 field, shifted so the centre of mass sits at the
centre (pixel index 14, 14 in MNIST: its mean centre of mass is (13.99, 14.01), spread 0.29 px, i.e.
whole-pixel shifts). Digits are light on a dark (0) background. ``to_mnist_28`` reproduces that from a
photo or crop of dark ink on light paper (or light on dark), uint8 in, uint8 out; the model's own
normalization is applied afterwards by the Classifier.
"""
import numpy as np

from .strokes import thicken

BOX = 20           # longest side of the digit after scaling
SIZE = 28          # MNIST field
CENTRE = 14.0      # where MNIST's centre of mass sits (row, column)
CORE = 0.30        # a pixel is ink when above 30% of the ink level over the background ...
FAINT = 0.05       # ... and anti-aliased edge when above 5% and within 2 px of ink
MIN_CONTRAST = 24  # ink level minus background below this: no digit, return a blank field


def to_mnist_28(image, invert=None):
    """Return the MNIST-style uint8 (28, 28) rendering of a grayscale (or BGR) uint8 image or crop.

    ``invert``: None decides from the border (light paper -> dark ink, so invert), True/False forces.
    A blank or contrast-free image gives an all-zero field.
    """
    import cv2

    img = _as_gray_uint8(image, cv2)
    f = img.astype(np.float32)
    if invert is None:
        invert = _light_background(img)
    if invert:
        f = np.float32(255) - f
    u8 = f.astype(np.uint8)
    thr, _ = cv2.threshold(u8, 0, 255, cv2.THRESH_BINARY | cv2.THRESH_OTSU)
    hist = np.bincount(u8.ravel(), minlength=256).astype(np.int64)
    t = int(thr) + 1
    low, high = hist[:t], hist[t:]
    if high.sum() == 0 or low.sum() == 0:
        return np.zeros((SIZE, SIZE), np.uint8)
    bg = _quantile(low, 0.5)                  # background: median of the dark class
    ink = t + _quantile(high, 0.9)            # ink: 90th percentile of the bright class
    if ink - bg < MIN_CONTRAST:
        return np.zeros((SIZE, SIZE), np.uint8)
    f = np.clip((f - np.float32(bg)) * np.float32(255.0 / (ink - bg)), 0, 255).astype(np.float32)

    core = _main_components((f > CORE * 255).astype(np.uint8), cv2)
    if not core.any():
        return np.zeros((SIZE, SIZE), np.uint8)
    near = cv2.dilate(core, np.ones((3, 3), np.uint8), iterations=2).astype(bool)
    f[~(near & (f > FAINT * 255))] = 0
    ys, xs = np.nonzero(f)
    crop = f[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
    thick = thicken(np.ascontiguousarray(crop))  # pen strokes thinner than MNIST's (edgecnn.strokes)
    if thick is not crop:  # dilated into a margin of r px: crop to the ink again
        ys, xs = np.nonzero(thick)
        crop = thick[ys.min():ys.max() + 1, xs.min():xs.max() + 1]

    h, w = crop.shape
    scale = BOX / max(h, w)
    nh, nw = max(1, int(round(h * scale))), max(1, int(round(w * scale)))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    digit = cv2.resize(crop, (nw, nh), interpolation=interp) if (nh, nw) != (h, w) else crop
    field = np.zeros((SIZE, SIZE), np.float32)
    top, left = (SIZE - nh) // 2, (SIZE - nw) // 2
    field[top:top + nh, left:left + nw] = digit

    mass = float(field.sum())
    if mass <= 0:
        return np.zeros((SIZE, SIZE), np.uint8)
    idx = np.arange(SIZE, dtype=np.float64)
    cy = float(field.sum(axis=1) @ idx) / mass
    cx = float(field.sum(axis=0) @ idx) / mass
    field = _shift(field, int(round(CENTRE - cy)), int(round(CENTRE - cx)))
    return np.clip(np.rint(field), 0, 255).astype(np.uint8)


def _as_gray_uint8(image, cv2):
    a = np.asarray(image)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim == 3 and a.shape[2] in (3, 4):
        a = np.ascontiguousarray(a)
        if a.dtype != np.uint8:
            a = np.clip(a, 0, 255).astype(np.uint8)
        a = cv2.cvtColor(a, cv2.COLOR_BGR2GRAY if a.shape[2] == 3 else cv2.COLOR_BGRA2GRAY)
    if a.ndim != 2 or a.size == 0:
        raise ValueError(f"to_mnist_28: image must be a non-empty 2-D grayscale or (H, W, 3) BGR array, "
                         f"got shape {a.shape}")
    if a.dtype != np.uint8:
        if not np.issubdtype(a.dtype, np.number) or np.issubdtype(a.dtype, np.complexfloating):
            raise TypeError(f"to_mnist_28: image must be numeric, got dtype {a.dtype}")
        a = np.clip(np.nan_to_num(a.astype(np.float64)), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(a)


def _quantile(hist, q):
    """The q-quantile (as a bin index) of the values counted in ``hist``."""
    c = np.cumsum(hist)
    return float(np.searchsorted(c, q * c[-1]))


def _light_background(img):
    """Paper is light when the image border is brighter than mid-grey (median of the border pixels)."""
    if min(img.shape) < 3:
        return float(np.median(img)) > 127
    border = np.concatenate([img[0], img[-1], img[1:-1, 0], img[1:-1, -1]])
    return float(np.median(border)) > 127


def _main_components(mask, cv2):
    """Keep connected ink components of at least 10% of the largest one's area (drops specks)."""
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    if n <= 2:
        return mask
    areas = stats[1:, cv2.CC_STAT_AREA]
    keep = np.zeros(n, bool)
    keep[1:] = areas >= 0.1 * areas.max()
    return keep[labels].astype(np.uint8)


def _shift(field, dy, dx):
    out = np.zeros_like(field)
    h, w = field.shape
    ys, yd = (slice(0, h - dy), slice(dy, h)) if dy >= 0 else (slice(-dy, h), slice(0, h + dy))
    xs, xd = (slice(0, w - dx), slice(dx, w)) if dx >= 0 else (slice(-dx, w), slice(0, w + dx))
    if abs(dy) < h and abs(dx) < w:
        out[yd, xd] = field[ys, xs]
    return out
