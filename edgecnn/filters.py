"""Classic image filters of the course material, on edgecnn's own Numba kernels, equal to OpenCV.

    from edgecnn import filters
    filters.names()                                  # every filter by name
    k = filters.kernel("sobel_x")                    # float32 2-D kernel (cross-correlation)
    y = filters.apply(frame, "gaussian", ksize=5, sigma=1.2, border="replicate")
    chain = filters.FilterChain(["gray", ("gaussian", {"ksize": 5}), "sobel_x"])
    y = chain.apply(bgr_frame); cfg = chain.to_config(); w = chain.as_conv_kernels()

Images are (H, W) or (H, W, C) uint8 or float32 arrays (C-contiguous). Outputs follow OpenCV's
``ddepth=-1``: uint8 in -> uint8 out with OpenCV's rounding and saturation (negative edge responses
clip to 0), float32 in -> float32 out. Kernels are cross-correlations anchored at (kh // 2, kw // 2),
like cv2.filter2D. Sizes are (height, width), NumPy order (OpenCV's ``ksize`` is (width, height)).
Exceptions: "gradient_orientation" always returns float32 radians in [0, 2*pi) (like cv2.phase) and
"gray" returns one channel (like cv2.cvtColor BGR2GRAY).
"""
import json
import math
import numbers
import time

import numpy as np

from . import _spin_pool
from ._spin_pool import thread_count as _threads
from .kernels._common import as_int, check_array, check_out, is_device_array

BORDERS = {"reflect101": 0, "reflect_101": 0, "default": 0, "constant": 1, "replicate": 2}

_INT_KERNELS = {  # 2-D integer kernels that are not separable
    "laplacian4": [[0, 1, 0], [1, -4, 1], [0, 1, 0]],
    "laplacian8": [[1, 1, 1], [1, -8, 1], [1, 1, 1]],
    "sharpen": [[0, -1, 0], [-1, 5, -1], [0, -1, 0]],
}
_SEP_KERNELS = {  # separable integer kernels as (column kernel ky, row kernel kx)
    "vertical_edge": ([1, 1, 1], [1, 0, -1]),
    "horizontal_edge": ([1, 0, -1], [1, 1, 1]),
    "diagonal_edge": ([1, 0, -1], [1, 0, -1]),
    "scharr_x": ([3, 10, 3], [-1, 0, 1]),
    "scharr_y": ([-1, 0, 1], [3, 10, 3]),
}
_ALIASES = {"laplacian": "laplacian4", "sobel": "sobel_x", "scharr": "scharr_x", "blur": "box",
            "gaussian_blur": "gaussian", "magnitude": "gradient_magnitude",
            "orientation": "gradient_orientation", "custom": "kernel", "grey": "gray"}
_PARAMS = {  # name -> allowed parameters with defaults
    "sobel_x": {"ksize": 3}, "sobel_y": {"ksize": 3},
    "box": {"ksize": 3},
    "gaussian": {"ksize": 3, "sigma": 0.0},
    "gradient_magnitude": {"operator": "sobel"}, "gradient_orientation": {"operator": "sobel"},
    "kernel": {"kernel": None},
}
_NONLINEAR = {"gradient_magnitude", "gradient_orientation"}


def names():
    """Every filter name accepted by apply() and kernel() (aliases excluded)."""
    return sorted(set(_INT_KERNELS) | set(_SEP_KERNELS) | set(_PARAMS) | {"gray"})


# ------------------------------------------------------------------------------------ kernels
def _canonical(op, name):
    if not isinstance(name, str):
        raise TypeError(f"{op}: filter must be a name or a 2-D kernel array, got {type(name).__name__}")
    key = name.strip().lower().replace("-", "_")
    key = _ALIASES.get(key, key)
    if key not in names():
        raise ValueError(f"{op}: unknown filter {name!r}; known filters: {', '.join(names())}")
    return key


def _params(op, name, params):
    allowed = _PARAMS.get(name, {})
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        want = ", ".join(allowed) if allowed else "none"
        raise ValueError(f"{op}: unknown parameter(s) {', '.join(unknown)} for filter {name!r} "
                         f"(accepted: {want})")
    return {**allowed, **params}


def _pair(op, name, value, minimum):
    """int or (height, width) of ints >= minimum."""
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"{op}: {name} must be an int or (height, width), got {value!r}")
        return tuple(as_int(op, name, v, minimum) for v in value)
    v = as_int(op, name, value, minimum)
    return (v, v)


def _sigma_pair(op, value):
    vals = value if isinstance(value, (tuple, list)) else (value, value)
    if len(vals) != 2:
        raise ValueError(f"{op}: sigma must be a number or (sigma_y, sigma_x), got {value!r}")
    out = []
    for v in vals:
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v):
            raise TypeError(f"{op}: sigma must be a finite number or a pair, got {value!r}")
        out.append(max(float(v), 0.0))
    return tuple(out)


def _deriv_kernel(ksize, order):
    """cv2.getDerivKernels' 1-D kernel: binomial smoothing with ``order`` differences."""
    if ksize == 1 and order == 0:
        return [1]
    if ksize == 1:
        ksize = 3
    if ksize == 3:
        return [[1, 2, 1], [-1, 0, 1], [1, -2, 1]][order]
    k = np.array([1], np.int64)
    for _ in range(ksize - 1 - order):
        k = np.convolve(k, [1, 1])
    for _ in range(order):
        k = np.convolve(k, [-1, 1])
    return [int(v) for v in k]


def _sobel(op, name, ksize):
    ksize = as_int(op, "ksize", ksize, 1)
    if ksize not in (1, 3, 5, 7):
        raise ValueError(f"{op}: ksize for {name} must be 1, 3, 5 or 7, got {ksize}")
    if name == "sobel_x":
        return _deriv_kernel(ksize if ksize > 1 else 1, 0), _deriv_kernel(ksize, 1)
    return _deriv_kernel(ksize, 1), _deriv_kernel(ksize if ksize > 1 else 1, 0)


def gaussian_kernel_1d(n, sigma):
    """cv2.getGaussianKernel(n, sigma) in float64, from OpenCV's bit-exact construction."""
    if sigma <= 0:
        tab = {1: [1.0], 3: [0.25, 0.5, 0.25], 5: [0.0625, 0.25, 0.375, 0.25, 0.0625],
               7: [0.03125, 0.109375, 0.21875, 0.28125, 0.21875, 0.109375, 0.03125],
               9: [v / 256 for v in (4, 13, 30, 51, 60, 51, 30, 13, 4)]}
        if n in tab:
            return list(tab[n])
    sig = sigma if sigma > 0 else n * 0.15 + 0.35
    scale2 = -0.125 / (sig * sig)
    half = (n - 1) // 2
    vals = [math.exp(float(x * x) * scale2) for x in range(1 - n, 1 - n + 2 * half, 2)]
    total = 2 * sum(vals) + 1.0 + (1.0 if n % 2 == 0 else 0.0)
    inv = 1.0 / total
    res = [0.0] * n
    for i, v in enumerate(vals):
        res[i] = res[n - 1 - i] = v * inv
    res[half] = inv
    if n % 2 == 0:
        res[half + 1] = inv
    return res


def gaussian_kernel_q8(n, sigma):
    """GaussianBlur's uint8 fixed-point kernel: Q8 integers summing to 256 (error diffusion)."""
    k = gaussian_kernel_1d(n, sigma)
    res = [0] * n
    err, total = 0.0, 0
    for i in range(n // 2):
        adj = k[i] * 256 + err
        v = int(np.rint(adj))
        err = adj - v
        res[i] = res[n - 1 - i] = v
        total += v
    res[n // 2] = 256 - 2 * total
    return res


def _gaussian_sizes(op, ksize, sigma, is_u8):
    sy, sx = _sigma_pair(op, sigma)
    kh, kw = _pair(op, "ksize", ksize, 0)
    if sy <= 0:
        sy = sx
    if sx <= 0:
        sx = sy
    mult = 3 if is_u8 else 4
    if kw == 0 and sx > 0:
        kw = int(np.rint(sx * mult * 2 + 1)) | 1
    if kh == 0 and sy > 0:
        kh = int(np.rint(sy * mult * 2 + 1)) | 1
    for k in (kh, kw):
        if k < 1 or k % 2 == 0:
            raise ValueError(f"{op}: gaussian ksize must be odd (or 0 with sigma > 0), "
                             f"got ksize={ksize!r}, sigma={sigma!r}")
    return kh, kw, sy, sx


def _user_kernel(op, k):
    if k is None:
        raise ValueError(f"{op}: filter 'kernel' needs kernel=<2-D array>")
    a = np.asarray(k)
    if a.ndim != 2 or a.size == 0 or a.dtype.kind not in "biuf":
        raise ValueError(f"{op}: kernel must be a non-empty 2-D numeric array, got shape "
                         f"{a.shape} dtype {a.dtype}")
    a = np.ascontiguousarray(a, dtype=np.float32)
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{op}: kernel must be finite, got shape {a.shape} with inf or nan")
    return a


def kernel(name, **params):
    """The float32 2-D cross-correlation kernel of a linear filter (what cv2.filter2D would use)."""
    op = "filters.kernel"
    if isinstance(name, np.ndarray):
        return _user_kernel(op, name)
    name = _canonical(op, name)
    p = _params(op, name, params)
    if name in _NONLINEAR or name == "gray":
        raise ValueError(f"{op}: {name!r} is not a linear filter and has no kernel")
    if name in _INT_KERNELS:
        return np.array(_INT_KERNELS[name], np.float32)
    if name in _SEP_KERNELS:
        ky, kx = _SEP_KERNELS[name]
    elif name in ("sobel_x", "sobel_y"):
        ky, kx = _sobel(op, name, p["ksize"])
    elif name == "box":
        kh, kw = _pair(op, "ksize", p["ksize"], 1)
        return np.full((kh, kw), 1.0 / (kh * kw), np.float32)
    elif name == "gaussian":
        kh, kw, sy, sx = _gaussian_sizes(op, p["ksize"], p["sigma"], False)
        return np.outer(gaussian_kernel_1d(kh, sy), gaussian_kernel_1d(kw, sx)).astype(np.float32)
    else:  # user kernel
        return _user_kernel(op, p["kernel"])
    return np.outer(np.array(ky, np.float32), np.array(kx, np.float32))


def bank(specs):
    """Several linear filters as one float32 OIHW weight (K, 1, k, k), each kernel centred in the
    largest size: a fixed-weight first conv layer computing K filter responses."""
    ks = []
    for spec in specs:
        name, p = _spec_args(spec)
        p.pop("border", None)
        ks.append(kernel(name, **p))
    if not ks:
        raise ValueError("filters.bank: specs must name at least one filter")
    kh = max(k.shape[0] for k in ks)
    kw = max(k.shape[1] for k in ks)
    if any((kh - k.shape[0]) % 2 or (kw - k.shape[1]) % 2 for k in ks):
        raise ValueError("filters.bank: kernel sizes must differ by even amounts to share a centre, "
                         f"got {[k.shape for k in ks]}")
    w = np.zeros((len(ks), 1, kh, kw), np.float32)
    for i, k in enumerate(ks):
        t, lft = (kh - k.shape[0]) // 2, (kw - k.shape[1]) // 2
        w[i, 0, t:t + k.shape[0], lft:lft + k.shape[1]] = k
    return w


# ------------------------------------------------------------------------------------- apply
def _image(op, image, gray):
    """Check a NumPy or CUDA device image (uint8 or float32, (H, W) or (H, W, C<=4), C-contiguous)."""
    if not (isinstance(image, np.ndarray) or is_device_array(image)):
        raise TypeError(f"{op}: image must be a NumPy or CUDA device array, got {type(image).__name__}")
    shape, dtype = tuple(image.shape), np.dtype(image.dtype)
    if dtype not in (np.uint8, np.float32):
        raise TypeError(f"{op}: image must be uint8 or float32, got {dtype} with shape {shape}")
    check_array(op, "image", image, (2, 3), dtype)
    if image.ndim == 3 and not 1 <= shape[2] <= 4:
        raise ValueError(f"{op}: image must be (H, W) or (H, W, C) with C <= 4, got {shape}")
    if gray and (image.ndim != 3 or shape[2] != 3):
        raise ValueError(f"{op}: gray=True needs a BGR image (H, W, 3), got shape {shape}")
    return image


def _border(op, border):
    key = str(border).lower().replace("-", "_") if isinstance(border, str) else None
    if key not in BORDERS:
        raise ValueError(f"{op}: border must be one of reflect101, constant, replicate, got {border!r}")
    return BORDERS[key]


POST_GAUSS, POST_BOX_DIV, POST_SHIFT, POST_MULHI = 1, 2, 4, 5  # rules shared with _filter_kernels
_PLANS = {}  # (name, params, is_u8) -> _Plan: resolving kernels costs more than filtering small frames
_MAPS = {}   # (n, lo, hi, border) -> border index map


def box_div_consts(area):
    """(delta, mul) of OpenCV's uint8 box division for areas <= 256: (sum + delta) * mul >> 23."""
    mul = (1 << 23) / area
    dv, ds = math.floor(mul), area // 2
    if mul - dv < 0.5:
        ds += 1
    else:
        dv += 1
    return ds, dv


def _key(v):
    if isinstance(v, np.ndarray):
        return ("array", v.shape, str(v.dtype), v.tobytes())
    if isinstance(v, (list, tuple)):
        return tuple(_key(x) for x in v)
    return (type(v).__name__, v)


def _plan(op, name, params, is_u8):
    key = (name, tuple(sorted((k, _key(v)) for k, v in params.items())), is_u8)
    plan = _PLANS.get(key)
    if plan is None:
        plan = _Plan(op, name, params, is_u8)
        if len(_PLANS) > 256:
            _PLANS.clear()
        _PLANS[key] = plan
    return plan


def _border_map(n, lo, hi, border):
    key = (n, lo, hi, border)
    m = _MAPS.get(key)
    if m is None:
        from . import _filter_kernels as K
        m = K.border_map(n, lo, hi, border)
        m.flags.writeable = False
        if len(_MAPS) > 256:
            _MAPS.clear()
        _MAPS[key] = m
    return m


class _Plan:
    """A resolved filter: which kernel runs, with which taps, for one input dtype."""

    def __init__(self, op, name, params, is_u8):
        self.name, self.is_u8 = name, is_u8
        # taps from a small fixed set (not a user kernel or sigma): kernels may compile them in
        self.const_taps = name != "kernel" and not (name == "gaussian" and any(
            v > 0 for v in _sigma_pair(op, params.get("sigma", 0.0))))
        self.out_u8 = is_u8 and name != "gradient_orientation"
        if name == "gray":
            self.kind = "gray"
            return
        if name in _NONLINEAR:
            operator = str(params["operator"]).lower()
            if operator not in ("sobel", "scharr"):
                raise ValueError(f"{op}: operator must be 'sobel' or 'scharr', got {params['operator']!r}")
            self.kind = "gradient"
            a = [1, 2, 1] if operator == "sobel" else [3, 10, 3]
            self.ka = np.array(a, np.float32)
            self.kb = np.array([-1, 0, 1], np.float32)
            self.mode = "gradient"
            self.kh = self.kw = 3
            return
        if name == "gaussian":
            kh, kw, sy, sx = _gaussian_sizes(op, params["ksize"], params["sigma"], is_u8)
            if is_u8:
                self._sep(gaussian_kernel_q8(kh, sy), gaussian_kernel_q8(kw, sx), post=1)
            else:
                self._sep(gaussian_kernel_1d(kh, sy), gaussian_kernel_1d(kw, sx))
            return
        if name == "box":
            kh, kw = _pair(op, "ksize", params["ksize"], 1)
            d = kh * kw
            if not is_u8:
                self._sep([1] * kh, [1] * kw, scale=1.0 / d)
            elif d == 1:
                self._sep([1], [1], post=0)
            elif d <= 256:  # OpenCV ColumnSum<ushort, uchar>: (s + delta) * mul >> 23
                ds, dv = box_div_consts(d)
                self._sep([1] * kh, [1] * kw, post=2, p0=ds, p1=dv)
                # running column sums in uint16 (cost flat in kh) instead of two tap passes
                self.kind = "box"
                if kh <= 5 and kw <= 5:  # compile-time division constants for the common sizes
                    self._box_mulhi(np.ones(kw), np.ones(kh))
            else:  # ColumnSum<int, uchar>: float32 scale in SIMD lanes, double in the tail
                self._sep([1] * kh, [1] * kw, post=3, p0=d)
            return
        if name in _SEP_KERNELS or name in ("sobel_x", "sobel_y"):
            ky, kx = _SEP_KERNELS[name] if name in _SEP_KERNELS else _sobel(op, name, params["ksize"])
            self._sep(ky, kx, post=0)
            return
        k = np.array(_INT_KERNELS[name], np.float32) if name in _INT_KERNELS else \
            _user_kernel(op, params["kernel"])
        self._2d(k)

    def _sep(self, ky, kx, post=0, p0=0, p1=0, scale=1.0):
        self.kind = "sep"
        self.kh, self.kw = len(ky), len(kx)
        kx, ky = np.asarray(kx, np.float64), np.asarray(ky, np.float64)
        self.post, self.p0, self.p1, self.scale = post, int(p0), int(p1), np.float32(scale)
        self.narrow = None
        if self.is_u8 and post in (0, 1, 2):
            # 16-bit lanes when every partial sum fits; the Gaussian's Q8 kernels are divided by
            # their common factors first (multiplied back in the final rounding step).
            gx = gy = 1
            if post == 1:
                gx, gy = np.gcd.reduce(kx.astype(np.int64)), np.gcd.reduce(ky.astype(np.int64))
                kx, ky = kx / gx, ky / gy
                self.p1 = int(gx * gy)
            bound = np.abs(kx).sum() * np.abs(ky).sum() * 255
            nonneg = (kx >= 0).all() and (ky >= 0).all()
            if bound <= 32767:
                self.narrow = "int16"
            elif nonneg and bound <= 65535:
                self.narrow = "uint16"
            elif post == 1:  # float path: undo the factoring
                kx, ky, self.p1 = kx * gx, ky * gy, 0
        if self.kh == 3 and self.kw == 3 and (self.narrow == "int16" or not self.is_u8):
            self.kind = "k3"
            w = np.outer(ky, kx) * (1.0 if self.is_u8 else float(scale))
            self.w3 = w.astype(np.int16 if self.is_u8 else np.float32)
            # the same taps as (ky, kx) for the two-pass 3x3 kernel (6 multiplies, not 9)
            self.w3s = np.stack([ky, kx * (1.0 if self.is_u8 else float(scale))]).astype(self.w3.dtype)
            q = self.p1
            if self.is_u8 and post == 1 and q & (q - 1) == 0 and 1 <= q <= 1 << 15:
                # (v * 2**k + 2**15) >> 16 == (v + 2**(15-k)) >> (16-k), all in int16 lanes
                sh = 16 - (q.bit_length() - 1)
                if np.abs(w).sum() * 255 + (1 << (sh - 1)) <= 32767:
                    self.post, self.p0, self.p1 = 4, 1 << (sh - 1), sh
            self._box_mulhi(kx, ky)
        jx, iy = np.nonzero(kx)[0], np.nonzero(ky)[0]
        wdt = np.dtype(self.narrow) if self.narrow else np.float32
        self.kxj, self.kxw = jx.astype(np.int64), kx[jx].astype(wdt)
        self.kyi, self.kyw = iy.astype(np.int64), ky[iy].astype(wdt)
        if self.kind == "sep" and self.kh <= 5 and self.kw <= 5 and (self.narrow or not self.is_u8):
            # two fused loops per row; taps padded to five with weight 0 at offset 0
            self.kind = "sep5"
            pad = lambda a, n: np.concatenate([a, np.zeros(n - len(a), a.dtype)])  # noqa: E731
            self.kxj5, self.kxw5 = pad(self.kxj, 5), pad(self.kxw, 5)
            self.kyi5, self.kyw5 = pad(self.kyi, 5), pad(self.kyw, 5)
            q = self.p1
            if self.is_u8 and self.post == POST_GAUSS and q & (q - 1) == 0 and 1 <= q <= 1 << 15:
                # (v * 2**k + 2**15) >> 16 == (v + 2**(15-k)) >> (16-k), in the narrow lanes
                sh = 16 - (q.bit_length() - 1)
                lim = 32767 if self.narrow == "int16" else 65535
                if np.abs(kx).sum() * np.abs(ky).sum() * 255 + (1 << (sh - 1)) <= lim:
                    self.post, self.p0, self.p1 = POST_SHIFT, 1 << (sh - 1), sh
            self._box_mulhi(kx, ky)
        elif self.kind == "sep" and self.kh <= 7 and self.kw <= 7 and (
                not self.is_u8 or (self.post == POST_GAUSS and self.narrow is None
                                   and kx.sum() * 255 <= 65535 and ky.sum() * kx.sum() * 255 < 2 ** 31
                                   and (kx >= 0).all() and (ky >= 0).all() and self.p1 == 0)):
            # up to 7x7 (the Q8 Gaussians too big for 16-bit sums): two fused loops per row
            self.kind = "sep7"
            pad = lambda a, n: np.concatenate([a, np.zeros(n - len(a), a.dtype)])  # noqa: E731
            wdt = np.uint16 if self.is_u8 else np.float32
            self.kxj7, self.kxw7 = pad(self.kxj, 7), pad(kx[self.kxj], 7).astype(wdt)
            self.kyi7, self.kyw7 = pad(self.kyi, 7), pad(ky[self.kyi], 7).astype(
                np.int32 if self.is_u8 else np.float32)

    def _box_mulhi(self, kx, ky):
        """OpenCV's box division ((s + p0) * p1) >> 23 as ((s + c) * m >> 16) >> k with 16-bit c
        and m, when some (c, m, k) equals it for every possible sum s (checked exhaustively here):
        the kernels then stay in 16/32-bit lanes instead of 64-bit ones."""
        if not (self.is_u8 and self.post == POST_BOX_DIV):
            return
        area = int(round(kx.sum() * ky.sum()))
        smax = 255 * area
        s = np.arange(smax + 1, dtype=np.int64)
        want = ((s + self.p0) * self.p1) >> 23
        for k in [0] + list(range(15, 0, -1)):  # k = 0: a single 16-bit multiply-high
            mc = int(round((1 << (16 + k)) / area))
            for m in (mc, mc + 1, mc - 1):
                if not 0 < m <= 65535:
                    continue
                for c in range(0, min(area + 1, 65535 - smax)):
                    if np.array_equal((((s + c) * m) >> 16) >> k, want):
                        self.post, self.p0, self.p1, self.mh = POST_MULHI, c, m, k
                        return

    def _2d(self, k):
        self.kind = "2d"
        self.kh, self.kw = k.shape
        ti, tj = np.nonzero(k)  # raster order, as OpenCV's filter2D collects its taps
        taps = k[ti, tj]
        exact = bool(np.all(taps == np.round(taps))) and float(np.abs(taps).sum()) * 255 < 2 ** 24
        # uint8 with integer taps: float32 sums are exact integers in any order (as in OpenCV);
        # other uint8 kernels need OpenCV's exact summation order and rounding.
        self.mode = "u8float" if (self.is_u8 and not exact) else "sum"
        self.narrow = None
        if self.is_u8 and exact and float(np.abs(taps).sum()) * 255 <= 32767:
            self.mode, self.narrow = "sum16", "int16"
            taps = taps.astype(np.int16)
        self.ti, self.tj = ti.astype(np.int64), tj.astype(np.int64)
        self.tk = taps if self.narrow else taps.astype(np.float32)
        if self.kh == 3 and self.kw == 3 and self.mode != "u8float":
            self.kind, self.post, self.p0, self.p1 = "k3", 0, 0, 0
            self.w3 = k.astype(np.int16 if self.is_u8 else np.float32)
        self.rstart = np.searchsorted(ti, np.arange(self.kh + 1)).astype(np.int64)

    def out_shape(self, image, gray):
        H, W = image.shape[:2]
        if self.kind == "gray" or gray or image.ndim == 2:
            return (H, W)
        return (H, W, image.shape[2])

    def bind(self, image, border, gray):
        """The kernel call for one (shape, dtype, border, gray), resolved once: returns
        call(image, out). Only the thread split is decided per call (the count can change)."""
        from . import _filter_kernels as K
        H, W = image.shape[:2]
        cn = 1 if (gray or image.ndim == 2) else image.shape[2]
        big = H >= 16 and H * W * cn >= _PARALLEL_MIN
        u8 = self.is_u8
        if self.kind == "gray":
            ks, args = (K.to_gray[u8, False], K.to_gray[u8, True]), ()  # src: the (H, W, 3) frame
        else:
            top, left = self.kh // 2, self.kw // 2
            rowmap = _border_map(H, top, self.kh - 1 - top, border)
            colmap = _border_map(W, left, self.kw - 1 - left, border)
            nnz = int(np.count_nonzero(self.w3)) if self.kind == "k3" else 0
            sep = getattr(self, "w3s", None) is not None and _K3SEP[0]
            if self.kind == "k3" and not u8 and not gray and (nnz <= 6 or not sep):
                # float32 3x3 streaming the frame in place (no row copies); separable kernels with
                # more taps stay on the two-pass kernel (fewer loads per value: measured faster)
                if self.const_taps:  # a named filter: its taps compiled in
                    ks = (K.k3flat_const(self.w3, False), K.k3flat_const(self.w3, True))
                else:
                    ks = (K.k3flat[False], K.k3flat[True])
                args = (W, cn, rowmap, colmap, self.w3)
            elif self.kind == "k3" and not u8 and not gray and _K3SEPFLAT[0]:
                ks = (K.k3sepflat[False], K.k3sepflat[True])  # source rows read in place
                args = (W, cn, rowmap, colmap, self.w3s)
            elif self.kind == "k3":
                t = "int16" if u8 else "float32"
                sep = getattr(self, "w3s", None) is not None and _K3SEP[0]
                kind = "k3sep" if sep else "k3"
                ks = (K.k3sep[t, False], K.k3sep[t, True]) if sep else (K.k3[t, False], K.k3[t, True])
                if u8 and self.post in (POST_SHIFT, POST_MULHI):
                    c = (self.p0, self.p1, getattr(self, "mh", 0))
                    # a named filter's taps compiled in too (Gaussian's 1 2 1: adds, not multiplies)
                    taps = self.w3s if sep and self.const_taps else None
                    ks = (K.variant(kind, t, False, *c, taps=taps), K.variant(kind, t, True, *c, taps=taps))
                args = (W, cn, gray, rowmap, colmap, self.w3s if sep else self.w3, self.post, self.p0,
                        self.p1, u8)
            elif self.kind == "sep5":
                t = self.narrow or "float32"
                ks = (K.sep5[t, False], K.sep5[t, True])
                if u8 and self.post in (POST_SHIFT, POST_MULHI):
                    c = (self.p0, self.p1, getattr(self, "mh", 0))
                    ks = (K.variant("sep5", t, False, *c), K.variant("sep5", t, True, *c))
                args = (W, cn, gray, u8, rowmap, colmap, left, self.kxj5 * cn, self.kxw5, self.kyi5,
                        self.kyw5, self.kh, self.kw, self.post, self.p0, self.p1, self.scale)
            elif self.kind == "sep7":
                t = "uint16" if u8 else "float32"
                ks = (K.sep7[t, False], K.sep7[t, True])
                args = (W, cn, gray, u8, rowmap, colmap, left, self.kxj7 * cn, self.kxw7, self.kyi7,
                        self.kyw7, self.kh, self.kw, self.scale)
            elif (self.kind == "box" and not gray and self.post == POST_MULHI and self.kh in (3, 5)
                  and (self.kw == 3 or (self.kw == 5 and self.mh <= 4)) and _BOXFLAT[0]):
                # strips of flat vertical-then-horizontal passes (3x3: 0.6x the running sums' time,
                # 5x5: 0.9x)
                c = (self.p0, self.p1, self.mh)
                kind = f"boxflat{self.kh}{self.kw}"
                ks = (K.variant(kind, "uint16", False, *c), K.variant(kind, "uint16", True, *c))
                args = (W, cn, rowmap, colmap)
            elif self.kind == "box":
                ks = (K.box16[False], K.box16[True])
                if self.post == POST_MULHI:
                    c = (self.p0, self.p1, self.mh)
                    ks = (K.variant("box", "uint16", False, *c), K.variant("box", "uint16", True, *c))
                args = (W, cn, gray, rowmap, colmap, self.kh, self.kw, self.post, self.p0, self.p1)
            elif self.kind == "gradient":
                ks = (K.gradient_ser, K.gradient_par)
                args = (W, cn, gray, u8, rowmap, colmap, left, self.ka, self.kb,
                        self.name == "gradient_magnitude")
            elif self.kind == "sep" and self.narrow:
                ks = (K.sep16[self.narrow, False], K.sep16[self.narrow, True])
                args = (W, cn, gray, rowmap, colmap, left, self.kxj * cn, self.kxw, self.kyi,
                        self.kyw, self.kh, self.kw, self.post, self.p0, self.p1)
            elif self.kind == "sep":
                ks = (K.sep_ser, K.sep_par)
                args = (W, cn, gray, u8, rowmap, colmap, left, self.kxj * cn, self.kxw, self.kyi,
                        self.kyw, self.kh, self.kw, self.post, self.p0, self.p1, self.scale)
            elif self.mode == "sum16":
                ks = (K.corr2d16[self.narrow, False], K.corr2d16[self.narrow, True])
                args = (W, cn, gray, rowmap, colmap, left, self.rstart, self.tj * cn, self.tk,
                        self.kh, self.kw)
            elif self.mode == "u8float":
                ks = (K.corr2d_u8float_ser, K.corr2d_u8float_par)
                args = (W, cn, gray, rowmap, colmap, left, self.ti, self.tj, self.tk, self.kh, self.kw)
            else:
                ks = (K.corr2d_ser, K.corr2d_par)
                args = (W, cn, gray, u8, rowmap, colmap, left, self.rstart, self.tj * cn, self.tk,
                        self.kh, self.kw)
        return _bound_call(H, image.ndim == 3 and self.kind != "gray", len(self.out_shape(image, gray)) == 3,
                           big, ks, args, _GRAY_CHUNKS_PER_THREAD if self.kind == "gray" else _SPIN_CHUNKS_PER_THREAD)

    def run(self, image, border, gray, out):
        return self.bind(image, border, gray)(image, out)


def _bound_call(H, flat_src, flat_dst, big, ks, args, per_thread):
    """call(image, out) running the serial kernel ks[0] or the parallel one ks[1] with the fixed
    ``args``. The arrays are the ones apply() validated (C-contiguous, shapes and dtypes of this
    binding), so nothing is checked again: after a frame has streamed through the caches this
    Python is cold, and each step here costs ~0.1-0.5 us of a 30 us call."""
    ser, parf = ks
    if not big:
        def call(image, out):
            ser(image.reshape(H, -1) if flat_src else image, *args, out.reshape(H, -1) if flat_dst else out, 1)
            return out
        return call
    split = max(1, H // 8)
    pick = _Pick()
    token = _spin_pool.new_call_id()
    go = []  # the spin pool's runner for this call, made at its first parallel call

    def runner(src, dst):
        go.append(_spin_pool.POOL.runner(token, ser, src, args, dst))
        return go[0]

    def call(image, out):
        src = image.reshape(H, -1) if flat_src else image
        dst = out.reshape(H, -1) if flat_dst else out
        threads = _threads() if _parallel[0] else 1
        way = pick.way(threads) if threads > 1 else 0
        if way == 0:
            ser(src, *args, dst, 1)
            return out
        t = time.perf_counter() if way > 1 else 0.0  # ways 2 and 3: probes, timed
        if way == 2:
            ser(src, *args, dst, 1)
        # Parallel: the spin pool (its workers read the arrays by address); Numba's OpenMP pool
        # when another Python thread is using the spin pool.
        elif not (_spin[0] and (go[0] if go else runner(src, dst))(
                src, dst, max(threads, min(H // _SPIN_CHUNK_ROWS, per_thread * threads)), threads)):
            parf(src, *args, dst, min(split, threads))
        if way > 1:
            pick.record(way, time.perf_counter() - t)
        return out
    return call


_K3SEP = [True]  # separable 3x3 kernels as two passes (False: the 9-tap one-pass kernel)
_K3SEPFLAT = [True]  # float32 separable 3x3 read in place (False: through a ring of row copies)
_BOXFLAT = [True]  # uint8 boxes of 3 or 5 a side in flat strips (False: the running column sums)
_PARALLEL_MIN = 1 << 15  # elements; below this one thread beats waking the pool
_parallel = [True]
_spin = [True]  # parallel calls on edgecnn._spin_pool (False: Numba's OpenMP pool)
_SPIN_CHUNK_ROWS = 16  # rows per chunk at least (each chunk re-reads kh - 1 rows of halo)
_SPIN_CHUNKS_PER_THREAD = 8  # several per thread: a worker that joins late still gets a share
# BGR->gray streams the frame once with no halo, and every chunk restarts the hardware
# prefetchers: 640x480 float32 at 2 threads took 31.8 us in 16 chunks, 30.5 in 4
_GRAY_CHUNKS_PER_THREAD = 2


def set_parallel(enabled):
    """Run filters on several threads or on the calling thread only.

    Parallel calls split the frame into row chunks over edgecnn's filter pool (_spin_pool: its
    workers spin briefly after a call, so back-to-back calls start in ~2 us; a sleeping OpenMP
    worker takes 50-100 us to wake on a VM), or Numba's OpenMP pool when that pool is busy.
    True (the default): frames of >= 32k values run parallel when it pays; each filter/shape times
    a few calls of both ways and keeps the faster. "always": parallel for every frame of >= 32k
    values. False: the calling thread only (steadier when the cores are busy with other work)."""
    if enabled not in (True, False, "always"):
        raise ValueError(f"set_parallel: enabled must be True, False or 'always', got {enabled!r}")
    _parallel[0] = enabled


_PROBE = 5  # timed calls of each way before choosing
# Each way is judged by its 2nd fastest probe. Interference (another library's workers still
# spinning, a vCPU taken by the host) only ever slows a call, and it hits the parallel way
# harder: with the median, 3 slowed parallel probes out of 5 kept a row serial (1.5x slower).
# The 2nd, not the fastest, so that one lucky call does not decide.
_PROBE_RANK = 1
_REPROBE_FIRST = 64  # calls until the first re-check, doubled while the choice holds
_REPROBE_MAX = 4096  # (load from other processes comes and goes; a wrong choice is undone soon)


class _Pick:
    """Serial or parallel for one bound filter call, by timing: one untimed call each way, then
    ``_PROBE`` timed calls each way, alternating, then the way whose 2nd fastest probe is faster
    (_PROBE_RANK) until the next probe. Probes come ``_REPROBE_FIRST`` calls apart, twice as far
    each time the choice holds, up to ``_REPROBE_MAX``: a choice made while, say, another library's workers were still
    spinning on the cores is revisited within ~80 calls, a steady one costs a probe in thousands.
    way(): 0 serial, 1 parallel, 2 serial timed, 3 parallel timed (then record())."""

    __slots__ = ("n", "threads", "par", "ts", "tp", "every")

    def __init__(self):
        self.threads, self.par, self.every = 0, True, _REPROBE_FIRST
        self._reset()

    def _reset(self):
        self.n, self.ts, self.tp = 0, [], []

    def way(self, threads):
        if _parallel[0] == "always":
            return 1
        if threads != self.threads:  # a new thread count: probe again
            self.threads, self.every = threads, _REPROBE_FIRST
            self._reset()
        self.n += 1
        if self.n <= 2:  # one untimed call each way first: compiling or loading a kernel, starting
            return self.n % 2  # a pool, and the first call on fresh buffers are not what we compare
        if self.n <= 2 + 2 * _PROBE:
            return 3 if self.n % 2 else 2
        if self.n >= self.every:
            self._reset()
            self.n = 2  # the untimed calls are done
        return 1 if self.par else 0

    def record(self, way, seconds):
        (self.tp if way == 3 else self.ts).append(seconds)
        if len(self.ts) == _PROBE and len(self.tp) == _PROBE:
            par = sorted(self.tp)[_PROBE_RANK] < sorted(self.ts)[_PROBE_RANK]
            self.every = min(2 * self.every, _REPROBE_MAX) if par == self.par else _REPROBE_FIRST
            self.par = par


def _resolve(op, name_or_kernel, params):
    if isinstance(name_or_kernel, np.ndarray):
        if params:
            raise ValueError(f"{op}: parameters {sorted(params)} given with a kernel array")
        return "kernel", {"kernel": name_or_kernel}
    name = _canonical(op, name_or_kernel)
    return name, _params(op, name, params)


def apply(image, name_or_kernel, border="reflect101", out=None, gray=False, **params):
    """Filter ``image`` with a named filter (see names()) or a 2-D kernel array.

    border: "reflect101" (OpenCV's default), "constant" (zeros) or "replicate".
    out: optional preallocated output (same shape and dtype rules as the result).
    gray: the input is BGR (H, W, 3); convert it to gray inside the same pass (fused, like
    cv2.cvtColor BGR2GRAY followed by the filter) and return (H, W).
    """
    # Fast path: a call like one already validated (same filter, parameters, border, image shape
    # and dtype) reuses its bound kernel call; only the image and out checks that the key does not
    # cover run here. Anything unusual falls through to the full validation below.
    key = None
    if type(name_or_kernel) is str and type(image) is np.ndarray:
        try:
            key = (name_or_kernel, border, gray, _fast_params(params) if params else (),
                   image.shape, image.dtype.char)
            fast = _FAST.get(key)
        except TypeError:  # unhashable or unusual parameters
            key = fast = None
        if fast is not None:
            fi = image.flags
            if fi.c_contiguous:
                shape, odt, call = fast
                if out is None:
                    return call(image, np.empty(shape, odt))
                if type(out) is np.ndarray and out.shape == shape and out.dtype is odt:
                    fo = out.flags
                    # two arrays that each own their memory are apart unless they are one array
                    # (np.may_share_memory costs ~1-6 us once a frame has flushed the caches)
                    if fo.c_contiguous and fo.writeable and (
                            (fo.owndata and fi.owndata and out is not image)
                            or not np.may_share_memory(out, image)):
                        return call(image, out)
    op = "filters.apply"
    dev = is_device_array(image)  # CUDA device array: the same checks, then the CUDA twin
    _image(op, image, gray)
    bcode = _border(op, border)
    name, p = _resolve(op, name_or_kernel, params)
    if name == "gray" and (image.ndim != 3 or image.shape[2] != 3):
        raise ValueError(f"{op}: filter 'gray' needs a BGR image (H, W, 3), got shape {tuple(image.shape)}")
    plan = _plan(op, name, p, image.dtype == np.uint8)
    shape = plan.out_shape(image, gray)
    odt = np.dtype(np.uint8 if plan.out_u8 else np.float32)
    out = check_out(op, "out", out, shape, odt, like=image)
    if dev:
        from .kernels.cuda import filters as _cuf
        if _cuf.overlaps(out, image):
            raise ValueError(f"{op}: out must not overlap image (filters read neighbours), shape {shape}")
        return _cuf.apply(image, name, p, bcode, gray, out)
    if out is image or np.may_share_memory(out, image):
        raise ValueError(f"{op}: out must not overlap image (filters read neighbours), shape {shape}")
    call = plan.bind(image, bcode, gray)
    if key is not None:
        if len(_FAST) > 256:
            _FAST.clear()
        _FAST[key] = (shape, odt, call)
    return call(image, out)


_FAST = {}  # (name, border, gray, params, shape, dtype) -> (out shape, out dtype, bound call)


def _fast_params(params):
    """Hashable, type-exact form of simple parameters (5 and 5.0 or True must not share a key:
    only one of them passes validation); TypeError for anything else (takes the full path)."""
    if not params:
        return ()
    if len(params) == 1:  # the common case (ksize=5): no list
        for k, v in params.items():
            t = type(v)
            if t is int or t is float or t is str:
                return ((k, t, v),)
    items = []
    for k, v in params.items():
        t = type(v)
        if t is int or t is float or t is str:
            items.append((k, t, v))
        elif t is tuple and all(type(e) is int or type(e) is float for e in v):
            items.append((k, tuple(map(type, v)), v))
        else:
            raise TypeError(k)
    return tuple(items)


# ------------------------------------------------------------------------------- FilterChain
def _spec_args(spec):
    """(name_or_kernel, params) from "name", "name:k=v,...", (name, {params}), {"name": ..}, array."""
    if isinstance(spec, np.ndarray):
        return spec, {}
    if isinstance(spec, str):
        return parse_spec(spec)
    if isinstance(spec, dict):
        d = dict(spec)
        if "name" not in d:
            raise ValueError(f"filter spec dict needs a 'name', got {spec!r}")
        name = d.pop("name")
        if "kernel" in d:
            d["kernel"] = np.asarray(d["kernel"], np.float32)
        return name, d
    if isinstance(spec, (tuple, list)) and len(spec) == 2 and isinstance(spec[1], dict):
        return spec[0], dict(spec[1])
    raise TypeError(f"filter spec must be a name, 'name:key=value,...', (name, params), a dict "
                    f"or a 2-D kernel array, got {spec!r}")


def parse_spec(text):
    """'gaussian:ksize=5,sigma=1.2' -> ('gaussian', {'ksize': 5, 'sigma': 1.2}); values are JSON
    (numbers, lists such as ksize=[5,3]) or plain words."""
    name, _, rest = text.partition(":")
    params = {}
    rest = rest.strip()
    while rest:
        key, eq, rest = rest.partition("=")
        if not eq:
            raise ValueError(f"filter spec {text!r}: expected key=value after ':'")
        depth, i = 0, 0
        while i < len(rest) and (rest[i] != "," or depth):
            depth += rest[i] in "[(" and 1 or (-1 if rest[i] in "])" else 0)
            i += 1
        raw, rest = rest[:i].strip(), rest[i + 1:].strip()
        try:
            val = json.loads(raw.replace("(", "[").replace(")", "]"))
        except ValueError:
            val = raw
        params[key.strip()] = tuple(val) if isinstance(val, list) and key.strip() != "kernel" else val
    return name.strip(), params


class FilterChain:
    """An ordered list of filters, run as one preprocessing stage (training and live alike).

    ``specs``: names, "name:key=value" strings, (name, params) pairs, dicts with a "name" key, or
    kernel arrays. A step may carry its own "border"; ``border`` is the default. A leading "gray"
    step is fused into the next filter's pass. Validated at construction.
    """

    def __init__(self, specs=(), border="reflect101"):
        op = "FilterChain"
        if isinstance(specs, (str, np.ndarray, dict)):
            specs = [specs]
        _border(op, border)
        self.border = border
        self.steps = []
        for spec in specs:
            name, p = _spec_args(spec)
            step_border = p.pop("border", border)
            _border(op, step_border)
            name, p = _resolve(op, name, p)
            _Plan(op, name, p, True)  # validates parameters now, not on the first frame
            self.steps.append((name, p, step_border))
        for i, (name, _, _) in enumerate(self.steps):
            if name == "gray" and i != 0:
                raise ValueError(f"{op}: 'gray' must be the first step, found at position {i}")
        self._plans = {}

    def __len__(self):
        return len(self.steps)

    def __repr__(self):
        return f"FilterChain({[self._step_config(s) for s in self.steps]!r})"

    def apply(self, frame, out=None):
        """Run every step; returns a new array (or ``out``) of the last step's shape and dtype."""
        op = "FilterChain.apply"
        if not self.steps:
            if is_device_array(frame):
                _image(op, frame, False)
                out = check_out(op, "out", out, frame.shape, frame.dtype, like=frame)
                from .kernels.cuda import filters as _cuf
                return _cuf.copy(frame, out)
            _image(op, frame, False)
            if out is None:
                return frame.copy()
            check_out(op, "out", out, frame.shape, frame.dtype, like=frame)
            out[...] = frame
            return out
        steps = list(self.steps)
        gray = False
        if steps[0][0] == "gray" and len(steps) > 1:
            gray, steps = True, steps[1:]
        x = frame
        for i, (name, p, border) in enumerate(steps):
            last = i == len(steps) - 1
            x = apply(x, name if name != "kernel" else p["kernel"], border=border,
                      out=out if last else None, gray=gray and i == 0,
                      **({} if name == "kernel" else p))
        return x

    # --------------------------------------------------------------------------- config
    @staticmethod
    def _step_config(step):
        name, p, border = step
        d = {"name": name}
        for k, v in p.items():
            if isinstance(v, np.ndarray):
                v = v.astype(float).tolist()
            elif isinstance(v, tuple):
                v = list(v)
            d[k] = v
        d["border"] = border
        return d

    def to_config(self):
        """JSON-able dict; FilterChain.from_config(cfg) rebuilds an equal chain."""
        return {"type": "FilterChain", "border": self.border,
                "steps": [self._step_config(s) for s in self.steps]}

    @classmethod
    def from_config(cls, cfg):
        if not isinstance(cfg, dict) or cfg.get("type", "FilterChain") != "FilterChain":
            raise ValueError(f"FilterChain.from_config: expected a FilterChain config dict, got {cfg!r}")
        return cls(cfg.get("steps", []), border=cfg.get("border", "reflect101"))

    def as_conv_kernels(self):
        """The chain's linear steps composed into one float32 OIHW weight (1, C_in, kh, kw):
        C_in = 3 (BGR) when the chain starts with "gray", else 1. Equal to the chain on float32
        inputs away from the borders (borders and uint8 saturation are not linear)."""
        w = np.ones((1, 1), np.float64)
        cin = 1
        for name, p, _ in self.steps:
            if name == "gray":
                cin = 3
                continue
            if name in _NONLINEAR:
                raise ValueError(f"FilterChain.as_conv_kernels: step {name!r} is not linear")
            k = kernel(name if name != "kernel" else p["kernel"], **({} if name == "kernel" else p))
            w = _full_conv2d(w, k.astype(np.float64))
        if cin == 1:
            return w.astype(np.float32)[None, None]
        gray = np.array([0.114, 0.587, 0.299])
        return (gray[None, :, None, None] * w[None, None]).astype(np.float32)


def _full_conv2d(a, b):
    """Full 2-D convolution: correlating with a then b equals correlating with this."""
    out = np.zeros((a.shape[0] + b.shape[0] - 1, a.shape[1] + b.shape[1] - 1))
    for i in range(b.shape[0]):
        for j in range(b.shape[1]):
            out[i:i + a.shape[0], j:j + a.shape[1]] += b[i, j] * a
    return out
