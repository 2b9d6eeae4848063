"""float64 references for affine augmentation, from the definitions.

* ``affine_forward_matrix_ref``: the 3x3 homogeneous matrix of "scale s and rotate by theta about the
  image centre, then shift by (dx, dy)", composed from elementary matrices.
* ``bilinear_warp_ref``: out[i, j] = bilinear interpolation of img at (x, y) = M_inv @ (j, i, 1), where
  pixels outside the image are 0 (zero padding), computed pixel by pixel.
"""
import math

import numpy as np


def affine_forward_matrix_ref(dx, dy, angle_deg, scale, height, width):
    cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
    t = math.radians(angle_deg)
    to_origin = np.array([[1, 0, -cx], [0, 1, -cy], [0, 0, 1]], np.float64)
    rot = np.array([[math.cos(t), -math.sin(t), 0], [math.sin(t), math.cos(t), 0], [0, 0, 1]], np.float64)
    scl = np.diag([scale, scale, 1.0])
    back = np.array([[1, 0, cx + dx], [0, 1, cy + dy], [0, 0, 1]], np.float64)
    return back @ scl @ rot @ to_origin


def bilinear_warp_ref(img, inv_map):
    """img (H, W); inv_map (2, 3) or (6,): output pixel (row i, col j) -> input (x=col, y=row)."""
    img = np.asarray(img, np.float64)
    m = np.asarray(inv_map, np.float64).reshape(2, 3)
    h, w = img.shape
    padded = np.zeros((h + 2, w + 2))
    padded[1:-1, 1:-1] = img

    def pixel(y, x):  # zero outside
        return padded[y + 1, x + 1] if -1 <= y <= h and -1 <= x <= w else 0.0

    out = np.zeros((h, w))
    for i in range(h):
        for j in range(w):
            x = m[0, 0] * j + m[0, 1] * i + m[0, 2]
            y = m[1, 0] * j + m[1, 1] * i + m[1, 2]
            x0, y0 = math.floor(x), math.floor(y)
            fx, fy = x - x0, y - y0
            out[i, j] = ((1 - fy) * ((1 - fx) * pixel(y0, x0) + fx * pixel(y0, x0 + 1))
                         + fy * ((1 - fx) * pixel(y0 + 1, x0) + fx * pixel(y0 + 1, x0 + 1)))
    return out
