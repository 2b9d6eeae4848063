"""CUDA twins of edgecnn.filters: one thread per output pixel (all its channels), gather style.

A 2-D grid of (2*TILE, TILE/2) blocks (32 x 8 by default) covers the output: x along the row so a
warp reads neighbouring pixels, y over rows. Each thread maps every tap's row and column through
OpenCV's border rule (the CPU's ``border_index``, repeated reflection for images smaller than the
kernel) and reads the source directly: the few neighbouring loads per tap are served by L1/L2, and
there is no shared-memory staging to size per kernel. Taps live in small device arrays uploaded
once per resolved filter and cached with it.

Arithmetic reproduces the CPU kernels (which equal OpenCV):
* uint8 integer kernels (Sobel, Scharr, edges, Laplacians, sharpen, box, Q8 x Q8 Gaussian) sum
  exactly in int64, then saturate / round with the CPU's rule (``post``);
* uint8 with a general float kernel sums in float32 in raster tap order as OpenCV's filter2D does on
  x86: fmaf in its SIMD lanes (the first W*C - W*C % 4 values of a row), mul.rn then add.rn (never
  contracted) in its scalar tail; then rounds half to even;
* BGR -> gray uses cvtColor's Q15 integer weights on uint8 (fused into the filter's loads);
* float32 sums in float32 (FMA allowed: the float32 contract is 1e-5, not bits).
"""

import numpy as np
from numba import cuda

from ..._jit import cuda_jit, cuda_simulator_enabled
from . import _device, _launch

REFLECT101, CONSTANT, REPLICATE = 0, 1, 2  # filters.BORDERS codes
POST_SAT, POST_GAUSS, POST_BOXDIV, POST_BOXFLOAT = 0, 1, 2, 3  # uint8 output rules

_F0 = np.float32(0.0)
_TWOPI = np.float32(2 * np.pi)
_HALFPI = np.float32(np.pi / 2)
_PI = np.float32(np.pi)

if cuda_simulator_enabled():
    # The simulator's libdevice functions are stubs returning None: the same IEEE operations in NumPy.
    def _mul_rn(a, b):
        return np.float32(np.float32(a) * np.float32(b))

    def _add_rn(a, b):
        return np.float32(np.float32(a) + np.float32(b))

    def _rintf(v):
        return np.float32(np.rint(np.float32(v)))

    def _rint(v):
        return np.float64(np.rint(np.float64(v)))

    def _sqrtf(v):
        return np.float32(np.sqrt(np.float32(v)))

    def _fmaf(a, b, c):
        """a * b + c rounded once to float32 (exact rational arithmetic; Python 3.11 has no math.fma)."""
        from fractions import Fraction
        exact = Fraction(float(a)) * Fraction(float(b)) + Fraction(float(c))
        r = np.float32(float(exact))  # may be off by one ulp (rounded twice): pick the nearest
        best = min((r, np.nextafter(r, np.float32(-np.inf)), np.nextafter(r, np.float32(np.inf))),
                   key=lambda f: (abs(Fraction(float(f)) - exact), int(np.float32(f).view(np.int32)) & 1))
        return np.float32(best)
else:
    from numba.cuda import libdevice
    # mul.rn / add.rn are never contracted into FMA by NVVM or ptxas: OpenCV's float32 rounding
    _mul_rn, _add_rn, _fmaf = libdevice.fmul_rn, libdevice.fadd_rn, libdevice.fmaf
    _rintf, _rint, _sqrtf = libdevice.rintf, libdevice.rint, libdevice.fsqrt_rn


# ------------------------------------------------------------------------------------ device helpers
@cuda_jit(device=True)
def _bidx(p, n, mode):
    """OpenCV's borderInterpolate (the CPU's border_index); -1 means 'constant zero'."""
    if p >= 0 and p < n:
        return p
    if mode == REPLICATE:
        return 0 if p < 0 else n - 1
    if mode == CONSTANT:
        return -1
    if n == 1:
        return 0
    while p < 0 or p >= n:  # images smaller than the kernel reflect repeatedly
        p = -p if p < 0 else 2 * n - 2 - p
    return p


@cuda_jit(device=True)
def _pix_u8(src, r, c, ch, cn, gray):
    """Source value at mapped (r, c) as int64; BGR->gray with cvtColor's Q15 weights when gray."""
    if r < 0 or c < 0:
        return np.int64(0)
    if gray:
        o = 3 * c
        return (np.int64(src[r, o]) * np.int64(3735) + np.int64(src[r, o + 1]) * np.int64(19235)
                + np.int64(src[r, o + 2]) * np.int64(9798) + np.int64(16384)) >> np.int64(15)
    return np.int64(src[r, c * cn + ch])


@cuda_jit(device=True)
def _pix_f32(src, r, c, ch, cn, gray):
    if r < 0 or c < 0:
        return _F0
    if gray:
        o = 3 * c
        return (src[r, o] * np.float32(0.114) + src[r, o + 1] * np.float32(0.587)
                + src[r, o + 2] * np.float32(0.299))
    return src[r, c * cn + ch]


@cuda_jit(device=True)
def _round_sat(v):
    """saturate_cast<uchar>(float32): round half to even; NaN and out-of-int-range give 0."""
    if not (v >= np.float32(-2147483648.0) and v < np.float32(2147483648.0)):
        return np.int64(0)
    r = _rintf(v)
    if r < _F0:
        return np.int64(0)
    if r > np.float32(255.0):
        return np.int64(255)
    return np.int64(r)


@cuda_jit(device=True)
def _post_u8(acc, post, p0, p1, s32, s64, e, nvec):
    """The CPU's uint8 output rule for an exact integer sum ``acc`` at row element ``e``."""
    if post == POST_SAT:
        if acc < 0:
            return np.int64(0)
        return np.int64(255) if acc > 255 else acc
    if post == POST_GAUSS:  # Q8 x Q8 -> Q16, rounded
        return (acc + np.int64(32768)) >> np.int64(16)
    if post == POST_BOXDIV:  # OpenCV ColumnSum<ushort, uchar>: (s + p0) * p1 >> 23
        v = ((acc + p0) * p1) >> np.int64(23)
        if v > 255:  # area 2, two 255s: OpenCV saturates in its 16-lane blocks, wraps in the row tail
            return np.int64(255) if e < nvec else v & np.int64(255)
        return v
    # POST_BOXFLOAT: OpenCV scales the SIMD part of the row in float32, the tail in double
    if e < nvec:
        return _round_sat(_mul_rn(np.float32(acc), s32))
    return _round_sat(np.float32(_rint(np.float64(acc) * s64)))


@cuda_jit(device=True)
def _angle(gx, gy):
    """The CPU's atan2(gy, gx) in [0, 2*pi): A&S 4.4.49 on min/max of |gx|, |gy|, octant fixes."""
    ax = -gx if gx < _F0 else gx  # no abs/max/min: numba's CUDA overloads of max take one iterable
    ay = -gy if gy < _F0 else gy
    mx = ay if ay > ax else ax
    mn = ax if ay > ax else ay
    t = mn / mx if mx > _F0 else _F0
    t2 = t * t
    a = t * (np.float32(0.9999993329) + t2 * (np.float32(-0.3332985605) + t2 * (
        np.float32(0.1994653599) + t2 * (np.float32(-0.1390853351) + t2 * (
            np.float32(0.0964200441) + t2 * (np.float32(-0.0559098861) + t2 * (
                np.float32(0.0218612288) + t2 * np.float32(-0.0040540580))))))))
    if ay > ax:
        a = _HALFPI - a
    if gx < _F0:
        a = _PI - a
    if gy < _F0:
        a = _TWOPI - a
    return _F0 if a >= _TWOPI else a


@cuda_jit(device=True)
def _grad_u8(src, y, x, ch, cn, gray, mode, H, W, a0, a1, a2):
    """(gx, gy) as exact integers: gx = rows (a0, a1, a2) x cols (-1, 0, 1), gy its transpose."""
    r0 = _bidx(y - 1, H, mode)
    r1 = _bidx(y, H, mode)
    r2 = _bidx(y + 1, H, mode)
    c0 = _bidx(x - 1, W, mode)
    c1 = _bidx(x, W, mode)
    c2 = _bidx(x + 1, W, mode)
    v00 = _pix_u8(src, r0, c0, ch, cn, gray)
    v01 = _pix_u8(src, r0, c1, ch, cn, gray)
    v02 = _pix_u8(src, r0, c2, ch, cn, gray)
    v10 = _pix_u8(src, r1, c0, ch, cn, gray)
    v12 = _pix_u8(src, r1, c2, ch, cn, gray)
    v20 = _pix_u8(src, r2, c0, ch, cn, gray)
    v21 = _pix_u8(src, r2, c1, ch, cn, gray)
    v22 = _pix_u8(src, r2, c2, ch, cn, gray)
    gx = (a0 * v02 + a1 * v12 + a2 * v22) - (a0 * v00 + a1 * v10 + a2 * v20)
    gy = (a0 * v20 + a1 * v21 + a2 * v22) - (a0 * v00 + a1 * v01 + a2 * v02)
    return gx, gy


@cuda_jit(device=True)
def _grad_f32(src, y, x, ch, cn, gray, mode, H, W, a0, a1, a2):
    """(gx, gy) in float32 with the CPU's expression order (kb = (-1, 0, 1))."""
    r0 = _bidx(y - 1, H, mode)
    r1 = _bidx(y, H, mode)
    r2 = _bidx(y + 1, H, mode)
    c0 = _bidx(x - 1, W, mode)
    c1 = _bidx(x, W, mode)
    c2 = _bidx(x + 1, W, mode)
    v00 = _pix_f32(src, r0, c0, ch, cn, gray)
    v01 = _pix_f32(src, r0, c1, ch, cn, gray)
    v02 = _pix_f32(src, r0, c2, ch, cn, gray)
    v10 = _pix_f32(src, r1, c0, ch, cn, gray)
    v11 = _pix_f32(src, r1, c1, ch, cn, gray)
    v12 = _pix_f32(src, r1, c2, ch, cn, gray)
    v20 = _pix_f32(src, r2, c0, ch, cn, gray)
    v21 = _pix_f32(src, r2, c1, ch, cn, gray)
    v22 = _pix_f32(src, r2, c2, ch, cn, gray)
    m1 = np.float32(-1.0)
    s0 = a0 * v00 + a1 * v10 + a2 * v20
    s1 = a0 * v01 + a1 * v11 + a2 * v21
    s2 = a0 * v02 + a1 * v12 + a2 * v22
    gx = m1 * s0 + _F0 * s1 + s2
    t0 = a0 * v00 + a1 * v01 + a2 * v02
    t1 = a0 * v10 + a1 * v11 + a2 * v12
    t2 = a0 * v20 + a1 * v21 + a2 * v22
    gy = m1 * t0 + _F0 * t1 + t2
    return gx, gy


# ------------------------------------------------------------------------------------------- kernels
# src is the image viewed (H, W*C_in), out (H, W*cn); cn = output channels (1 when gray).
@cuda_jit
def gray_u8_cuda(src, out):
    x, y = cuda.grid(2)
    if x < out.shape[1] and y < out.shape[0]:
        out[y, x] = _pix_u8(src, y, x, 0, 1, True)


@cuda_jit
def gray_f32_cuda(src, out):
    x, y = cuda.grid(2)
    if x < out.shape[1] and y < out.shape[0]:
        out[y, x] = _pix_f32(src, y, x, 0, 1, True)


@cuda_jit
def sep_u8_cuda(src, cn, gray, mode, ky, kx, post, p0, p1, s32, s64, nvec, out):
    """uint8 separable integer kernel (ky down, kx along): exact int64 sum, then ``post``."""
    H = out.shape[0]
    W = out.shape[1] // cn
    x, y = cuda.grid(2)
    if x < W and y < H:
        kh = ky.shape[0]
        kw = kx.shape[0]
        top = kh // 2
        left = kw // 2
        for ch in range(cn):
            acc = np.int64(0)
            for i in range(kh):
                wy = np.int64(ky[i])
                if wy != 0:
                    r = _bidx(y + i - top, H, mode)
                    rs = np.int64(0)
                    for j in range(kw):
                        wx = np.int64(kx[j])
                        if wx != 0:
                            rs += wx * _pix_u8(src, r, _bidx(x + j - left, W, mode), ch, cn, gray)
                    acc += wy * rs
            e = x * cn + ch
            out[y, e] = _post_u8(acc, post, p0, p1, s32, s64, e, nvec)


@cuda_jit
def sep_f32_cuda(src, cn, gray, mode, ky, kx, scale, out):
    """float32 separable kernel: row sums per kernel row, weighted down the column, times scale."""
    H = out.shape[0]
    W = out.shape[1] // cn
    x, y = cuda.grid(2)
    if x < W and y < H:
        kh = ky.shape[0]
        kw = kx.shape[0]
        top = kh // 2
        left = kw // 2
        for ch in range(cn):
            acc = _F0
            for i in range(kh):
                wy = ky[i]
                if wy != _F0:
                    r = _bidx(y + i - top, H, mode)
                    rs = _F0
                    for j in range(kw):
                        wx = kx[j]
                        if wx != _F0:
                            rs += wx * _pix_f32(src, r, _bidx(x + j - left, W, mode), ch, cn, gray)
                    acc += wy * rs
            out[y, x * cn + ch] = acc * scale


@cuda_jit
def corr_u8_cuda(src, cn, gray, mode, kh, kw, ti, tj, tk, out):
    """uint8 2-D kernel, nonzero taps (ti, tj, tk) in raster order, summed in float32 like OpenCV's
    filter2D: a fused multiply-add per tap in the first W*C - W*C % 4 values of a row (its SIMD
    lanes), a rounded multiply then a rounded add in the rest (its scalar tail); exact for integer
    kernels. Then round + saturate."""
    H = out.shape[0]
    W = out.shape[1] // cn
    x, y = cuda.grid(2)
    if x < W and y < H:
        top = kh // 2
        left = kw // 2
        n4 = W * cn - (W * cn) % 4  # OpenCV's SIMD lanes fuse multiply-add; its scalar row tail does not
        for ch in range(cn):
            acc = _F0
            fused = x * cn + ch < n4
            for t in range(tk.shape[0]):
                r = _bidx(y + ti[t] - top, H, mode)
                c = _bidx(x + tj[t] - left, W, mode)
                v = np.float32(_pix_u8(src, r, c, ch, cn, gray))
                if fused:
                    acc = _fmaf(tk[t], v, acc)
                else:
                    acc = _add_rn(acc, _mul_rn(tk[t], v))
            out[y, x * cn + ch] = _round_sat(acc)


@cuda_jit
def corr_f32_cuda(src, cn, gray, mode, kh, kw, ti, tj, tk, out):
    H = out.shape[0]
    W = out.shape[1] // cn
    x, y = cuda.grid(2)
    if x < W and y < H:
        top = kh // 2
        left = kw // 2
        for ch in range(cn):
            acc = _F0
            for t in range(tk.shape[0]):
                r = _bidx(y + ti[t] - top, H, mode)
                c = _bidx(x + tj[t] - left, W, mode)
                acc += tk[t] * _pix_f32(src, r, c, ch, cn, gray)
            out[y, x * cn + ch] = acc


@cuda_jit
def gmag_u8_cuda(src, cn, gray, mode, a0, a1, a2, out):
    """uint8 gradient magnitude: sqrt(gx^2 + gy^2) in float32 (exact squares), rounded, saturated."""
    H = out.shape[0]
    W = out.shape[1] // cn
    x, y = cuda.grid(2)
    if x < W and y < H:
        for ch in range(cn):
            gx, gy = _grad_u8(src, y, x, ch, cn, gray, mode, H, W, a0, a1, a2)
            fx = np.float32(gx)
            fy = np.float32(gy)
            m = _sqrtf(_add_rn(_mul_rn(fx, fx), _mul_rn(fy, fy)))
            out[y, x * cn + ch] = _round_sat(m)


@cuda_jit
def gori_u8_cuda(src, cn, gray, mode, a0, a1, a2, out):
    """uint8 in, float32 radians out: atan2(gy, gx) in [0, 2*pi)."""
    H = out.shape[0]
    W = out.shape[1] // cn
    x, y = cuda.grid(2)
    if x < W and y < H:
        for ch in range(cn):
            gx, gy = _grad_u8(src, y, x, ch, cn, gray, mode, H, W, a0, a1, a2)
            out[y, x * cn + ch] = _angle(np.float32(gx), np.float32(gy))


@cuda_jit
def gmag_f32_cuda(src, cn, gray, mode, a0, a1, a2, out):
    H = out.shape[0]
    W = out.shape[1] // cn
    x, y = cuda.grid(2)
    if x < W and y < H:
        for ch in range(cn):
            gx, gy = _grad_f32(src, y, x, ch, cn, gray, mode, H, W, a0, a1, a2)
            out[y, x * cn + ch] = _sqrtf(gx * gx + gy * gy)


@cuda_jit
def gori_f32_cuda(src, cn, gray, mode, a0, a1, a2, out):
    H = out.shape[0]
    W = out.shape[1] // cn
    x, y = cuda.grid(2)
    if x < W and y < H:
        for ch in range(cn):
            gx, gy = _grad_f32(src, y, x, ch, cn, gray, mode, H, W, a0, a1, a2)
            out[y, x * cn + ch] = _angle(gx, gy)


# ------------------------------------------------------------------------------------- host side
class _Plan:
    """A filter resolved for the GPU (taps, output rule), with its device taps uploaded once."""

    def __init__(self, name, p, is_u8):
        from ... import filters as F
        op = "filters.apply"
        self.name, self.is_u8 = name, is_u8
        self.post, self.p0, self.p1 = POST_SAT, 0, 0
        self.s32, self.s64, self.scale = np.float32(0), 0.0, np.float32(1)
        self._dev = None
        if name == "gray":
            self.kind = "gray"
            return
        if name in ("gradient_magnitude", "gradient_orientation"):
            self.kind = "grad"
            a = (1, 2, 1) if str(p["operator"]).lower() == "sobel" else (3, 10, 3)
            self.a = tuple((np.int64 if is_u8 else np.float32)(v) for v in a)
            return
        if name == "gaussian":
            kh, kw, sy, sx = F._gaussian_sizes(op, p["ksize"], p["sigma"], is_u8)
            if is_u8:
                self._sep(F.gaussian_kernel_q8(kh, sy), F.gaussian_kernel_q8(kw, sx), POST_GAUSS)
            else:
                self._sep(F.gaussian_kernel_1d(kh, sy), F.gaussian_kernel_1d(kw, sx))
            return
        if name == "box":
            kh, kw = F._pair(op, "ksize", p["ksize"], 1)
            d = kh * kw
            if not is_u8:
                self._sep([1] * kh, [1] * kw)
                self.scale = np.float32(1.0 / d)
            elif d == 1:
                self._sep([1], [1], POST_SAT)
            elif d <= 256:  # OpenCV ColumnSum<ushort, uchar>: (s + ds) * dv >> 23
                self._sep([1] * kh, [1] * kw, POST_BOXDIV, *F.box_div_consts(d))
            else:  # ColumnSum<int, uchar>: float32 scale in the SIMD lanes, double in the tail
                self._sep([1] * kh, [1] * kw, POST_BOXFLOAT, d)
                self.s32, self.s64 = np.float32(1.0 / d), 1.0 / d
            return
        if name in F._SEP_KERNELS:
            self._sep(*F._SEP_KERNELS[name])
            return
        if name in ("sobel_x", "sobel_y"):
            self._sep(*F._sobel(op, name, p["ksize"]))
            return
        k = np.array(F._INT_KERNELS[name], np.float32) if name in F._INT_KERNELS else \
            F._user_kernel(op, p["kernel"])
        self.kind = "corr"
        self.kh, self.kw = k.shape
        ti, tj = np.nonzero(k)  # raster order, as OpenCV's filter2D collects its taps
        self.ti, self.tj = ti.astype(np.int64), tj.astype(np.int64)
        self.tk = np.ascontiguousarray(k[ti, tj], np.float32)
        if self.tk.size == 0:  # an all-zero kernel: one zero tap keeps the arrays non-empty
            self.ti, self.tj, self.tk = np.zeros(1, np.int64), np.zeros(1, np.int64), np.zeros(1, np.float32)

    def _sep(self, ky, kx, post=POST_SAT, p0=0, p1=0):
        self.kind = "sep"
        t = np.int32 if self.is_u8 else np.float32
        self.ky, self.kx = np.asarray(ky, np.float64).astype(t), np.asarray(kx, np.float64).astype(t)
        self.post, self.p0, self.p1 = post, int(p0), int(p1)

    def device_taps(self):
        if self._dev is None:
            if self.kind == "sep":
                self._dev = (cuda.to_device(self.ky), cuda.to_device(self.kx))
            elif self.kind == "corr":
                self._dev = (cuda.to_device(self.ti), cuda.to_device(self.tj), cuda.to_device(self.tk))
            else:
                self._dev = ()
        return self._dev


_PLANS = {}


def plan(name, params, is_u8):
    from ...filters import _key  # the CPU plans' parameter key (arrays by value)
    key = (name, tuple(sorted((k, _key(v)) for k, v in params.items())), bool(is_u8))
    pl = _PLANS.get(key)
    if pl is None:
        pl = _Plan(name, params, bool(is_u8))
        if len(_PLANS) > 256:
            _PLANS.clear()
        _PLANS[key] = pl
    return pl


def grid2d(rows, cols):
    """(grid, block): (2*TILE, TILE//2) threads, x along the row (32 x 8 by default)."""
    bx, by = 2 * _launch.TILE, max(1, _launch.TILE // 2)
    return (max(1, -(-int(cols) // bx)), max(1, -(-int(rows) // by))), (bx, by)


def _span(a):
    """[start, end) device address range of an array, or None when unknown."""
    iface = getattr(a, "__cuda_array_interface__", None)
    if iface is None:
        return None
    start = iface["data"][0]
    return start, start + a.size * np.dtype(a.dtype).itemsize


def overlaps(a, b):
    """True when two device arrays may share memory (filters read neighbours: out must not)."""
    if a is b:
        return True
    ha, hb = getattr(a, "_ary", None), getattr(b, "_ary", None)  # the simulator's host arrays
    if isinstance(ha, np.ndarray) and isinstance(hb, np.ndarray):
        return bool(np.may_share_memory(ha, hb))
    sa, sb = _span(a), _span(b)
    if sa is None or sb is None:
        return False
    return sa[0] < sb[1] and sb[0] < sa[1]


def apply(image, name, params, border, gray, out):
    """The filter on device arrays. Arguments arrive validated and resolved by edgecnn.filters.apply:
    ``name``/``params`` canonical, ``border`` a code, ``out`` a device array of the result's shape and
    dtype that does not overlap ``image``. Returns ``out`` (as given)."""
    img = _device.as_device(image)
    dst = _device.as_device(out)
    is_u8 = np.dtype(img.dtype) == np.uint8
    pl = plan(name, params, is_u8)
    H, W = img.shape[0], img.shape[1]
    src = img.reshape(H, img.size // H)
    o = dst.reshape(H, dst.size // H)
    grid, block = grid2d(H, W)
    if pl.kind == "gray":
        (gray_u8_cuda if is_u8 else gray_f32_cuda)[grid, block](src, o)
        return out
    cn = 1 if (gray or img.ndim == 2) else img.shape[2]
    gray = bool(gray)
    border = int(border)
    if pl.kind == "grad":
        if pl.name == "gradient_magnitude":
            k = gmag_u8_cuda if is_u8 else gmag_f32_cuda
        else:
            k = gori_u8_cuda if is_u8 else gori_f32_cuda
        k[grid, block](src, cn, gray, border, *pl.a, o)
    elif pl.kind == "sep":
        ky, kx = pl.device_taps()
        if is_u8:
            lanes = 16 if pl.post == POST_BOXDIV else 8  # OpenCV's SIMD part of the row (see _post_u8)
            nvec = (W * cn // lanes) * lanes
            sep_u8_cuda[grid, block](src, cn, gray, border, ky, kx, pl.post, pl.p0, pl.p1, pl.s32,
                                     pl.s64, nvec, o)
        else:
            sep_f32_cuda[grid, block](src, cn, gray, border, ky, kx, pl.scale, o)
    else:
        ti, tj, tk = pl.device_taps()
        k = corr_u8_cuda if is_u8 else corr_f32_cuda
        k[grid, block](src, cn, gray, border, pl.kh, pl.kw, ti, tj, tk, o)
    return out


def copy(src, out):
    """An empty FilterChain on the device: ``out`` (validated, same shape and dtype) = ``src``."""
    _device.as_device(out).copy_to_device(_device.as_device(src))
    return out


def ptx_cases():
    """One case per kernel: cn, gray and border are runtime values, so one signature covers them."""
    u8c, u8g = np.zeros((4, 12), np.uint8), np.zeros((4, 4), np.uint8)
    f32c, f32g = np.zeros((4, 12), np.float32), np.zeros((4, 4), np.float32)
    ki, kf, ti = np.ones(3, np.int32), np.ones(3, np.float32), np.zeros(3, np.int64)
    i1, f1 = np.int64(1), np.float32(1)
    return [
        (gray_u8_cuda, (u8c, u8g)), (gray_f32_cuda, (f32c, f32g)),
        (sep_u8_cuda, (u8c, 3, False, 0, ki, ki, 0, 0, 0, np.float32(0), 0.0, 8, u8c)),
        (sep_f32_cuda, (f32c, 3, False, 0, kf, kf, np.float32(1), f32c)),
        (corr_u8_cuda, (u8c, 1, True, 0, 3, 3, ti, ti, kf, u8g)),
        (corr_f32_cuda, (f32c, 1, True, 0, 3, 3, ti, ti, kf, f32g)),
        (gmag_u8_cuda, (u8c, 3, False, 0, i1, i1, i1, u8c)),
        (gori_u8_cuda, (u8c, 3, False, 0, i1, i1, i1, f32c)),
        (gmag_f32_cuda, (f32c, 3, False, 0, f1, f1, f1, f32c)),
        (gori_f32_cuda, (f32c, 3, False, 0, f1, f1, f1, f32c)),
    ]
