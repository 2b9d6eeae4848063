"""Numba kernels behind edgecnn.filters (private; the public API validates before calling these).

Layout: the source is viewed as 2-D (H, W*C_in) rows; a row is widened into a padded buffer of
(W + kw - 1) * cn values (border columns filled from a column map, optionally fused BGR->gray), and
each thread walks a contiguous block of output rows keeping a ring of the last kh padded (or
row-filtered) rows, so every source row is converted once per block.

Arithmetic is chosen to reproduce OpenCV bit for bit on uint8:
* integer kernels whose partial sums stay below 2**24 accumulate exactly in int32 (OpenCV's float
  sums are exact there too), then saturate;
* other uint8 kernels accumulate in float32 in raster tap order with no FMA (the float64 round trips
  below stop LLVM from contracting), then round half to even like cvRound;
* GaussianBlur uint8 is Q8 x Q8 fixed point, rounded (v + 2**15) >> 16;
* blur uint8 divides with OpenCV's multiply-shift (area <= 256) or its float32/double scaling.
"""
import numpy as np
from numba import prange

from ._jit import njit

# Border modes (codes shared with filters.py).
REFLECT101, CONSTANT, REPLICATE = 0, 1, 2
# uint8 post-processing of integer separable sums.
POST_SATURATE, POST_GAUSS_Q16, POST_BOX_DIV, POST_BOX_FLOAT = 0, 1, 2, 3


@njit
def border_index(p, n, mode):
    """OpenCV's borderInterpolate for one coordinate; -1 means 'constant zero'."""
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


@njit
def border_map(n, lo, hi, mode):
    m = np.empty(n + lo + hi, np.int32)
    for p in range(n + lo + hi):
        m[p] = border_index(p - lo, n, mode)
    return m


@njit
def _fill_border_cols(buf, colmap, left, W, cn):
    n = buf.shape[0] // cn
    for p in range(left):
        c = colmap[p]
        for ch in range(cn):
            buf[p * cn + ch] = 0 if c < 0 else buf[(left + c) * cn + ch]
    for p in range(left + W, n):
        c = colmap[p]
        for ch in range(cn):
            buf[p * cn + ch] = 0 if c < 0 else buf[(left + c) * cn + ch]


@njit
def load_row(src, r, colmap, left, W, cn, gray, is_u8, buf):
    if r < 0:
        for i in range(buf.shape[0]):
            buf[i] = 0
        return
    row = src[r]
    if gray:
        if is_u8:
            for x in range(W):
                buf[left + x] = (np.int32(row[3 * x]) * 3735 + np.int32(row[3 * x + 1]) * 19235
                                 + np.int32(row[3 * x + 2]) * 9798 + 16384) >> 15
        else:
            for x in range(W):
                buf[left + x] = (np.float32(row[3 * x]) * np.float32(0.114)
                                 + np.float32(row[3 * x + 1]) * np.float32(0.587)
                                 + np.float32(row[3 * x + 2]) * np.float32(0.299))
    else:
        off = left * cn
        for x in range(W * cn):
            buf[off + x] = row[x]
    _fill_border_cols(buf, colmap, left, W, cn)


@njit
def _round_sat_u8(v):
    """saturate_cast<uchar>(float): cvRound (half to even), INT_MIN for out-of-range/NaN, clamp."""
    if not (v >= np.float32(-2147483648.0) and v < np.float32(2147483648.0)):
        return np.uint8(0)
    r = np.rint(v)
    if r < 0:
        return np.uint8(0)
    if r > 255:
        return np.uint8(255)
    return np.uint8(r)


@njit
def _chunk(c, nchunks, H):
    return c * H // nchunks, (c + 1) * H // nchunks


# ----------------------------------------------------------------------------------- 2-D kernels
@njit(parallel=True)
def corr2d_int(src, W, cn, gray, rowmap, colmap, left, ti, tj, tk, kh, kw, out, nchunks):
    """uint8 -> uint8 with an integer kernel (taps ti, tj, tk in raster order), exact in int32."""
    H = out.shape[0]
    L = (W + kw - 1) * cn
    WC = W * cn
    for c in prange(nchunks):
        y0, y1 = _chunk(c, nchunks, H)
        ring = np.empty((kh, L), np.int32)
        acc = np.empty(WC, np.int32)
        for p in range(y0, y0 + kh - 1):
            load_row(src, rowmap[p], colmap, left, W, cn, gray, True, ring[p % kh])
        for y in range(y0, y1):
            p = y + kh - 1
            load_row(src, rowmap[p], colmap, left, W, cn, gray, True, ring[p % kh])
            acc[:] = 0
            for t in range(tk.shape[0]):
                k = tk[t]
                b = ring[(y + ti[t]) % kh]
                o = tj[t] * cn
                for x in range(WC):
                    acc[x] += k * b[x + o]
            orow = out[y]
            for x in range(WC):
                v = acc[x]
                orow[x] = 0 if v < 0 else (255 if v > 255 else v)


@njit(parallel=True)
def corr2d_u8float(src, W, cn, gray, rowmap, colmap, left, ti, tj, tk, kh, kw, out, nchunks):
    """uint8 -> uint8 with a general float32 kernel, summed like OpenCV's filter2D (raster tap
    order, float32, no FMA: the float64 round trips forbid contraction), then cvRound + saturate."""
    H = out.shape[0]
    L = (W + kw - 1) * cn
    WC = W * cn
    for c in prange(nchunks):
        y0, y1 = _chunk(c, nchunks, H)
        ring = np.empty((kh, L), np.float32)
        acc = np.empty(WC, np.float32)
        for p in range(y0, y0 + kh - 1):
            load_row(src, rowmap[p], colmap, left, W, cn, gray, True, ring[p % kh])
        for y in range(y0, y1):
            p = y + kh - 1
            load_row(src, rowmap[p], colmap, left, W, cn, gray, True, ring[p % kh])
            acc[:] = 0
            for t in range(tk.shape[0]):
                k = np.float64(tk[t])
                b = ring[(y + ti[t]) % kh]
                o = tj[t] * cn
                for x in range(WC):
                    prod = np.float32(k * np.float64(b[x + o]))
                    acc[x] = np.float32(np.float64(acc[x]) + np.float64(prod))
            orow = out[y]
            for x in range(WC):
                orow[x] = _round_sat_u8(acc[x])


@njit(parallel=True)
def corr2d_f32(src, W, cn, gray, rowmap, colmap, left, ti, tj, tk, kh, kw, out, nchunks):
    """float32 -> float32 correlation (sums start at float32 zero, taps in raster order)."""
    H = out.shape[0]
    L = (W + kw - 1) * cn
    WC = W * cn
    for c in prange(nchunks):
        y0, y1 = _chunk(c, nchunks, H)
        ring = np.empty((kh, L), np.float32)
        for p in range(y0, y0 + kh - 1):
            load_row(src, rowmap[p], colmap, left, W, cn, gray, False, ring[p % kh])
        for y in range(y0, y1):
            p = y + kh - 1
            load_row(src, rowmap[p], colmap, left, W, cn, gray, False, ring[p % kh])
            orow = out[y]
            orow[:] = np.float32(0)
            for t in range(tk.shape[0]):
                k = tk[t]
                b = ring[(y + ti[t]) % kh]
                o = tj[t] * cn
                for x in range(WC):
                    orow[x] += k * b[x + o]


# ---------------------------------------------------------------------------- separable kernels
@njit
def _row_pass(buf, kx, cn, WC, h):
    h[:] = 0
    for j in range(kx.shape[0]):
        k = kx[j]
        if k != 0:
            o = j * cn
            for x in range(WC):
                h[x] += k * buf[x + o]


@njit(parallel=True)
def sep_int(src, W, cn, gray, rowmap, colmap, left, kx, ky, post, p0, p1, out, nchunks):
    """uint8 -> uint8 with integer row/column kernels kx, ky (exact int32 sums), then ``post``:
    saturate; Gaussian Q16 rounding; blur's multiply-shift division (p0 = delta, p1 = multiplier);
    blur's float scaling (p0 = area) as OpenCV's ColumnSum<int, uchar> does it."""
    H = out.shape[0]
    kh = ky.shape[0]
    kw = kx.shape[0]
    L = (W + kw - 1) * cn
    WC = W * cn
    nvec = (WC // 8) * 8  # OpenCV's SIMD part (float32 scale); the tail uses double
    scale32 = np.float32(1.0 / p0) if post == POST_BOX_FLOAT else np.float32(1)
    scale64 = 1.0 / p0 if post == POST_BOX_FLOAT else 1.0
    for c in prange(nchunks):
        y0, y1 = _chunk(c, nchunks, H)
        buf = np.empty(L, np.int32)
        ring = np.empty((kh, WC), np.int32)
        acc = np.empty(WC, np.int32)
        for p in range(y0, y0 + kh - 1):
            r = rowmap[p]
            if r < 0:
                ring[p % kh, :] = 0
            else:
                load_row(src, r, colmap, left, W, cn, gray, True, buf)
                _row_pass(buf, kx, cn, WC, ring[p % kh])
        for y in range(y0, y1):
            p = y + kh - 1
            r = rowmap[p]
            if r < 0:
                ring[p % kh, :] = 0
            else:
                load_row(src, r, colmap, left, W, cn, gray, True, buf)
                _row_pass(buf, kx, cn, WC, ring[p % kh])
            acc[:] = 0
            for i in range(kh):
                k = ky[i]
                if k != 0:
                    b = ring[(y + i) % kh]
                    for x in range(WC):
                        acc[x] += k * b[x]
            orow = out[y]
            if post == POST_SATURATE:
                for x in range(WC):
                    v = acc[x]
                    orow[x] = 0 if v < 0 else (255 if v > 255 else v)
            elif post == POST_GAUSS_Q16:
                for x in range(WC):
                    orow[x] = (acc[x] + 32768) >> 16
            elif post == POST_BOX_DIV:
                for x in range(WC):
                    orow[x] = ((np.int64(acc[x]) + p0) * p1) >> 23
            else:
                for x in range(nvec):
                    orow[x] = _round_sat_u8(np.float32(acc[x]) * scale32)
                for x in range(nvec, WC):
                    orow[x] = _round_sat_u8(np.rint(acc[x] * scale64))


@njit(parallel=True)
def sep_f32(src, W, cn, gray, rowmap, colmap, left, kx, ky, scale, out, nchunks):
    """float32 -> float32 separable correlation, times ``scale`` (box filters)."""
    H = out.shape[0]
    kh = ky.shape[0]
    kw = kx.shape[0]
    L = (W + kw - 1) * cn
    WC = W * cn
    for c in prange(nchunks):
        y0, y1 = _chunk(c, nchunks, H)
        buf = np.empty(L, np.float32)
        ring = np.empty((kh, WC), np.float32)
        for p in range(y0, y0 + kh - 1):
            r = rowmap[p]
            if r < 0:
                ring[p % kh, :] = 0
            else:
                load_row(src, r, colmap, left, W, cn, gray, False, buf)
                _row_pass(buf, kx, cn, WC, ring[p % kh])
        for y in range(y0, y1):
            p = y + kh - 1
            r = rowmap[p]
            if r < 0:
                ring[p % kh, :] = 0
            else:
                load_row(src, r, colmap, left, W, cn, gray, False, buf)
                _row_pass(buf, kx, cn, WC, ring[p % kh])
            orow = out[y]
            orow[:] = np.float32(0)
            for i in range(kh):
                k = ky[i]
                if k != 0:
                    b = ring[(y + i) % kh]
                    for x in range(WC):
                        orow[x] += k * b[x]
            if scale != np.float32(1):
                for x in range(WC):
                    orow[x] *= scale


# ----------------------------------------------------------------------------------- gradients
@njit(parallel=True)
def gradient(src, W, cn, gray, is_u8, rowmap, colmap, left, ka, kb, want_mag, out, nchunks):
    """Magnitude (want_mag) or orientation of (gx, gy), gx = rows ka x cols kb, gy = its transpose
    (ka smoothing, kb derivative, both length 3), computed from one ring of padded float32 rows.
    Magnitude: sqrt(gx^2 + gy^2) in float32 (rounded and saturated for uint8 outputs);
    orientation: atan2(gy, gx) in radians in [0, 2*pi), float32."""
    H = out.shape[0]
    L = (W + 2) * cn
    WC = W * cn
    twopi = np.float32(2 * np.pi)
    for c in prange(nchunks):
        y0, y1 = _chunk(c, nchunks, H)
        ring = np.empty((3, L), np.float32)
        gx = np.empty(WC, np.float32)
        gy = np.empty(WC, np.float32)
        for p in range(y0, y0 + 2):
            load_row(src, rowmap[p], colmap, left, W, cn, gray, is_u8, ring[p % 3])
        for y in range(y0, y1):
            p = y + 2
            load_row(src, rowmap[p], colmap, left, W, cn, gray, is_u8, ring[p % 3])
            r0 = ring[y % 3]
            r1 = ring[(y + 1) % 3]
            r2 = ring[(y + 2) % 3]
            a0, a1, a2 = ka[0], ka[1], ka[2]
            b0, b1, b2 = kb[0], kb[1], kb[2]
            c2 = 2 * cn
            for x in range(WC):
                # gx: smooth down the columns, differentiate along the row
                s0 = a0 * r0[x] + a1 * r1[x] + a2 * r2[x]
                s2 = a0 * r0[x + c2] + a1 * r1[x + c2] + a2 * r2[x + c2]
                s1 = a0 * r0[x + cn] + a1 * r1[x + cn] + a2 * r2[x + cn]
                gx[x] = b0 * s0 + b1 * s1 + b2 * s2
                t0 = a0 * r0[x] + a1 * r0[x + cn] + a2 * r0[x + c2]
                t1 = a0 * r1[x] + a1 * r1[x + cn] + a2 * r1[x + c2]
                t2 = a0 * r2[x] + a1 * r2[x + cn] + a2 * r2[x + c2]
                gy[x] = b0 * t0 + b1 * t1 + b2 * t2
            orow = out[y]
            if want_mag:
                for x in range(WC):
                    m = np.sqrt(gx[x] * gx[x] + gy[x] * gy[x])
                    if is_u8:
                        orow[x] = _round_sat_u8(m)
                    else:
                        orow[x] = m
            else:
                for x in range(WC):
                    a = np.arctan2(gy[x], gx[x])
                    if a < 0:
                        a += twopi
                    if a >= twopi:
                        a = np.float32(0)
                    orow[x] = a


@njit(parallel=True)
def to_gray(src, W, is_u8, out, nchunks):
    """BGR -> gray with cvtColor's arithmetic (uint8: Q15 weights 3735, 19235, 9798)."""
    H = out.shape[0]
    for c in prange(nchunks):
        y0, y1 = _chunk(c, nchunks, H)
        for y in range(y0, y1):
            row = src[y]
            orow = out[y]
            if is_u8:
                for x in range(W):
                    orow[x] = (np.int32(row[3 * x]) * 3735 + np.int32(row[3 * x + 1]) * 19235
                               + np.int32(row[3 * x + 2]) * 9798 + 16384) >> 15
            else:
                for x in range(W):
                    orow[x] = (np.float32(row[3 * x]) * np.float32(0.114)
                               + np.float32(row[3 * x + 1]) * np.float32(0.587)
                               + np.float32(row[3 * x + 2]) * np.float32(0.299))
