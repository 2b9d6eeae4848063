"""Random affine augmentation (shift, rotation, scaling) for digit images, seeded and Numba-fast.

Per-image parameters are drawn with NumPy in the calling thread, turned into inverse affine maps
(output pixel -> input coordinate, float32), and one ``@njit(parallel=True)`` kernel warps every image
with bilinear sampling (zero outside the image, MNIST's background). Each output image depends only
on its own map and input image (per-thread scratch is fully rewritten before it is read), so results
are identical for any thread count.
"""
import math
import numbers

import numpy as np

import numba
from numba import get_thread_id, prange

from ._jit import njit
from .kernels._common import check_array, check_out, check_shape

__all__ = ["Augment", "affine_warp", "affine_warp_bilinear_cpu", "inverse_maps", "warp_scratch"]


@njit(parallel=True)
def affine_warp_bilinear_cpu(x, maps, out, pad, idx, fbuf):
    """out[k, i, j] = bilinear sample of x[k] at (maps[k,0]*j + maps[k,1]*i + maps[k,2],
    maps[k,3]*j + maps[k,4]*i + maps[k,5]) as (column, row); samples outside the image read 0.

    x: (N, H, W) uint8 or float32; maps: (N, 6) float32; out: (N, Ho, Wo) float32.
    Per-thread scratch (row = numba.get_thread_id()): pad (T, (H+3)*(W+3)) float32,
    idx (T, Ho*Wo) int32, fbuf (T, 6, Ho*Wo) float32. One image per prange iteration, in three
    passes: coordinates (vectorized), a scalar gather of the four neighbours from a zero-padded
    float32 copy (no bounds branches), then the blend (vectorized). Coordinates are clamped to
    [-1, W] x [-1, H] (NaN to -1), where the padding makes every sample 0, so no read is out of range.
    """
    n, h, w = x.shape
    ho, wo = out.shape[1], out.shape[2]
    wp = w + 3
    npx = ho * wo
    one = np.float32(1.0)
    zero = np.float32(0.0)
    lo = np.float32(-1.0)
    hx = np.float32(w)
    hy = np.float32(h)
    for k in prange(n):
        tid = get_thread_id()
        if tid < pad.shape[0]:
            p, ix, fb = pad[tid], idx[tid], fbuf[tid]
        else:  # more threads than scratch rows (should not happen): private scratch
            p = np.empty((h + 3) * wp, np.float32)
            ix = np.empty(npx, np.int32)
            fb = np.empty((6, npx), np.float32)
        fx_, fy_, g0, g1, g2, g3 = fb[0], fb[1], fb[2], fb[3], fb[4], fb[5]
        for c in range((h + 3) * wp):
            p[c] = zero
        for r in range(h):
            for c in range(w):
                p[(r + 1) * wp + c + 1] = np.float32(x[k, r, c])
        a0, a1, a2 = maps[k, 0], maps[k, 1], maps[k, 2]
        a3, a4, a5 = maps[k, 3], maps[k, 4], maps[k, 5]
        for r in range(ho):
            i = np.float32(r)
            row_x = a1 * i + a2
            row_y = a4 * i + a5
            base = r * wo
            for j in range(wo):
                jf = np.float32(j)
                sx = a0 * jf + row_x
                sy = a3 * jf + row_y
                sx = sx if sx > lo else lo  # written so that NaN becomes lo
                sx = sx if sx < hx else hx
                sy = sy if sy > lo else lo
                sy = sy if sy < hy else hy
                fx0 = np.floor(sx)
                fy0 = np.floor(sy)
                fx_[base + j] = sx - fx0
                fy_[base + j] = sy - fy0
                ix[base + j] = np.int32(fy0 + one) * np.int32(wp) + np.int32(fx0 + one)
        for q in range(npx):
            t = ix[q]
            g0[q] = p[t]
            g1[q] = p[t + 1]
            g2[q] = p[t + wp]
            g3[q] = p[t + wp + 1]
        o = out[k].ravel()
        for q in range(npx):
            f = fx_[q]
            top = g0[q] + f * (g1[q] - g0[q])
            bottom = g2[q] + f * (g3[q] - g2[q])
            o[q] = top + fy_[q] * (bottom - top)


def warp_scratch(height, width, out_height=None, out_width=None):
    """Per-thread scratch buffers (pad, idx, fbuf) for affine_warp_bilinear_cpu."""
    npx = (out_height or height) * (out_width or width)
    t = numba.config.NUMBA_NUM_THREADS
    return (np.empty((t, (height + 3) * (width + 3)), np.float32), np.empty((t, npx), np.int32),
            np.empty((t, 6, npx), np.float32))


def affine_warp(images, maps, out=None, scratch=None):
    """Validated host entry point: warp uint8/float32 (N, H, W) images with float32 (N, 6) inverse maps
    into float32 (N, H, W) (``out``); ``scratch`` from ``warp_scratch`` may be reused between calls."""
    op = "affine_warp"
    if isinstance(images, np.ndarray) and images.dtype not in (np.uint8, np.float32):
        raise TypeError(f"{op}: images must be uint8 or float32, got {images.dtype.name} with shape "
                        f"{images.shape}")
    check_array(op, "images", images, 3, images.dtype if isinstance(images, np.ndarray) else np.uint8)
    n, h, w = images.shape
    check_array(op, "maps", maps, 2)
    check_shape(op, "maps", maps, (n, 6))
    if not np.isfinite(maps).all():
        raise ValueError(f"{op}: maps must be finite")
    out = check_out(op, "out", out, (n, h, w))
    if np.shares_memory(out, images):
        raise ValueError(f"{op}: out must not overlap images")
    if scratch is None:
        scratch = warp_scratch(h, w)
    pad, idx, fbuf = scratch
    t = numba.config.NUMBA_NUM_THREADS
    check_out(op, "scratch[0]", pad, (t, (h + 3) * (w + 3)))
    check_out(op, "scratch[1]", idx, (t, h * w), np.int32)
    check_out(op, "scratch[2]", fbuf, (t, 6, h * w))
    affine_warp_bilinear_cpu(images, maps, out, pad, idx, fbuf)
    return out


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
        self._scratch, self._scratch_key = None, None

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
        if self._scratch_key != (h, w):
            self._scratch, self._scratch_key = warp_scratch(h, w), (h, w)
        affine_warp_bilinear_cpu(images, self._maps, out.reshape(n, h, w), *self._scratch)
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
