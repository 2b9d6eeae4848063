"""MNIST digits as if written with a thin pen: the digit's centre line (Zhang-Suen thinning, written
here from the 1984 paper, independent of edgecnn) redrawn with a round pen ``pen`` px wide, at a
larger size. A ballpoint digit held close to a camera looks like this: 150-200 px tall, 2-3 px
strokes. MNIST's own strokes are 3-4 times thicker relative to the digit."""
import numpy as np


def zhang_suen(mask):
    """One-pixel-wide centre line of a binary image (8-connected)."""
    m = (np.asarray(mask) > 0).astype(np.uint8)
    while True:
        changed = False
        for step in (0, 1):
            p = np.pad(m, 1)
            n = [p[:-2, 1:-1], p[:-2, 2:], p[1:-1, 2:], p[2:, 2:],     # P2 .. P9, clockwise from north
                 p[2:, 1:-1], p[2:, :-2], p[1:-1, :-2], p[:-2, :-2]]
            count = sum(v.astype(np.int32) for v in n)
            turns = sum(((n[i] == 0) & (n[(i + 1) % 8] == 1)).astype(np.int32) for i in range(8))
            P2, P4, P6, P8 = n[0], n[2], n[4], n[6]
            if step == 0:
                side = (P2 * P4 * P6 == 0) & (P4 * P6 * P8 == 0)
            else:
                side = (P2 * P4 * P8 == 0) & (P2 * P6 * P8 == 0)
            drop = (m == 1) & (count >= 2) & (count <= 6) & (turns == 1) & side
            if drop.any():
                m[drop] = 0
                changed = True
        if not changed:
            return m


def pen_digit(digit28, size, pen):
    """float32 (size, size) ink coverage in [0, 1] of ``digit28`` (MNIST uint8) redrawn at ``size`` px
    along its centre line with a round pen ``pen`` px wide, lightly anti-aliased."""
    import cv2
    up = cv2.resize(digit28, (size, size), interpolation=cv2.INTER_CUBIC)
    line = zhang_suen(up > 127)
    ink = cv2.dilate(line, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (pen, pen))) if pen > 1 else line
    return cv2.GaussianBlur(ink.astype(np.float32), (3, 3), 0)


def on_paper(ink, rng, margin=30, paper=215.0, depth=180.0, noise=4.0):
    """uint8 photo of ``ink`` (coverage in [0, 1]) as dark ink on light paper with sensor noise."""
    page = paper - depth * np.pad(ink, margin)
    return np.clip(page + rng.normal(0, noise, page.shape), 0, 255).astype(np.uint8)
