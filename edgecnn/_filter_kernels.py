"""Numba kernels behind edgecnn.filters (private; the public API validates before calling these).

Layout: the source is viewed as 2-D (H, W*C_in) rows; a row is widened into a padded buffer of
(W + kw - 1) * cn values (border columns filled from a column map, optionally fused BGR->gray), and
each thread walks a contiguous block of output rows keeping a ring of the last kh padded (or
row-filtered) rows, so every source row is converted once per block. float32 3x3 kernels skip the
ring and read the source in place (_k3flat, _k3sepflat): at these sizes the row copies cost more
than the border handling they save. float32 5x5/7x7 separable rows are read in place too (INPLACE):
the row pass reads the source for interior outputs and the column map only for the few border ones.

Arithmetic is chosen to reproduce OpenCV bit for bit on uint8:
* integer kernels whose partial sums stay below 2**24 accumulate exactly in int32 (OpenCV's float
  sums are exact there too), then saturate;
* other uint8 kernels accumulate in float32 in raster tap order as OpenCV's filter2D does on x86
  with FMA: fused multiply-adds in its SIMD lanes (the first W*C - W*C % 4 values of a row), a
  separate multiply and add in its scalar tail (the last W*C % 4), then round half to even like
  cvRound;
* GaussianBlur uint8 is Q8 x Q8 fixed point, rounded (v + 2**15) >> 16;
* blur uint8 divides with OpenCV's multiply-shift (area <= 256) or its float32/double scaling.
"""
import numpy as np
from llvmlite import ir
from numba import prange
from numba.core import types
from numba.extending import intrinsic, overload

from . import _simd
from ._jit import njit
from ._simd import gray16_u8

# Border modes (codes shared with filters.py).
REFLECT101, CONSTANT, REPLICATE = 0, 1, 2
# uint8 post-processing of integer separable sums.
POST_SATURATE, POST_GAUSS_Q16, POST_BOX_DIV, POST_BOX_FLOAT = 0, 1, 2, 3
POST_SHIFT = 4  # (v + C0) >> C1 in 16 bits: the Q16 rounding when the factored-out scale is 2**k
POST_MULHI = 5  # ((v + C0) * C1 >> 16) >> C2: OpenCV's box division found exactly in 16-bit terms
# C0..C2 are compile-time constants bound per variant (see variant()): with runtime shift counts
# and multipliers Numba's int64 arithmetic stays in 64-bit lanes (measured 75-100 us vs 15-30 us
# per 640x480 pass); the generic variants bind zeros and never take these branches.
C0, C1, C2 = 0, 0, 0
# NARROW (the 16-bit or float accumulator type) and LANE (sep5/sep7's lane type) are bound per
# variant too; None here, so a variant compiled without them fails to type instead of guessing.
NARROW = LANE = None
# q >> C2 == (q * MULHI2) >> 16 for every q < 2**(8 + C2) (the results are uint8) when C2 <= 4:
# q * 2**-C2 + q * 2**-16 stays below the next integer since q * 2**-16 < 2**-C2. LLVM merges a
# multiply-high and a constant shift into one 32-bit multiply (16 lanes); two multiply-highs by a
# non-power of two stay 16-bit (32 lanes). Bound per variant with C2.
MULHI2 = 0


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


GRAY_SIMD = True  # uint8 BGR->gray through edgecnn._simd.gray16_u8 (False: the plain loop, for tests)


def gray_simd_prefix(src, s0, dst, d0, n):
    """Convert pixels d0, d0+16, ... of dst from the BGR bytes of src (pixel d0 at byte s0), 16 at
    a time, while a step's 64-byte read stays inside src and its 16 pixels inside the first n;
    returns how many pixels it converted. A no-op returning 0 for non-uint8 sources (kernels
    compile both dtypes' branches)."""
    raise NotImplementedError  # compiled code only (see the overload below)


@overload(gray_simd_prefix)  # not cached on its own: compiled into its (tagged) callers
def _gray_simd_prefix(src, s0, dst, d0, n):
    if src.dtype != types.uint8:
        return lambda src, s0, dst, d0, n: 0

    def impl(src, s0, dst, d0, n):
        x = 0
        while x + 16 <= n and s0 + 3 * x + 64 <= src.size:
            gray16_u8(src, s0 + 3 * x, dst, d0 + x)
            x += 16
        return x
    return impl


def _tagged(f):
    """njit(f) under a name carrying edgecnn._simd's digest. Numba reuses a cached function until the
    file defining it changes, not the files of what it calls: a kernel cached with an older
    gray16_u8 would keep it. Kernels from _compile carry the digest too."""
    import types as pytypes
    name = f"{f.__name__}_{_simd.TAG}"
    g = pytypes.FunctionType(f.__code__.replace(co_name=name, co_qualname=name), f.__globals__, name)
    g.__qualname__ = name
    return njit(g)


@_tagged
def load_row(src, r, colmap, left, W, cn, gray, is_u8, buf):
    if r < 0:
        for i in range(buf.shape[0]):
            buf[i] = 0
        return
    row = src[r]
    if gray:
        dst = buf[left:left + W]
        if is_u8:
            x = gray_simd_prefix(row, 0, dst, 0, W) if GRAY_SIMD else 0  # the row's last <= 21
            r3 = row[3 * x:]                                                 # pixels below
            d = dst[x:]
            for i in range(W - x):
                d[i] = (np.int32(r3[3 * i]) * 3735 + np.int32(r3[3 * i + 1]) * 19235
                        + np.int32(r3[3 * i + 2]) * 9798 + 16384) >> 15
        else:
            for x in range(W):
                dst[x] = (np.float32(row[3 * x]) * np.float32(0.114)
                          + np.float32(row[3 * x + 1]) * np.float32(0.587)
                          + np.float32(row[3 * x + 2]) * np.float32(0.299))
    else:
        off = left * cn
        dst = buf[off:off + W * cn]  # slices keep indices provably >= 0, so loops vectorize
        for x in range(W * cn):
            dst[x] = row[x]
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


# ``nchunks`` is either a chunk count (a whole call: chunks 0..nchunks-1) or, for the spin pool's
# calls on part of a frame, total | first << 16 | stop << 32: chunks [first, stop) of total.
@njit
def chunk_first(nchunks):
    return (nchunks >> 16) & 0xFFFF


@njit
def chunk_stop(nchunks):
    stop = nchunks >> 32
    return stop if stop else nchunks & 0xFFFF


@njit
def _chunk(c, nchunks, H):
    total = nchunks & 0xFFFF
    return c * H // total, (c + 1) * H // total


# ------------------------------------------------------------------------------ shared pieces
@njit
def _wsum(dst, src, offs, w, n, accumulate):
    """dst[:n] (+)= sum_t w[t] * src[offs[t] : offs[t] + n], taps fused three at a time so each
    pass reads and writes dst once (slices keep the loops vectorizable)."""
    T = w.shape[0]
    if T == 0 and not accumulate:
        dst[:n] = 0
    t = 0
    while t < T:
        r = T - t
        if r >= 3:
            a = src[offs[t]:offs[t] + n]
            b = src[offs[t + 1]:offs[t + 1] + n]
            c = src[offs[t + 2]:offs[t + 2] + n]
            wa, wb, wc = w[t], w[t + 1], w[t + 2]
            if accumulate:
                for x in range(n):
                    dst[x] += wa * a[x] + wb * b[x] + wc * c[x]
            else:
                for x in range(n):
                    dst[x] = wa * a[x] + wb * b[x] + wc * c[x]
            t += 3
        elif r == 2:
            a = src[offs[t]:offs[t] + n]
            b = src[offs[t + 1]:offs[t + 1] + n]
            wa, wb = w[t], w[t + 1]
            if accumulate:
                for x in range(n):
                    dst[x] += wa * a[x] + wb * b[x]
            else:
                for x in range(n):
                    dst[x] = wa * a[x] + wb * b[x]
            t += 2
        else:
            a = src[offs[t]:offs[t] + n]
            wa = w[t]
            if accumulate:
                for x in range(n):
                    dst[x] += wa * a[x]
            else:
                for x in range(n):
                    dst[x] = wa * a[x]
            t += 1
        accumulate = True


@njit
def _wsum_rows(dst, ring, slots, w, n):
    """dst[:n] = sum_t w[t] * ring[slots[t], :n] (the column pass over ring rows)."""
    T = w.shape[0]
    if T == 0:
        dst[:n] = 0
    t = 0
    accumulate = False
    while t < T:
        r = T - t
        if r >= 3:
            a = ring[slots[t]]
            b = ring[slots[t + 1]]
            c = ring[slots[t + 2]]
            wa, wb, wc = w[t], w[t + 1], w[t + 2]
            if accumulate:
                for x in range(n):
                    dst[x] += wa * a[x] + wb * b[x] + wc * c[x]
            else:
                for x in range(n):
                    dst[x] = wa * a[x] + wb * b[x] + wc * c[x]
            t += 3
        elif r == 2:
            a = ring[slots[t]]
            b = ring[slots[t + 1]]
            wa, wb = w[t], w[t + 1]
            if accumulate:
                for x in range(n):
                    dst[x] += wa * a[x] + wb * b[x]
            else:
                for x in range(n):
                    dst[x] = wa * a[x] + wb * b[x]
            t += 2
        else:
            a = ring[slots[t]]
            wa = w[t]
            if accumulate:
                for x in range(n):
                    dst[x] += wa * a[x]
            else:
                for x in range(n):
                    dst[x] = wa * a[x]
            t += 1
        accumulate = True


@njit
def _post(acc, orow, n, post, p0, p1, out_u8):
    """Write one accumulated float32 row to the output row.

    POST_SATURATE: exact integer sums -> clamp to uint8;
    POST_GAUSS_Q16: (v + 2**15) >> 16; POST_BOX_DIV: ((v + p0) * p1) >> 23 (OpenCV's
    ColumnSum<ushort, uchar>); POST_BOX_FLOAT: v * float32(1/p0) rounded in the first multiple of
    8 elements (OpenCV's SIMD lanes), v * double(1/p0) in the tail. Sums are integers below 2**24,
    so float32 holds them exactly and these match OpenCV's integer arithmetic bit for bit.
    float32 outputs (out_u8 False) take the sums as they are."""
    if post == POST_SATURATE:
        if not out_u8:
            for x in range(n):
                orow[x] = acc[x]
        else:
            lo = np.float32(0)
            hi = np.float32(255)
            for x in range(n):
                orow[x] = min(max(acc[x], lo), hi)
    elif post == POST_GAUSS_Q16:
        for x in range(n):
            orow[x] = np.int32(acc[x] + np.float32(32768)) >> 16
    elif post == POST_BOX_DIV:
        for x in range(n):
            orow[x] = (np.int64(acc[x]) + p0) * p1 >> 23
    else:
        nvec = (n // 8) * 8
        s32 = np.float32(1.0 / p0)
        s64 = 1.0 / p0
        for x in range(nvec):
            orow[x] = _round_sat_u8(acc[x] * s32)
        for x in range(nvec, n):
            orow[x] = _round_sat_u8(np.float32(np.rint(np.float64(acc[x]) * s64)))


@njit
def _col_post(orow, acc, ring, slots, w, n, post, p0, p1, out_u8, scale):
    """Column pass and _post in one sweep when there are at most 3 column taps and the output
    rule is a clamp, the Q16 rounding or a float32 store (the common 3x3 cases); else two."""
    T = w.shape[0]
    if 1 <= T <= 3 and (post == POST_SATURATE or post == POST_GAUSS_Q16 or not out_u8):
        a = ring[slots[0]]
        b = a
        c = a
        wa = w[0]
        wb = np.float32(0)
        wc = np.float32(0)
        if T >= 2:
            b = ring[slots[1]]
            wb = w[1]
        if T == 3:
            c = ring[slots[2]]
            wc = w[2]
        if not out_u8:
            for x in range(n):
                orow[x] = (wa * a[x] + wb * b[x] + wc * c[x]) * scale
        elif post == POST_SATURATE:
            lo = np.float32(0)
            hi = np.float32(255)
            for x in range(n):
                orow[x] = min(max(wa * a[x] + wb * b[x] + wc * c[x], lo), hi)
        else:
            for x in range(n):
                orow[x] = np.int32(wa * a[x] + wb * b[x] + wc * c[x] + np.float32(32768)) >> 16
        return
    _wsum_rows(acc, ring, slots, w, n)
    if out_u8:
        _post(acc, orow, n, post, p0, p1, True)
    else:
        for x in range(n):
            orow[x] = acc[x] * scale


# float32 separable rows read in place: interior outputs straight from the source row, the few
# border outputs through the column map (no padded copy of the row; the row pass stays first, so
# results keep OpenCV's and the CUDA twin's order: row sums, then the column sum).
INPLACE = False


@njit
def _edges(row, rr, lo, hi, WC, kxo, kxw, lc, colmap, cn):
    """The row pass for outputs [0, lo) and [hi, WC), taps in order; element j of the padded row
    (lc = left * cn padding elements before the source row) through the column map."""
    for x in range(lo):
        rr[x] = _edge_value(row, x, WC, kxo, kxw, lc, colmap, cn)
    for x in range(hi, WC):
        rr[x] = _edge_value(row, x, WC, kxo, kxw, lc, colmap, cn)


@njit(inline="always")
def _edge_value(row, x, WC, kxo, kxw, lc, colmap, cn):
    v = np.float32(0)
    for t in range(kxo.shape[0]):
        j = x + kxo[t]
        i = j - lc
        if i < 0 or i >= WC:
            p = j // cn
            c = colmap[p]
            i = -1 if c < 0 else c * cn + j - p * cn
        v += kxw[t] * (np.float32(0) if i < 0 else row[i])
    return v


@njit
def _interior(kxo, lc, WC):
    """[lo, hi): the outputs whose taps all fall inside the source row."""
    omin = kxo[0]
    omax = kxo[0]
    for t in range(1, kxo.shape[0]):
        omin = min(omin, kxo[t])
        omax = max(omax, kxo[t])
    lo = max(0, min(lc - omin, WC))
    hi = max(lo, WC + lc - omax)
    return lo, hi


# ----------------------------------------------------------------------------------- 2-D kernels
def _corr2d(src, W, cn, gray, is_u8, rowmap, colmap, left, rstart, offs, w, kh, kw, out, nchunks):
    """Correlation with a 2-D kernel given as taps grouped by kernel row: taps rstart[i] ..
    rstart[i+1] belong to kernel row i (element offsets offs, weights w). float32 accumulation;
    uint8 outputs get exact integer sums clamped (the caller only sends kernels whose partial
    sums stay below 2**24), float32 outputs the sums."""
    H = out.shape[0]
    L = (W + kw - 1) * cn
    WC = W * cn
    for c in prange(chunk_first(nchunks), chunk_stop(nchunks)):
        y0, y1 = _chunk(c, nchunks, H)
        ring = np.empty((kh, L), np.float32)
        acc = np.empty(WC, np.float32)
        for p in range(y0, y0 + kh - 1):
            load_row(src, rowmap[p], colmap, left, W, cn, gray, is_u8, ring[p % kh])
        for y in range(y0, y1):
            p = y + kh - 1
            load_row(src, rowmap[p], colmap, left, W, cn, gray, is_u8, ring[p % kh])
            first = True
            for i in range(kh):
                t0, t1 = rstart[i], rstart[i + 1]
                if t1 > t0:
                    _wsum(acc, ring[(y + i) % kh], offs[t0:t1], w[t0:t1], WC, not first)
                    first = False
            if first:
                acc[:] = 0
            _post(acc, out[y], WC, POST_SATURATE, 0, 0, is_u8)


@intrinsic
def _fma32(typingctx, a, b, c):
    """a * b + c on float32 values rounded once (llvm.fma.f32: vfmadd in vector loops)."""
    if not (a == types.float32 and b == types.float32 and c == types.float32):
        return None
    sig = types.float32(types.float32, types.float32, types.float32)

    def codegen(context, builder, signature, args):
        f32 = ir.FloatType()
        fn = builder.module.declare_intrinsic("llvm.fma", [f32], ir.FunctionType(f32, [f32] * 3))
        return builder.call(fn, args)
    return sig, codegen


def _corr2d_u8float(src, W, cn, gray, rowmap, colmap, left, ti, tj, tk, kh, kw, out, nchunks):
    """uint8 -> uint8 with a general float32 kernel, summed like cv2.filter2D (FilterVec_8u and
    its scalar tail): float32 from 0 in raster tap order, each tap a fused multiply-add in the first
    WC - WC % 4 values of a row (OpenCV's v_muladd lanes), a multiply then an add in the last
    WC % 4 (its scalar loop); then cvRound + saturate. Compiled without fast-math (no
    contraction, no reassociation), so the tail's multiply and add stay two roundings."""
    H = out.shape[0]
    L = (W + kw - 1) * cn
    WC = W * cn
    n4 = WC - WC % 4
    for c in prange(chunk_first(nchunks), chunk_stop(nchunks)):
        y0, y1 = _chunk(c, nchunks, H)
        ring = np.empty((kh, L), np.float32)
        acc = np.empty(WC, np.float32)
        av, at = acc[0:n4], acc[n4:WC]
        for p in range(y0, y0 + kh - 1):
            load_row(src, rowmap[p], colmap, left, W, cn, gray, True, ring[p % kh])
        for y in range(y0, y1):
            p = y + kh - 1
            load_row(src, rowmap[p], colmap, left, W, cn, gray, True, ring[p % kh])
            acc[:] = 0
            for t in range(tk.shape[0]):
                k = tk[t]
                o = tj[t] * cn
                b = ring[(y + ti[t]) % kh]
                bv, bt = b[o:o + n4], b[o + n4:o + WC]
                for x in range(n4):
                    av[x] = _fma32(k, bv[x], av[x])
                for x in range(WC - n4):
                    at[x] = at[x] + k * bt[x]
            orow = out[y]
            for x in range(WC):
                orow[x] = _round_sat_u8(acc[x])


# ---------------------------------------------------------------------------- separable kernels
def _sep(src, W, cn, gray, is_u8, rowmap, colmap, left, kxo, kxw, kyi, kyw, kh, kw, post, p0, p1,
         scale, out, nchunks):
    """Separable correlation: row taps (element offsets kxo, weights kxw) into a float32 ring of
    kh row-filtered lines, then column taps (kernel rows kyi, weights kyw), then _post."""
    H = out.shape[0]
    L = (W + kw - 1) * cn
    WC = W * cn
    slots = np.empty(kyi.shape[0], np.int64)
    for c in prange(chunk_first(nchunks), chunk_stop(nchunks)):
        y0, y1 = _chunk(c, nchunks, H)
        buf = np.empty(L, np.float32)
        ring = np.empty((kh, WC), np.float32)
        acc = np.empty(WC, np.float32)
        sl = slots.copy()
        for p in range(y0, y1 + kh - 1):
            r = rowmap[p]
            if r < 0:
                ring[p % kh, :] = 0
            else:
                load_row(src, r, colmap, left, W, cn, gray, is_u8, buf)
                _wsum(ring[p % kh], buf, kxo, kxw, WC, False)
            y = p - (kh - 1)
            if y < y0:
                continue
            for t in range(kyi.shape[0]):
                sl[t] = (y + kyi[t]) % kh
            _col_post(out[y], acc, ring, sl, kyw, WC, post, p0, p1, is_u8, scale)


def _col_post16(orow, acc, ring, slots, w, n, post, p0, p1):
    """_col_post for 16-bit rings (NARROW is int16 or uint16, bound per compiled variant): the
    sums are exact; NARROW(...) keeps the vector lanes 16 bits wide."""
    T = w.shape[0]
    if T <= 3:
        a = ring[slots[0]]
        b = a
        c = a
        wa = w[0]
        wb = NARROW(0)
        wc = NARROW(0)
        if T >= 2:
            b = ring[slots[1]]
            wb = w[1]
        if T == 3:
            c = ring[slots[2]]
            wc = w[2]
        for x in range(n):
            acc[x] = NARROW(wa * a[x] + wb * b[x] + wc * c[x])
    else:
        _wsum_rows(acc, ring, slots, w, n)
    if post == POST_SATURATE:
        for x in range(n):
            orow[x] = min(max(NARROW(acc[x]), NARROW(0)), NARROW(255))
    elif post == POST_GAUSS_Q16:  # p1 = product of the factors taken out of the Q8 kernels
        for x in range(n):
            orow[x] = (np.int32(acc[x]) * np.int32(p1) + np.int32(32768)) >> 16
    else:  # POST_BOX_DIV; (s + p0) * p1 < 2**31 for areas <= 256
        for x in range(n):
            orow[x] = np.uint32((np.uint32(acc[x]) + np.uint32(p0)) * np.uint32(p1)) >> 23


def _sep16(src, W, cn, gray, rowmap, colmap, left, kxo, kxw, kyi, kyw, kh, kw, post, p0, p1,
           out, nchunks):
    """uint8 separable filters whose every partial sum fits 16 bits (Sobel, Scharr, the edge
    kernels, small Gaussians and boxes): twice the SIMD lanes of float32, same exact integers."""
    H = out.shape[0]
    L = (W + kw - 1) * cn
    WC = W * cn
    slots = np.empty(kyi.shape[0], np.int64)
    for c in prange(chunk_first(nchunks), chunk_stop(nchunks)):
        y0, y1 = _chunk(c, nchunks, H)
        buf = np.empty(L, NARROW)
        ring = np.empty((kh, WC), NARROW)
        acc = np.empty(WC, NARROW)
        sl = slots.copy()
        for p in range(y0, y1 + kh - 1):
            r = rowmap[p]
            if r < 0:
                ring[p % kh, :] = 0
            else:
                load_row(src, r, colmap, left, W, cn, gray, True, buf)
                _wsum(ring[p % kh], buf, kxo, kxw, WC, False)
            y = p - (kh - 1)
            if y < y0:
                continue
            for t in range(kyi.shape[0]):
                sl[t] = (y + kyi[t]) % kh
            _col_post16(out[y], acc, ring, sl, kyw, WC, post, p0, p1)


def _sep5(src, W, cn, gray, is_u8, rowmap, colmap, left, kxo, kxw, kyi, kyw, kh, kw, post, p0, p1,
          scale, out, nchunks):
    """Separable filters up to 5x5 in two loops per row: the row pass (five taps, unused ones
    weight 0 at offset 0) writes one ring line, the column pass over five ring lines writes the
    output with its rounding rule fused in. Every loop runs over all W*cn values of a padded row.
    NARROW is int16/uint16 for uint8 inputs whose partial sums fit, float32 for float32 inputs
    (then the output is sum * scale)."""
    H = out.shape[0]
    L = (W + kw - 1) * cn
    WC = W * cn
    x0, x1, x2, x3, x4 = NARROW(kxw[0]), NARROW(kxw[1]), NARROW(kxw[2]), NARROW(kxw[3]), NARROW(kxw[4])
    o0, o1, o2, o3, o4 = kxo[0], kxo[1], kxo[2], kxo[3], kxo[4]
    v0, v1, v2, v3, v4 = NARROW(kyw[0]), NARROW(kyw[1]), NARROW(kyw[2]), NARROW(kyw[3]), NARROW(kyw[4])
    lc = left * cn
    lo, hi = _interior(kxo, lc, WC)
    for c in prange(chunk_first(nchunks), chunk_stop(nchunks)):
        y0, y1 = _chunk(c, nchunks, H)
        buf = np.empty(L, src.dtype)
        ring = np.empty((kh, WC), NARROW)
        for p in range(y0, y1 + kh - 1):
            r = rowmap[p]
            rr = ring[p % kh]
            if r < 0:
                rr[:] = 0
            elif INPLACE and not gray:
                row = src[r]
                n = hi - lo
                s0 = lo - lc
                b0, b1, b2 = row[s0 + o0:s0 + o0 + n], row[s0 + o1:s0 + o1 + n], row[s0 + o2:s0 + o2 + n]
                b3, b4 = row[s0 + o3:s0 + o3 + n], row[s0 + o4:s0 + o4 + n]
                d = rr[lo:hi]
                for x in range(n):
                    d[x] = x0 * b0[x] + x1 * b1[x] + x2 * b2[x] + x3 * b3[x] + x4 * b4[x]
                _edges(row, rr, lo, hi, WC, kxo, kxw, lc, colmap, cn)
            else:
                load_row(src, r, colmap, left, W, cn, gray, is_u8, buf)
                b0, b1, b2 = buf[o0:o0 + WC], buf[o1:o1 + WC], buf[o2:o2 + WC]
                b3, b4 = buf[o3:o3 + WC], buf[o4:o4 + WC]
                for x in range(WC):
                    rr[x] = NARROW(x0 * NARROW(b0[x]) + x1 * NARROW(b1[x]) + x2 * NARROW(b2[x])
                                   + x3 * NARROW(b3[x]) + x4 * NARROW(b4[x]))
            y = p - (kh - 1)
            if y < y0:
                continue
            r0, r1, r2 = ring[(y + kyi[0]) % kh], ring[(y + kyi[1]) % kh], ring[(y + kyi[2]) % kh]
            r3, r4 = ring[(y + kyi[3]) % kh], ring[(y + kyi[4]) % kh]
            o = out[y]
            if not is_u8:
                for x in range(WC):
                    o[x] = (v0 * r0[x] + v1 * r1[x] + v2 * r2[x] + v3 * r3[x] + v4 * r4[x]) * scale
            elif post == POST_SATURATE:
                for x in range(WC):
                    v = NARROW(v0 * r0[x] + v1 * r1[x] + v2 * r2[x] + v3 * r3[x] + v4 * r4[x])
                    o[x] = min(max(v, NARROW(0)), NARROW(255))
            elif post == POST_SHIFT:  # LANE: NARROW for the integer variants (int32 in the float one)
                for x in range(WC):
                    v = LANE(v0 * r0[x] + v1 * r1[x] + v2 * r2[x] + v3 * r3[x] + v4 * r4[x])
                    o[x] = LANE(v + LANE(C0)) >> C1
            elif post == POST_MULHI:
                for x in range(WC):
                    v = LANE(v0 * r0[x] + v1 * r1[x] + v2 * r2[x] + v3 * r3[x] + v4 * r4[x])
                    o[x] = np.uint16((np.uint32(np.uint16(v + LANE(C0))) * np.uint32(C1)) >> 16) >> C2
            elif post == POST_GAUSS_Q16:
                q = np.int32(p1)
                for x in range(WC):
                    v = NARROW(v0 * r0[x] + v1 * r1[x] + v2 * r2[x] + v3 * r3[x] + v4 * r4[x])
                    o[x] = (np.int32(v) * q + np.int32(32768)) >> 16
            else:  # POST_BOX_DIV; (s + p0) * p1 < 2**31 for areas <= 256
                dl = np.uint32(p0)
                mul = np.uint32(p1)
                for x in range(WC):
                    v = NARROW(v0 * r0[x] + v1 * r1[x] + v2 * r2[x] + v3 * r3[x] + v4 * r4[x])
                    o[x] = np.uint32((np.uint32(v) + dl) * mul) >> 23


def _sep7(src, W, cn, gray, is_u8, rowmap, colmap, left, kxo, kxw, kyi, kyw, kh, kw, scale, out,
          nchunks):
    """Separable filters up to 7x7 in two fused loops per row (unused taps weight 0 at offset 0),
    like _sep5. uint8 (the Q8 Gaussians): the row pass in NARROW = uint16 lanes (255 * 256 fits),
    the column pass in LANE = int32 (65280 * 256 < 2**31), rounded (v + 2**15) >> 16 as
    GaussianBlur's fixed point does; float32: both passes in float32, times scale."""
    H = out.shape[0]
    L = (W + kw - 1) * cn
    WC = W * cn
    x0, x1, x2, x3 = NARROW(kxw[0]), NARROW(kxw[1]), NARROW(kxw[2]), NARROW(kxw[3])
    x4, x5, x6 = NARROW(kxw[4]), NARROW(kxw[5]), NARROW(kxw[6])
    o0, o1, o2, o3, o4, o5, o6 = kxo[0], kxo[1], kxo[2], kxo[3], kxo[4], kxo[5], kxo[6]
    v0, v1, v2, v3 = LANE(kyw[0]), LANE(kyw[1]), LANE(kyw[2]), LANE(kyw[3])
    v4, v5, v6 = LANE(kyw[4]), LANE(kyw[5]), LANE(kyw[6])
    lc = left * cn
    lo, hi = _interior(kxo, lc, WC)
    for c in prange(chunk_first(nchunks), chunk_stop(nchunks)):
        y0, y1 = _chunk(c, nchunks, H)
        buf = np.empty(L, src.dtype)
        ring = np.empty((kh, WC), NARROW)
        for p in range(y0, y1 + kh - 1):
            r = rowmap[p]
            rr = ring[p % kh]
            if r < 0:
                rr[:] = 0
            elif INPLACE and not gray:
                row = src[r]
                n = hi - lo
                s0 = lo - lc
                b0, b1, b2 = row[s0 + o0:s0 + o0 + n], row[s0 + o1:s0 + o1 + n], row[s0 + o2:s0 + o2 + n]
                b3, b4 = row[s0 + o3:s0 + o3 + n], row[s0 + o4:s0 + o4 + n]
                b5, b6 = row[s0 + o5:s0 + o5 + n], row[s0 + o6:s0 + o6 + n]
                d = rr[lo:hi]
                for x in range(n):
                    d[x] = (x0 * b0[x] + x1 * b1[x] + x2 * b2[x] + x3 * b3[x] + x4 * b4[x] + x5 * b5[x]
                            + x6 * b6[x])
                _edges(row, rr, lo, hi, WC, kxo, kxw, lc, colmap, cn)
            else:
                load_row(src, r, colmap, left, W, cn, gray, is_u8, buf)
                b0, b1, b2 = buf[o0:o0 + WC], buf[o1:o1 + WC], buf[o2:o2 + WC]
                b3, b4, b5, b6 = buf[o3:o3 + WC], buf[o4:o4 + WC], buf[o5:o5 + WC], buf[o6:o6 + WC]
                for x in range(WC):
                    rr[x] = NARROW(x0 * NARROW(b0[x]) + x1 * NARROW(b1[x]) + x2 * NARROW(b2[x])
                                   + x3 * NARROW(b3[x]) + x4 * NARROW(b4[x]) + x5 * NARROW(b5[x])
                                   + x6 * NARROW(b6[x]))
            y = p - (kh - 1)
            if y < y0:
                continue
            r0, r1, r2 = ring[(y + kyi[0]) % kh], ring[(y + kyi[1]) % kh], ring[(y + kyi[2]) % kh]
            r3, r4 = ring[(y + kyi[3]) % kh], ring[(y + kyi[4]) % kh]
            r5, r6 = ring[(y + kyi[5]) % kh], ring[(y + kyi[6]) % kh]
            o = out[y]
            if is_u8:
                for x in range(WC):
                    v = (v0 * LANE(r0[x]) + v1 * LANE(r1[x]) + v2 * LANE(r2[x]) + v3 * LANE(r3[x])
                         + v4 * LANE(r4[x]) + v5 * LANE(r5[x]) + v6 * LANE(r6[x]))
                    o[x] = np.int32(v + LANE(32768)) >> 16
            else:
                for x in range(WC):
                    o[x] = (v0 * r0[x] + v1 * r1[x] + v2 * r2[x] + v3 * r3[x] + v4 * r4[x]
                            + v5 * r5[x] + v6 * r6[x]) * scale


def _corr2d16(src, W, cn, gray, rowmap, colmap, left, rstart, offs, w, kh, kw, out, nchunks):
    """uint8 2-D integer kernels whose partial sums fit int16 (Laplacians, sharpen): exact."""
    H = out.shape[0]
    L = (W + kw - 1) * cn
    WC = W * cn
    for c in prange(chunk_first(nchunks), chunk_stop(nchunks)):
        y0, y1 = _chunk(c, nchunks, H)
        ring = np.empty((kh, L), NARROW)
        acc = np.empty(WC, NARROW)
        for p in range(y0, y0 + kh - 1):
            load_row(src, rowmap[p], colmap, left, W, cn, gray, True, ring[p % kh])
        for y in range(y0, y1):
            p = y + kh - 1
            load_row(src, rowmap[p], colmap, left, W, cn, gray, True, ring[p % kh])
            first = True
            for i in range(kh):
                t0, t1 = rstart[i], rstart[i + 1]
                if t1 > t0:
                    _wsum(acc, ring[(y + i) % kh], offs[t0:t1], w[t0:t1], WC, not first)
                    first = False
            if first:
                acc[:] = 0
            orow = out[y]
            for x in range(WC):
                orow[x] = min(max(NARROW(acc[x]), NARROW(0)), NARROW(255))


def _k3(src, W, cn, gray, rowmap, colmap, w, post, p0, p1, out_u8, out, nchunks):
    """Any 3x3 kernel in one pass per output row over a ring of three padded source rows (or
    fused-gray rows) of the source dtype: borders live in the padding, so each output row is one
    loop over all W*cn values (a 640-wide row is a whole number of AVX-512 iterations; the old
    W-2 interior loop spent a third of its time in the vector epilogue). NARROW is int16 for
    uint8 inputs (every partial sum of the kernels sent here fits) and float32 for float32."""
    H = out.shape[0]
    WC = W * cn
    L = (W + 2) * cn
    w00, w01, w02 = NARROW(w[0, 0]), NARROW(w[0, 1]), NARROW(w[0, 2])
    w10, w11, w12 = NARROW(w[1, 0]), NARROW(w[1, 1]), NARROW(w[1, 2])
    w20, w21, w22 = NARROW(w[2, 0]), NARROW(w[2, 1]), NARROW(w[2, 2])
    c2 = 2 * cn
    for c in prange(chunk_first(nchunks), chunk_stop(nchunks)):
        y0, y1 = _chunk(c, nchunks, H)
        ring = np.empty((3, L), src.dtype)
        for p in range(y0, y0 + 2):
            load_row(src, rowmap[p], colmap, 1, W, cn, gray, out_u8, ring[p % 3])
        for y in range(y0, y1):
            p = y + 2
            load_row(src, rowmap[p], colmap, 1, W, cn, gray, out_u8, ring[p % 3])
            a = ring[y % 3]
            b = ring[(y + 1) % 3]
            d = ring[(y + 2) % 3]
            a0, a1, a2 = a[0:WC], a[cn:cn + WC], a[c2:c2 + WC]
            b0, b1, b2 = b[0:WC], b[cn:cn + WC], b[c2:c2 + WC]
            d0, d1, d2 = d[0:WC], d[cn:cn + WC], d[c2:c2 + WC]
            o = out[y]
            if out_u8 and post == POST_SATURATE:  # one loop per rule keeps 16-bit lanes
                for x in range(WC):
                    v = NARROW(w00 * NARROW(a0[x]) + w01 * NARROW(a1[x]) + w02 * NARROW(a2[x])
                               + w10 * NARROW(b0[x]) + w11 * NARROW(b1[x]) + w12 * NARROW(b2[x])
                               + w20 * NARROW(d0[x]) + w21 * NARROW(d1[x]) + w22 * NARROW(d2[x]))
                    o[x] = min(max(v, NARROW(0)), NARROW(255))
            elif out_u8 and post == POST_SHIFT:
                for x in range(WC):
                    v = NARROW(w00 * NARROW(a0[x]) + w01 * NARROW(a1[x]) + w02 * NARROW(a2[x])
                               + w10 * NARROW(b0[x]) + w11 * NARROW(b1[x]) + w12 * NARROW(b2[x])
                               + w20 * NARROW(d0[x]) + w21 * NARROW(d1[x]) + w22 * NARROW(d2[x]))
                    o[x] = np.int16(v + np.int16(C0)) >> C1
            elif out_u8 and post == POST_MULHI:
                for x in range(WC):
                    v = NARROW(w00 * NARROW(a0[x]) + w01 * NARROW(a1[x]) + w02 * NARROW(a2[x])
                               + w10 * NARROW(b0[x]) + w11 * NARROW(b1[x]) + w12 * NARROW(b2[x])
                               + w20 * NARROW(d0[x]) + w21 * NARROW(d1[x]) + w22 * NARROW(d2[x]))
                    o[x] = np.uint16((np.uint32(np.uint16(v + np.int16(C0))) * np.uint32(C1)) >> 16) >> C2
            elif out_u8 and post == POST_GAUSS_Q16:
                q = np.int32(p1)
                for x in range(WC):
                    v = NARROW(w00 * NARROW(a0[x]) + w01 * NARROW(a1[x]) + w02 * NARROW(a2[x])
                               + w10 * NARROW(b0[x]) + w11 * NARROW(b1[x]) + w12 * NARROW(b2[x])
                               + w20 * NARROW(d0[x]) + w21 * NARROW(d1[x]) + w22 * NARROW(d2[x]))
                    o[x] = np.int32(np.int32(v) * q + np.int32(32768)) >> 16
            elif out_u8:
                dl = np.uint32(p0)
                mul = np.uint32(p1)
                for x in range(WC):
                    v = NARROW(w00 * NARROW(a0[x]) + w01 * NARROW(a1[x]) + w02 * NARROW(a2[x])
                               + w10 * NARROW(b0[x]) + w11 * NARROW(b1[x]) + w12 * NARROW(b2[x])
                               + w20 * NARROW(d0[x]) + w21 * NARROW(d1[x]) + w22 * NARROW(d2[x]))
                    o[x] = np.uint32((np.uint32(v) + dl) * mul) >> 23
            else:
                for x in range(WC):
                    o[x] = (w00 * a0[x] + w01 * a1[x] + w02 * a2[x]
                            + w10 * b0[x] + w11 * b1[x] + w12 * b2[x]
                            + w20 * d0[x] + w21 * d1[x] + w22 * d2[x])


# Taps of _k3sep's constant variants (bound per variant; SCONST False reads them from w).
SCONST = False
S00 = S01 = S02 = S10 = S11 = S12 = 0


def _k3sep(src, W, cn, gray, rowmap, colmap, w, post, p0, p1, out_u8, out, nchunks):
    """_k3 for separable kernels, w = (ky, kx) as a (2, 3) array: a column pass over the padded
    width into one NARROW line, then the row pass with the rounding rule: 6 multiplies per value
    instead of 9 (OpenCV's order for Sobel/Gaussian: exact integers for uint8 either way)."""
    H = out.shape[0]
    WC = W * cn
    L = (W + 2) * cn
    if SCONST:  # taps compiled in (named filters): multiplies by 1 and 2 become adds
        ky0, ky1, ky2 = NARROW(S00), NARROW(S01), NARROW(S02)
        kx0, kx1, kx2 = NARROW(S10), NARROW(S11), NARROW(S12)
    else:
        ky0, ky1, ky2 = NARROW(w[0, 0]), NARROW(w[0, 1]), NARROW(w[0, 2])
        kx0, kx1, kx2 = NARROW(w[1, 0]), NARROW(w[1, 1]), NARROW(w[1, 2])
    c2 = 2 * cn
    for c in prange(chunk_first(nchunks), chunk_stop(nchunks)):
        y0, y1 = _chunk(c, nchunks, H)
        ring = np.empty((3, L), src.dtype)
        col = np.empty(L, NARROW)
        zero = np.zeros(WC, src.dtype)
        if gray:
            for p in range(y0, y0 + 2):
                load_row(src, rowmap[p], colmap, 1, W, cn, gray, out_u8, ring[p % 3])
        for y in range(y0, y1):
            if gray:  # rows converted to gray once each, into a ring
                p = y + 2
                load_row(src, rowmap[p], colmap, 1, W, cn, gray, out_u8, ring[p % 3])
                a = ring[y % 3]
                b = ring[(y + 1) % 3]
                d = ring[(y + 2) % 3]
                for x in range(L):
                    col[x] = NARROW(ky0 * NARROW(a[x]) + ky1 * NARROW(b[x]) + ky2 * NARROW(d[x]))
            else:  # the column pass reads the source rows in place; border columns from the map
                a = src[rowmap[y]] if rowmap[y] >= 0 else zero
                b = src[rowmap[y + 1]] if rowmap[y + 1] >= 0 else zero
                d = src[rowmap[y + 2]] if rowmap[y + 2] >= 0 else zero
                cc = col[cn:cn + WC]
                for x in range(WC):
                    cc[x] = NARROW(ky0 * NARROW(a[x]) + ky1 * NARROW(b[x]) + ky2 * NARROW(d[x]))
                _fill_border_cols(col, colmap, 1, W, cn)
            s0, s1, s2 = col[0:WC], col[cn:cn + WC], col[c2:c2 + WC]
            o = out[y]
            if out_u8 and post == POST_SATURATE:
                for x in range(WC):
                    v = NARROW(kx0 * s0[x] + kx1 * s1[x] + kx2 * s2[x])
                    o[x] = min(max(v, NARROW(0)), NARROW(255))
            elif out_u8 and post == POST_SHIFT:
                for x in range(WC):
                    v = NARROW(kx0 * s0[x] + kx1 * s1[x] + kx2 * s2[x])
                    o[x] = np.int16(v + np.int16(C0)) >> C1
            elif out_u8 and post == POST_MULHI:
                for x in range(WC):
                    v = NARROW(kx0 * s0[x] + kx1 * s1[x] + kx2 * s2[x])
                    o[x] = np.uint16((np.uint32(np.uint16(v + np.int16(C0))) * np.uint32(C1)) >> 16) >> C2
            elif out_u8 and post == POST_GAUSS_Q16:
                q = np.int32(p1)
                for x in range(WC):
                    v = NARROW(kx0 * s0[x] + kx1 * s1[x] + kx2 * s2[x])
                    o[x] = np.int32(np.int32(v) * q + np.int32(32768)) >> 16
            elif out_u8:
                dl = np.uint32(p0)
                mul = np.uint32(p1)
                for x in range(WC):
                    v = NARROW(kx0 * s0[x] + kx1 * s1[x] + kx2 * s2[x])
                    o[x] = np.uint32((np.uint32(v) + dl) * mul) >> 23
            else:
                for x in range(WC):
                    o[x] = kx0 * s0[x] + kx1 * s1[x] + kx2 * s2[x]


# Taps of _k3flat's constant variants (bound per variant; TCONST False reads them from w).
TCONST = False
T00 = T01 = T02 = T10 = T11 = T12 = T20 = T21 = T22 = 0.0


def _k3flat(src, W, cn, rowmap, colmap, w, out, nchunks):
    """float32 3x3 correlation without copying rows: the interior rows of a block are one flat
    loop over the frame's memory (taps at +-1 row, +-cn elements), so it streams the source
    once; the values of the first and last column that the flat loop reads from the neighbour
    row are then rewritten through the border maps, as are the frame's first and last rows.
    Variants with TCONST compile the taps in (zero taps vanish, +-1 taps become adds)."""
    H = out.shape[0]
    WC = W * cn
    if TCONST:
        w00, w01, w02 = np.float32(T00), np.float32(T01), np.float32(T02)
        w10, w11, w12 = np.float32(T10), np.float32(T11), np.float32(T12)
        w20, w21, w22 = np.float32(T20), np.float32(T21), np.float32(T22)
    else:
        w00, w01, w02 = w[0, 0], w[0, 1], w[0, 2]
        w10, w11, w12 = w[1, 0], w[1, 1], w[1, 2]
        w20, w21, w22 = w[2, 0], w[2, 1], w[2, 2]
    f = src.reshape(H * WC)
    fo = out.reshape(H * WC)
    for c in prange(chunk_first(nchunks), chunk_stop(nchunks)):
        y0, y1 = _chunk(c, nchunks, H)
        ya, yb = max(y0, 1), min(y1, H - 1)
        if yb > ya:
            a, b = ya * WC + cn, yb * WC - cn  # the neighbour reads stay inside the frame
            n = b - a
            s00, s01, s02 = f[a - WC - cn:b - WC - cn], f[a - WC:b - WC], f[a - WC + cn:b - WC + cn]
            s10, s11, s12 = f[a - cn:b - cn], f[a:b], f[a + cn:b + cn]
            s20, s21, s22 = f[a + WC - cn:b + WC - cn], f[a + WC:b + WC], f[a + WC + cn:b + WC + cn]
            d = fo[a:b]
            if not TCONST:
                for x in range(n):
                    d[x] = (w00 * s00[x] + w01 * s01[x] + w02 * s02[x]
                            + w10 * s10[x] + w11 * s11[x] + w12 * s12[x]
                            + w20 * s20[x] + w21 * s21[x] + w22 * s22[x])
            # zero taps are left out at compile time (0 * x is not folded without no-nan math)
            for x in range(n if TCONST else 0):
                v = np.float32(0)
                if not TCONST or T11 != 0:
                    v += w11 * s11[x]
                if not TCONST or T00 != 0:
                    v += w00 * s00[x]
                if not TCONST or T01 != 0:
                    v += w01 * s01[x]
                if not TCONST or T02 != 0:
                    v += w02 * s02[x]
                if not TCONST or T10 != 0:
                    v += w10 * s10[x]
                if not TCONST or T12 != 0:
                    v += w12 * s12[x]
                if not TCONST or T20 != 0:
                    v += w20 * s20[x]
                if not TCONST or T21 != 0:
                    v += w21 * s21[x]
                if not TCONST or T22 != 0:
                    v += w22 * s22[x]
                d[x] = v
            # first and last column of each interior row: rows y-1..y+1, columns via the map
            cl, cr = colmap[0], colmap[W + 1]
            for y in range(ya, yb):
                r0, r1, r2 = src[y - 1], src[y], src[y + 1]
                o = out[y]
                for ch in range(cn):
                    u0 = r0[cl * cn + ch] if cl >= 0 else np.float32(0)
                    u1 = r1[cl * cn + ch] if cl >= 0 else np.float32(0)
                    u2 = r2[cl * cn + ch] if cl >= 0 else np.float32(0)
                    e = ch
                    # the right neighbour: the next pixel, or through the map when W == 1
                    if W > 1:
                        v0, v1, v2 = r0[e + cn], r1[e + cn], r2[e + cn]
                    elif cr >= 0:
                        v0, v1, v2 = r0[cr * cn + ch], r1[cr * cn + ch], r2[cr * cn + ch]
                    else:
                        v0 = v1 = v2 = np.float32(0)
                    o[e] = (w00 * u0 + w01 * r0[e] + w02 * v0 + w10 * u1 + w11 * r1[e] + w12 * v1
                            + w20 * u2 + w21 * r2[e] + w22 * v2)
                    if W > 1:
                        e = WC - cn + ch
                        v0 = r0[cr * cn + ch] if cr >= 0 else np.float32(0)
                        v1 = r1[cr * cn + ch] if cr >= 0 else np.float32(0)
                        v2 = r2[cr * cn + ch] if cr >= 0 else np.float32(0)
                        o[e] = (w00 * r0[e - cn] + w01 * r0[e] + w02 * v0 + w10 * r1[e - cn]
                                + w11 * r1[e] + w12 * v1 + w20 * r2[e - cn] + w21 * r2[e]
                                + w22 * v2)
        for y in (0, H - 1):  # the frame's first and last rows: through a padded 3-row buffer
            if y < y0 or y >= y1:
                continue
            buf = np.empty((3, (W + 2) * cn), np.float32)
            for i in range(3):
                load_row(src, rowmap[y + i], colmap, 1, W, cn, False, False, buf[i])
            a0, a1, a2 = buf[0, 0:WC], buf[0, cn:cn + WC], buf[0, 2 * cn:2 * cn + WC]
            b0, b1, b2 = buf[1, 0:WC], buf[1, cn:cn + WC], buf[1, 2 * cn:2 * cn + WC]
            d0, d1, d2 = buf[2, 0:WC], buf[2, cn:cn + WC], buf[2, 2 * cn:2 * cn + WC]
            o = out[y]
            for x in range(WC):
                o[x] = (w00 * a0[x] + w01 * a1[x] + w02 * a2[x] + w10 * b0[x] + w11 * b1[x]
                        + w12 * b2[x] + w20 * d0[x] + w21 * d1[x] + w22 * d2[x])


def _k3sepflat(src, W, cn, rowmap, colmap, w, out, nchunks):
    """float32 separable 3x3, w = (ky, kx) as a (2, 3) array, reading source rows in place: the
    column pass over the three rows (through the row map) writes one padded line, whose border
    columns are copies of mapped columns (the column pass is linear), then the row pass. No row
    copies: 8 memory operations a value instead of the ring kernel's 10."""
    H = out.shape[0]
    WC = W * cn
    L = (W + 2) * cn
    ky0, ky1, ky2 = w[0, 0], w[0, 1], w[0, 2]
    kx0, kx1, kx2 = w[1, 0], w[1, 1], w[1, 2]
    c2 = 2 * cn
    for c in prange(chunk_first(nchunks), chunk_stop(nchunks)):
        y0, y1 = _chunk(c, nchunks, H)
        col = np.empty(L, np.float32)
        zero = np.zeros(WC, np.float32)  # rows outside a constant border
        mid = col[cn:cn + WC]
        for y in range(y0, y1):
            i0, i1, i2 = rowmap[y], rowmap[y + 1], rowmap[y + 2]
            r0 = src[i0] if i0 >= 0 else zero
            r1 = src[i1] if i1 >= 0 else zero
            r2 = src[i2] if i2 >= 0 else zero
            for x in range(WC):
                mid[x] = ky0 * r0[x] + ky1 * r1[x] + ky2 * r2[x]
            for q in range(2):  # the two border columns of the line
                pc = 0 if q == 0 else W + 1
                sc = colmap[pc]
                for ch in range(cn):
                    col[pc * cn + ch] = 0 if sc < 0 else col[(1 + sc) * cn + ch]
            s0, s1, s2 = col[0:WC], col[cn:cn + WC], col[c2:c2 + WC]
            o = out[y]
            for x in range(WC):
                o[x] = kx0 * s0[x] + kx1 * s1[x] + kx2 * s2[x]


@njit
def _gray_u8(row, W, dst):
    """cvtColor BGR2GRAY of one uint8 row (Q15 weights), into dst[:W]."""
    for x in range(W):
        dst[x] = (np.int32(row[3 * x]) * 3735 + np.int32(row[3 * x + 1]) * 19235
                  + np.int32(row[3 * x + 2]) * 9798 + 16384) >> 15


def _box16(src, W, cn, gray, rowmap, colmap, kh, kw, post, p0, p1, out, nchunks):
    """uint8 box filter with area <= 256 (every window sum fits uint16): per thread block a running
    column sum S over the padded W*cn values (add the row entering the window, subtract the one
    leaving; source rows are read in place, fused-gray rows kept in a ring of kh + 1), its border
    columns from the column map, then the kw shifted adds and OpenCV's division per output row.
    Cost per row is flat in kh. C0..C2 (compile-time) give the division as ((s + C0) * C1 >> 16)
    >> C2 (POST_MULHI): with C2 == 0 it is one 16-bit multiply-high per value; otherwise the
    high half goes through a uint16 line first, which keeps LLVM from merging the two shifts
    into a 32-bit multiply. Area 2 is the only one whose division can give 256 (two 255s): OpenCV
    saturates it in its 16-lane SIMD blocks and wraps it to 0 in the row tail; so does this."""
    H = out.shape[0]
    WC = W * cn
    left = kw // 2
    L = (W + kw - 1) * cn
    n16 = (WC // 16) * 16 if kh * kw == 2 else 0  # values that saturate instead of wrapping
    for c in prange(chunk_first(nchunks), chunk_stop(nchunks)):
        y0, y1 = _chunk(c, nchunks, H)
        S = np.zeros(L, np.uint16)
        Sw = S[left * cn:left * cn + WC]
        t = np.empty(WC, np.uint16)
        g = np.empty((kh + 1, WC if gray else 1), np.uint8)  # fused-gray rows still in the window
        for p in range(y0, y1 + kh - 1):
            ri = rowmap[p]
            ro = rowmap[p - kh] if p >= y0 + kh else -1  # the first window starts from S = 0
            if gray:
                if ri >= 0:
                    _gray_u8(src[ri], W, g[p % (kh + 1)])
                a = g[p % (kh + 1)]
                b = g[(p - kh) % (kh + 1)]
            else:
                a = src[max(ri, 0)]
                b = src[max(ro, 0)]
            if ri >= 0 and ro >= 0:  # rows outside a constant border (index < 0) add nothing
                for x in range(WC):  # uint16 wrap-around is exact: the window sum fits
                    Sw[x] += np.uint16(a[x]) - np.uint16(b[x])
            elif ri >= 0:
                for x in range(WC):
                    Sw[x] += np.uint16(a[x])
            elif ro >= 0:
                for x in range(WC):
                    Sw[x] -= np.uint16(b[x])
            y = p - (kh - 1)
            if y < y0:
                continue
            for q in range(kw - 1):  # border columns of S (inline: a call per row cost ~20 ns)
                pc = q if q < left else W + q
                sc = colmap[pc]
                for ch in range(cn):
                    S[pc * cn + ch] = 0 if sc < 0 else S[(left + sc) * cn + ch]
            o = out[y]
            if post == POST_MULHI and (kw == 3 or kw == 5):  # the benchmark sizes: one or two loops
                s0, s1, s2 = S[0:WC], S[cn:cn + WC], S[2 * cn:2 * cn + WC]
                s3, s4 = S[(kw - 2) * cn:(kw - 2) * cn + WC], S[(kw - 1) * cn:(kw - 1) * cn + WC]
                # C2 == 0: one 16-bit multiply-high per value; else LLVM merges the two shifts and
                # multiplies in 32-bit lanes (a uint16 line between them did not vectorize)
                if kw == 3:
                    for x in range(WC):
                        v = np.uint16(s0[x] + s1[x] + s2[x] + np.uint16(C0))
                        o[x] = np.uint16((np.uint32(v) * np.uint32(C1)) >> 16) >> C2
                elif C2 == 0:
                    for x in range(WC):
                        v = np.uint16(s0[x] + s1[x] + s2[x] + s3[x] + s4[x] + np.uint16(C0))
                        o[x] = np.uint16((np.uint32(v) * np.uint32(C1)) >> 16)
                elif C2 <= 4:  # q >> C2 as a second multiply-high (exact, see MULHI2)
                    for x in range(WC):
                        v = np.uint16(s0[x] + s1[x] + s2[x] + s3[x] + s4[x] + np.uint16(C0))
                        q = np.uint16((np.uint32(v) * np.uint32(C1)) >> 16)
                        o[x] = np.uint16((np.uint32(q) * np.uint32(MULHI2)) >> 16)
                else:  # multiply-high into the uint16 line t, then the shift: 16-bit lanes
                    for x in range(WC):
                        v = np.uint16(s0[x] + s1[x] + s2[x] + s3[x] + s4[x] + np.uint16(C0))
                        t[x] = np.uint16((np.uint32(v) * np.uint32(C1)) >> 16)
                    for x in range(WC):
                        o[x] = t[x] >> C2
                continue
            t[:] = S[0:WC]
            for j in range(1, kw):
                sj = S[j * cn:j * cn + WC]
                for x in range(WC):
                    t[x] += sj[x]
            # the tails run over slices: a loop starting at a runtime index does not vectorize
            ot, tt = o[n16:WC], t[n16:WC]
            if post == POST_SATURATE:  # area 1
                for x in range(WC):
                    o[x] = t[x]
            elif post == POST_MULHI:
                for x in range(WC):
                    t[x] = (np.uint32(np.uint16(t[x] + np.uint16(C0))) * np.uint32(C1)) >> 16
                for x in range(n16):
                    o[x] = min(np.uint16(t[x] >> C2), np.uint16(255))
                for x in range(WC - n16):
                    ot[x] = tt[x] >> C2
            else:  # POST_BOX_DIV: (s + p0) * p1 >> 23 < 2**32 for areas <= 256
                dl = np.uint32(p0)
                mul = np.uint32(p1)
                for x in range(n16):
                    o[x] = min(np.uint32((np.uint32(t[x]) + dl) * mul) >> 23, np.uint32(255))
                for x in range(WC - n16):
                    ot[x] = np.uint32((np.uint32(tt[x]) + dl) * mul) >> 23


KH = KW = 3  # _boxflat's window (bound per variant)
BOXSTRIP = 16  # output rows per strip of _boxflat (the uint16 column sums of a strip stay in L1)


def _boxflat(src, W, cn, rowmap, colmap, out, nchunks):
    """uint8 box KH x KW (3 or 5 each; POST_MULHI division with C0..C2 compiled in, C2 <= 4 when
    KW is 5) in strips of BOXSTRIP output rows, vertical then horizontal, each pass one flat loop
    over a strip's memory: V = the KH source rows' sum per value (uint16, read in place from the
    frame, strips touching a row border go row by row through the row map), then out = ((sum of
    V[x-h..x+h] + C0) * C1 >> 16) >> C2 over the strip as one line; the first and last h pixels
    of each row, which that line takes from the neighbouring row, are redone through the column
    map after the chunk's last strip, from the few V columns they read (kept per strip), all rows
    at once. No per-row slices or running-sum stores in the hot loops. Areas >= 9: no
    saturation case."""
    H = out.shape[0]
    WC = W * cn
    top = KH // 2
    h = KW // 2
    hc = h * cn
    f = src.reshape(H * WC)
    fo = out.reshape(H * WC)
    for c in prange(chunk_first(nchunks), chunk_stop(nchunks)):
        y0, y1 = _chunk(c, nchunks, H)
        V = np.empty(BOXSTRIP * WC, np.uint16)
        # edge pixels (first and last h, each once on narrow frames): offsets, their window's
        # value offsets (columns through the map) and weights (0 outside a constant border)
        eo = np.empty(2 * h, np.int64)
        ei = np.zeros((2 * h, KW), np.int64)
        ew = np.zeros((2 * h, KW), np.uint32)
        ne = 0
        for q in range(2 * h):
            px = q if q < h else W - 2 * h + q
            if px < 0 or px >= W or (q >= h and px < h):
                continue
            eo[ne] = px * cn
            for dx in range(KW):
                sc = colmap[px + dx]
                if sc >= 0:
                    ei[ne, dx] = sc * cn
                    ew[ne, dx] = 1
            ne += 1
        # the value offsets those windows read, each once (tc, for every channel), and where in
        # tc each tap finds its own (ti); EV keeps their V values for the chunk's rows
        tc = np.empty(2 * h * KW * cn, np.int64)
        ti = np.zeros((2 * h, KW), np.int64)
        nt = 0
        for q in range(ne):
            for dx in range(KW):
                k = -1
                for t in range(0, nt, cn):
                    if tc[t] == ei[q, dx]:
                        k = t
                if k < 0:
                    k = nt
                    for ch in range(cn):
                        tc[nt] = ei[q, dx] + ch
                        nt += 1
                ti[q, dx] = k
        EV = np.empty((max(nt, 1), y1 - y0), np.uint16)
        sums = np.empty(y1 - y0, np.uint32)
        # strips of up to BOXSTRIP rows; the rows whose window leaves the frame get strips of
        # their own (they go row by row through the row map), so the others all run flat
        inside_end = H - (KH - 1 - top)  # first row whose window reads below the frame
        ys = y0
        while ys < y1:
            if ys < top:
                ye = min(top, y1)
            elif ys < inside_end:
                ye = min(ys + BOXSTRIP, y1, inside_end)
            else:
                ye = min(ys + BOXSTRIP, y1)
            n = (ye - ys) * WC
            a = ys * WC
            if ys - top >= 0 and ye - 1 + (KH - 1 - top) < H:  # every row inside the frame
                b = a - top * WC
                r0, r1, r2 = f[b:b + n], f[b + WC:b + WC + n], f[b + 2 * WC:b + 2 * WC + n]
                if KH == 3:
                    for x in range(n):
                        V[x] = np.uint16(r0[x]) + np.uint16(r1[x]) + np.uint16(r2[x])
                else:
                    r3, r4 = f[b + 3 * WC:b + 3 * WC + n], f[b + 4 * WC:b + 4 * WC + n]
                    for x in range(n):
                        V[x] = (np.uint16(r0[x]) + np.uint16(r1[x]) + np.uint16(r2[x])
                                + np.uint16(r3[x]) + np.uint16(r4[x]))
            else:
                for y in range(ys, ye):
                    Vr = V[(y - ys) * WC:(y - ys + 1) * WC]
                    Vr[:] = 0
                    for i in range(KH):
                        ri = rowmap[y + i]
                        if ri >= 0:
                            row = src[ri]
                            for x in range(WC):
                                Vr[x] += np.uint16(row[x])
            if n > 2 * hc:
                m = n - 2 * hc
                d = fo[a + hc:a + hc + m]
                v0, v1, v2 = V[0:m], V[cn:cn + m], V[2 * cn:2 * cn + m]
                if KW == 3:
                    for x in range(m):
                        v = np.uint16(v0[x] + v1[x] + v2[x] + np.uint16(C0))
                        d[x] = np.uint16((np.uint32(v) * np.uint32(C1)) >> 16) >> C2
                elif C2 == 0:
                    v3, v4 = V[3 * cn:3 * cn + m], V[4 * cn:4 * cn + m]
                    for x in range(m):
                        v = np.uint16(v0[x] + v1[x] + v2[x] + v3[x] + v4[x] + np.uint16(C0))
                        d[x] = np.uint16((np.uint32(v) * np.uint32(C1)) >> 16)
                else:  # the shift as a second multiply-high (C2 <= 4, see MULHI2)
                    v3, v4 = V[3 * cn:3 * cn + m], V[4 * cn:4 * cn + m]
                    for x in range(m):
                        v = np.uint16(v0[x] + v1[x] + v2[x] + v3[x] + v4[x] + np.uint16(C0))
                        q = np.uint16((np.uint32(v) * np.uint32(C1)) >> 16)
                        d[x] = np.uint16((np.uint32(q) * np.uint32(MULHI2)) >> 16)
            for t in range(nt):  # the V values the edge windows read, for the pass below
                col = np.uint64(tc[t])  # (unsigned: no negative-index fix-up per value, 1.2 us)
                base = np.uint64(ys - y0)
                for r in range(np.uint64(ye - ys)):
                    EV[np.uint64(t), base + r] = V[r * np.uint64(WC) + col]
            ys = ye
        # each row's first and last h pixels (the line read them across the row ends), all the
        # chunk's rows at once: per row and pixel through the tables, they took 7 of 31 us
        ny = y1 - y0
        for q in range(ne):
            for ch in range(cn):
                for r in range(ny):
                    sums[r] = np.uint32(C0)
                for dx in range(KW):
                    wq = ew[q, dx]
                    k = ti[q, dx] + ch
                    for r in range(ny):
                        sums[r] += wq * np.uint32(EV[k, r])
                po = y0 * WC + eo[q] + ch
                for r in range(ny):
                    v = np.uint32(np.uint16(sums[r]))
                    fo[po + r * WC] = np.uint8(((v * np.uint32(C1)) >> 16) >> C2)


def _compile(f, parallel, suffix="", fastmath=None, **bind):
    """A dispatcher from one body, parallel or serial, with module globals rebound by ``bind``
    (NARROW and its helper for the 16-bit variants); distinct names keep on-disk caches apart.
    ``fastmath`` overrides the project's flags (_jit.FASTMATH) for kernels that must round
    exactly like OpenCV."""
    import types
    name = f.__name__.lstrip("_") + suffix + ("_par" if parallel else "_ser") + "_" + _simd.TAG
    env = dict(f.__globals__)
    env.update(bind)
    g = types.FunctionType(f.__code__.replace(co_name=name, co_qualname=name), env, name)
    g.__qualname__ = name
    g.__doc__ = f.__doc__
    return njit(g, parallel=parallel, fastmath=fastmath)


corr2d_par, corr2d_ser = _compile(_corr2d, True), _compile(_corr2d, False)
corr2d_u8float_par = _compile(_corr2d_u8float, True, fastmath=False)
corr2d_u8float_ser = _compile(_corr2d_u8float, False, fastmath=False)
sep_par, sep_ser = _compile(_sep, True), _compile(_sep, False)


# ----------------------------------------------------------------------------------- gradients
@njit
def _angle(gx, gy, twopi):
    """atan2(gy, gx) in [0, 2*pi) without libm: Abramowitz & Stegun 4.4.49 (|error| <= 2e-8 on
    [0, 1]) on min/max of |gx|, |gy|, then octant fixes; branch-free so the loop vectorizes."""
    ax = abs(gx)
    ay = abs(gy)
    mx = max(ax, ay)
    mn = min(ax, ay)
    t = mn / mx if mx > 0 else np.float32(0)
    t2 = t * t
    a = t * (np.float32(0.9999993329) + t2 * (np.float32(-0.3332985605) + t2 * (
        np.float32(0.1994653599) + t2 * (np.float32(-0.1390853351) + t2 * (
            np.float32(0.0964200441) + t2 * (np.float32(-0.0559098861) + t2 * (
                np.float32(0.0218612288) + t2 * np.float32(-0.0040540580))))))))
    a = np.float32(np.pi / 2) - a if ay > ax else a
    a = np.float32(np.pi) - a if gx < 0 else a
    a = twopi - a if gy < 0 else a
    return np.float32(0) if a >= twopi else a


def _gradient(src, W, cn, gray, is_u8, rowmap, colmap, left, ka, kb, want_mag, out, nchunks):
    """Magnitude (want_mag) or orientation of (gx, gy), gx = rows ka x cols kb, gy = its transpose
    (ka smoothing, kb = (-1, 0, 1) the plan's derivative), from one ring of padded float32 rows
    in separable form: per row a column smoothing sm and a column difference df over the padded
    width, then gx = sm[x+1] - sm[x-1] and gy = ka . df[x-1..x+1] (6 loads a value, not 9).
    Magnitude: sqrt(gx^2 + gy^2) in float32 (rounded and saturated for uint8 outputs);
    orientation: atan2(gy, gx) in radians in [0, 2*pi), float32."""
    H = out.shape[0]
    L = (W + 2) * cn
    WC = W * cn
    twopi = np.float32(2 * np.pi)
    a0, a1, a2 = ka[0], ka[1], ka[2]
    c2 = 2 * cn
    for c in prange(chunk_first(nchunks), chunk_stop(nchunks)):
        y0, y1 = _chunk(c, nchunks, H)
        ring = np.empty((3, L), np.float32)
        sm = np.empty(L, np.float32)
        df = np.empty(L, np.float32)
        for p in range(y0, y0 + 2):
            load_row(src, rowmap[p], colmap, left, W, cn, gray, is_u8, ring[p % 3])
        for y in range(y0, y1):
            p = y + 2
            load_row(src, rowmap[p], colmap, left, W, cn, gray, is_u8, ring[p % 3])
            r0 = ring[y % 3]
            r1 = ring[(y + 1) % 3]
            r2 = ring[(y + 2) % 3]
            for x in range(L):
                sm[x] = a0 * r0[x] + a1 * r1[x] + a2 * r2[x]
                df[x] = r2[x] - r0[x]
            s0, s2 = sm[0:WC], sm[c2:c2 + WC]
            d0, d1, d2 = df[0:WC], df[cn:cn + WC], df[c2:c2 + WC]
            orow = out[y]
            if want_mag and is_u8:
                for x in range(WC):
                    gx = s2[x] - s0[x]
                    gy = a0 * d0[x] + a1 * d1[x] + a2 * d2[x]
                    orow[x] = _round_sat_u8(np.sqrt(gx * gx + gy * gy))
            elif want_mag:
                for x in range(WC):
                    gx = s2[x] - s0[x]
                    gy = a0 * d0[x] + a1 * d1[x] + a2 * d2[x]
                    orow[x] = np.sqrt(gx * gx + gy * gy)
            else:
                for x in range(WC):
                    gx = s2[x] - s0[x]
                    gy = a0 * d0[x] + a1 * d1[x] + a2 * d2[x]
                    orow[x] = _angle(gx, gy, twopi)


@njit
def _gray_peel(src, out, a):
    """Pixels to convert one by one before the vector loop over out[a:], src[3a:] (float32):
    Zen 4 and other 256-bit-wide cores run a 64-byte access as two 32-byte halves, so the loop
    is fastest when its loads and stores start on 32 bytes. Both can when the arrays' addresses
    agree mod 32 (a pixel moves the output 4 bytes and the input 12): then the store is aligned
    too; otherwise only the three loads are (one split store costs what one split load does).
    Measured on 640x480 frames, every 16-byte offset of each array: 55.3 -> 52.4 us."""
    ao = (out.ctypes.data + 4 * a) & 31
    ai = (src.ctypes.data + 12 * a) & 31
    if ao & 3 or ai & 3:  # not float-aligned: nothing to gain
        return 0
    if ai == (3 * ao) & 31:
        return ((32 - ao) >> 2) & 7
    return ((32 - ai) >> 2) * 3 & 7  # 12 p + ai == 0 (mod 32): p = 3 (-ai / 4) mod 8


IS_U8 = False  # _to_gray's input dtype (bound per variant)


def _to_gray(src, out, nchunks):
    """BGR -> gray with cvtColor's arithmetic (uint8: Q15 weights 3735, 19235, 9798). src is the
    C-contiguous (H, W, 3) frame (or any shape holding it), out (H, W). The rows are contiguous,
    so each chunk is one run of pixels: no per-row loop setup, peel or tail (on 640-pixel rows
    those cost ~5 % of the call). Three arguments: each one costs Python ~0.2-0.5 us per call
    to type once a frame has flushed the caches. IS_U8 is compiled in."""
    H, W = out.shape
    fs = src.reshape(src.size)
    fo = out.reshape(out.size)
    for c in prange(chunk_first(nchunks), chunk_stop(nchunks)):
        y0, y1 = _chunk(c, nchunks, H)
        a, b = y0 * W, y1 * W
        if IS_U8:
            x = a + (gray_simd_prefix(fs, 3 * a, fo, a, b - a) if GRAY_SIMD else 0)
            r = fs[3 * x:3 * b]  # (loops over views from 0: an index from a, times 3, might wrap
            o = fo[x:b]          # for LLVM and keep it from vectorizing)
            for i in range(b - x):
                o[i] = (np.int32(r[3 * i]) * 3735 + np.int32(r[3 * i + 1]) * 19235
                        + np.int32(r[3 * i + 2]) * 9798 + 16384) >> 15
        else:
            p = a + min(b - a, _gray_peel(fs, fo, a))
            for x in range(a, p):
                fo[x] = (np.float32(fs[3 * x]) * np.float32(0.114)
                         + np.float32(fs[3 * x + 1]) * np.float32(0.587)
                         + np.float32(fs[3 * x + 2]) * np.float32(0.299))
            r = fs[3 * p:3 * b]
            o = fo[p:b]
            for x in range(b - p):
                o[x] = (np.float32(r[3 * x]) * np.float32(0.114)
                        + np.float32(r[3 * x + 1]) * np.float32(0.587)
                        + np.float32(r[3 * x + 2]) * np.float32(0.299))


gradient_par, gradient_ser = _compile(_gradient, True), _compile(_gradient, False)
to_gray = {(u8, par): _compile(_to_gray, par, "_u8" if u8 else "_f32", IS_U8=u8)
           for u8 in (False, True) for par in (False, True)}
to_gray_u8_loop = _compile(_to_gray, False, "_u8_loop", IS_U8=True, GRAY_SIMD=False)

# 16-bit variants: int16 for signed kernels, uint16 for non-negative ones (sums up to 65535).
_cp16 = {t.__name__: _compile(_col_post16, False, "_" + t.__name__, NARROW=t) for t in (np.int16, np.uint16)}
sep16 = {(t.__name__, par): _compile(_sep16, par, "_" + t.__name__, NARROW=t, _col_post16=_cp16[t.__name__])
         for t in (np.int16, np.uint16) for par in (True, False)}
corr2d16 = {(t.__name__, par): _compile(_corr2d16, par, "_" + t.__name__, NARROW=t)
            for t in (np.int16, np.uint16) for par in (True, False)}
_VARIANTS = {}


def variant(kind, narrow, parallel, c0, c1, c2, taps=None):
    """k3, k3sep, sep5 or box with the rounding constants C0..C2 compiled in (POST_SHIFT,
    POST_MULHI); k3sep also with its six integer taps (ky, kx) when ``taps`` is given."""
    taps = None if taps is None else tuple(int(v) for v in np.asarray(taps).ravel())
    key = (kind, narrow, parallel, c0, c1, c2, taps)
    f = _VARIANTS.get(key)
    if f is None:
        t = getattr(np, narrow)
        bind = dict(NARROW=t, C0=int(c0), C1=int(c1), C2=int(c2),
                    MULHI2=(1 << (16 - int(c2))) + 1 if 1 <= int(c2) <= 4 else 0)
        suffix = ""
        if taps is not None:
            bind.update(SCONST=True, **dict(zip(("S00", "S01", "S02", "S10", "S11", "S12"), taps)))
            suffix = "_t" + "_".join(str(v).replace("-", "m") for v in taps)
        if kind == "sep5":
            bind["LANE"] = np.int32 if t is np.float32 else t
            bind["INPLACE"] = t is np.float32
        if kind.startswith("boxflat"):  # "boxflat33": the window compiled in too
            bind["KH"], bind["KW"] = int(kind[7]), int(kind[8])
        body = {"k3": _k3, "k3sep": _k3sep, "sep5": _sep5, "box": _box16}.get(kind, _boxflat)
        tag = kind[7:] if body is _boxflat else ""
        f = _compile(body, parallel, f"{tag}_{narrow}_c{c0}_{c1}_{c2}{suffix}", **bind)
        _VARIANTS[key] = f
    return f


sep5 = {(t.__name__, par): _compile(_sep5, par, "_" + t.__name__, NARROW=t, INPLACE=t is np.float32,
                                    LANE=np.int32 if t is np.float32 else t)
        for t in (np.int16, np.uint16, np.float32) for par in (True, False)}
k3 = {(t.__name__, par): _compile(_k3, par, "_" + t.__name__, NARROW=t)
      for t in (np.int16, np.float32) for par in (True, False)}
k3sep = {(t.__name__, par): _compile(_k3sep, par, "_" + t.__name__, NARROW=t)
         for t in (np.int16, np.float32) for par in (True, False)}
box16 = {par: _compile(_box16, par) for par in (True, False)}  # runtime division (POST_BOX_DIV)
sep7 = {(n, par): _compile(_sep7, par, "_" + n, NARROW=getattr(np, n), INPLACE=n == "float32",
                           LANE=np.int32 if n == "uint16" else np.float32)
        for n in ("uint16", "float32") for par in (True, False)}
k3flat = {par: _compile(_k3flat, par) for par in (True, False)}  # taps at run time
k3sepflat = {par: _compile(_k3sepflat, par) for par in (True, False)}


def k3flat_const(w, parallel):
    """_k3flat with the nine float32 taps of w compiled in (named filters: a small fixed set)."""
    taps = tuple(float(np.float32(v)) for v in np.asarray(w, np.float32).ravel())
    key = ("k3flat", taps, parallel)
    f = _VARIANTS.get(key)
    if f is None:
        import hashlib
        tag = hashlib.sha1(repr(taps).encode()).hexdigest()[:12]
        names = ("T00", "T01", "T02", "T10", "T11", "T12", "T20", "T21", "T22")
        f = _compile(_k3flat, parallel, "_c" + tag, TCONST=True, **dict(zip(names, taps)))
        _VARIANTS[key] = f
    return f
