"""Random affine augmentation (shift, rotation, scaling) for digit images, seeded and Numba-fast.

Per-image parameters are drawn with NumPy in the calling thread, turned into inverse affine maps
(output pixel -> input coordinate, float32), and one ``@njit(parallel=True)`` kernel warps every image
with bilinear sampling (zero outside the image, MNIST's background). Each output pixel depends only
on its own map and the input, so results are identical for any thread count.
"""
import math
import numbers

import numpy as np

from numba import prange

from ._jit import njit
from .kernels._common import check_array, check_out

__all__ = ["Augment", "affine_warp_bilinear_cpu", "inverse_maps"]


@njit(parallel=True)
def affine_warp_bilinear_cpu(x, maps, out):
    """out[k, i, j] = bilinear sample of x[k] at (maps[k,0]*j + maps[k,1]*i + maps[k,2],
    maps[k,3]*j + maps[k,4]*i + maps[k,5]) as (column, row); samples outside the image read 0.

    x: (N, H, W) uint8 or float32; maps: (N, 6) float32; out: (N, Ho, Wo) float32.
    """
    n, h, w = x.shape
    ho, wo = out.shape[1], out.shape[2]
    one = np.float32(1.0)
    zero = np.float32(0.0)
    for t in prange(n * ho):  # one output row per iteration: disjoint writes
        k = t // ho
        i = np.float32(t - k * ho)
        a0, a1, a2 = maps[k, 0], maps[k, 1], maps[k, 2]
        a3, a4, a5 = maps[k, 3], maps[k, 4], maps[k, 5]
        row_x = a1 * i + a2
        row_y = a4 * i + a5
        for j in range(wo):
            jf = np.float32(j)
            sx = a0 * jf + row_x
            sy = a3 * jf + row_y
            fx0 = np.floor(sx)
            fy0 = np.floor(sy)
            x0 = int(fx0)
            y0 = int(fy0)
            if x0 < -1 or y0 < -1 or x0 >= w or y0 >= h:
                out[k, t - k * ho, j] = zero
                continue
            fx = sx - fx0
            fy = sy - fy0
            v00 = zero
            v01 = zero
            v10 = zero
            v11 = zero
            if y0 >= 0:
                if x0 >= 0:
                    v00 = np.float32(x[k, y0, x0])
                if x0 + 1 < w:
                    v01 = np.float32(x[k, y0, x0 + 1])
            if y0 + 1 < h:
                if x0 >= 0:
                    v10 = np.float32(x[k, y0 + 1, x0])
                if x0 + 1 < w:
                    v11 = np.float32(x[k, y0 + 1, x0 + 1])
            top = (one - fx) * v00 + fx * v01
            bottom = (one - fx) * v10 + fx * v11
            out[k, t - k * ho, j] = (one - fy) * top + fy * bottom


def inverse_maps(dx, dy, angle_deg, scale, height, width, out=None):
    """Inverse maps (N, 6) float32 for: scale and rotate by ``angle_deg`` about the image centre, then
    shift by (dx, dy) pixels. Computed in float64, rounded once."""
    cy, cx = (height - 1) / 2.0, (width - 1) / 2.0
    theta = np.deg2rad(angle_deg)
    c, s = np.cos(theta) / scale, np.sin(theta) / scale
    # forward: p_out = scale * R(theta) (p_in - centre) + centre + shift
    # inverse: p_in = R(-theta) / scale (p_out - centre - shift) + centre
    ux, uy = cx + dx, cy + dy
    maps = np.empty((np.shape(dx)[0], 6), np.float64)
    maps[:, 0], maps[:, 1] = c, s
    maps[:, 2] = cx - (c * ux + s * uy)
    maps[:, 3], maps[:, 4] = -s, c
    maps[:, 5] = cy - (-s * ux + c * uy)
    if out is None:
        return maps.astype(np.float32)
    out[...] = maps
    return out


def _setting(name, value, lo, hi):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"Augment: {name} must be a finite number, got {value!r}")
    if not lo <= value < hi:
        raise ValueError(f"Augment: {name} must be in [{lo}, {hi}), got {value!r}")
    return float(value)


class Augment:
    """Random shifts (up to ``shift`` pixels per axis), rotations (up to ``rotate`` degrees either way)
    and scaling (factor in [1 - scale, 1 + scale]), drawn uniformly and independently per image.

    ``apply(images, out=None, rng=None)`` -> float32 (N, 1, H, W) pixel values (0..255 for uint8 input,
    not normalized). ``rng`` (a numpy Generator) defaults to this object's own generator, seeded by
    ``seed``; ``Batches`` passes one derived from (seed, epoch, batch) so runs resume exactly.
    """

    def __init__(self, shift=2, rotate=10, scale=0.1, seed=0):
        self.shift = _setting("shift", shift, 0.0, 14.0)
        self.rotate = _setting("rotate", rotate, 0.0, 180.0)
        self.scale = _setting("scale", scale, 0.0, 1.0)
        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
            raise ValueError(f"Augment: seed must be a non-negative int, got {seed!r}")
        self.seed = int(seed)
        self.rng = np.random.default_rng(self.seed)
        self._u = np.empty((0, 4), np.float64)  # reused parameter buffers (grown on demand)
        self._maps = np.empty((0, 6), np.float32)

    def draw(self, n, rng=None):
        """(dx, dy, angle_deg, scale) arrays for ``n`` images; one (n, 4) uniform draw, in a fixed order."""
        rng = self.rng if rng is None else rng
        if self._u.shape[0] != n:
            self._u = np.empty((n, 4), np.float64)
        u = rng.random(out=self._u)
        u *= 2.0
        u -= 1.0  # uniform in [-1, 1)
        return (self.shift * u[:, 0], self.shift * u[:, 1], self.rotate * u[:, 2], 1.0 + self.scale * u[:, 3])

    def apply(self, images, out=None, rng=None):
        op = "Augment.apply"
        if isinstance(images, np.ndarray) and images.dtype not in (np.uint8, np.float32):
            raise TypeError(f"{op}: images must be uint8 or float32, got {images.dtype.name} "
                            f"with shape {images.shape}")
        dtype = images.dtype if isinstance(images, np.ndarray) else np.uint8
        check_array(op, "images", images, (3, 4), dtype)
        if images.ndim == 4:
            if images.shape[1] != 1:
                raise ValueError(f"{op}: images must have shape (N, H, W) or (N, 1, H, W), "
                                 f"got {images.shape}")
            images = images.reshape(images.shape[0], images.shape[2], images.shape[3])
        n, h, w = images.shape
        out = check_out(op, "out", out, (n, 1, h, w))
        if out is images or np.shares_memory(out, images):
            raise ValueError(f"{op}: out must not overlap images (the warp reads neighbours)")
        if rng is not None and not isinstance(rng, np.random.Generator):
            raise TypeError(f"{op}: rng must be a numpy.random.Generator, got {type(rng).__name__}")
        dx, dy, angle, scale = self.draw(n, rng)
        if self._maps.shape[0] != n:
            self._maps = np.empty((n, 6), np.float32)
        inverse_maps(dx, dy, angle, scale, h, w, out=self._maps)
        affine_warp_bilinear_cpu(images, self._maps, out.reshape(n, h, w))
        return out

    def get_state(self):
        """The own generator's state (JSON-able)."""
        return self.rng.bit_generator.state

    def set_state(self, state):
        self.rng.bit_generator.state = state

    def to_config(self):
        return {"shift": self.shift, "rotate": self.rotate, "scale": self.scale, "seed": self.seed}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        return f"Augment(shift={self.shift}, rotate={self.rotate}, scale={self.scale}, seed={self.seed})"
