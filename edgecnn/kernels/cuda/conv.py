"""CUDA twins of edgecnn.kernels.conv: implicit-GEMM convolutions, one thread per output element.

No im2col buffer is written: each TILE x TILE block (``_launch.TILE``) computes a tile of a GEMM whose
operands are gathered on the fly into two shared-memory tiles per step of the reduced axis (the
weights viewed as (C_out, C_in/g * kH * kW) are already a GEMM operand in OIHW). Grid z is the group.
Every thread sums its output over the reduced axis in index order: no atomics, deterministic.

* forward   rows co (in group), cols (n, oh, ow),  reduce (ci, kh, kw)
* gx        rows ci (in group), cols (n, ih, iw),  reduce (co, kh, kw); the gathered gy entry is
            gy[n, co, (ih + ph - kh*dh) / sh, ...] where that divides exactly and lands inside gy
* gw        rows co (in group), cols (ci, kh, kw), reduce (n, oh, ow); the reduced axis is long
            (N*OH*OW) and the output small (a first layer has 32 x 9 weights: 2 blocks), so it is
            split into slices (``_launch.split_k``) that write partial sums, then summed over the
            slices in order (``sum_slices_cuda``): more blocks, still deterministic
* gb        one block of REDUCE threads per channel, fixed-order tree reduction
``flip`` (true convolution) reads/writes the weight at (kH-1-kh, kW-1-kw). conv1d runs as conv2d on
(N, C, 1, L).
"""
import numpy as np
from numba import cuda

from ..._jit import cuda_jit
from . import _device, _launch
from ._reduce import block_sum

_F0 = np.float32(0.0)
_R = _launch.MAX_REDUCE  # a global int: a compile-time constant for the shared array size
_T = _launch.MAX_TILE
_T1 = _T + 1  # padded row: column reads hit distinct banks (globals are compile-time constants)


@cuda_jit(device=True)
def _widx(kk, KH, KW, flip):
    """Column of the (C_out, C_in/g*kH*kW) weight matrix holding tap kk, spatially flipped if asked."""
    if not flip:
        return kk
    KK = KH * KW
    ci = kk // KK
    rem = kk % KK
    return ci * KK + (KH - 1 - rem // KW) * KW + (KW - 1 - rem % KW)


@cuda_jit
def conv2d_fwd_cuda(x, w2, b, has_bias, KH, KW, sh, sw, ph, pw, dh, dw, groups, flip, y):
    As = cuda.shared.array((_T, _T1), np.float32)   # As[r, k] = w2[g*M + row0 + r, k0 + k]
    Bs = cuda.shared.array((_T, _T1), np.float32)   # Bs[k, c] = im2col[k0 + k, col0 + c]
    N, C, H, W = x.shape
    OH, OW = y.shape[2], y.shape[3]
    K = w2.shape[1]
    M = w2.shape[0] // groups
    Cg = C // groups
    KK = KH * KW
    t = cuda.blockDim.x
    tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
    g = cuda.blockIdx.z
    row0, col0 = cuda.blockIdx.y * t, cuda.blockIdx.x * t
    col = col0 + tx
    ncols = N * OH * OW
    n = col // (OH * OW)
    oh = (col // OW) % OH
    ow = col % OW
    acc = _F0
    for k0 in range(0, K, t):
        r, kk = row0 + ty, k0 + tx
        As[ty, tx] = w2[g * M + r, _widx(kk, KH, KW, flip)] if r < M and kk < K else _F0
        kb = k0 + ty
        v = _F0
        if kb < K and col < ncols:
            ci = kb // KK
            rem = kb % KK
            ih = oh * sh - ph + (rem // KW) * dh
            iw = ow * sw - pw + (rem % KW) * dw
            if ih >= 0 and ih < H and iw >= 0 and iw < W:
                v = x[n, g * Cg + ci, ih, iw]
        Bs[ty, tx] = v
        cuda.syncthreads()
        for k in range(K - k0 if K - k0 < t else t):
            acc += As[ty, k] * Bs[k, tx]
        cuda.syncthreads()
    r = row0 + ty
    if r < M and col < ncols:
        co = g * M + r
        y[n, co, oh, ow] = acc + b[co] if has_bias else acc


@cuda_jit
def conv2d_bwd_input_cuda(gy, w2, KH, KW, sh, sw, ph, pw, dh, dw, groups, flip, gx):
    As = cuda.shared.array((_T, _T1), np.float32)   # As[r, k] = w[g*Mg + co, r, kh, kw], k = (co, kh, kw)
    Bs = cuda.shared.array((_T, _T1), np.float32)   # Bs[k, c] = gy[n, g*Mg + co, oh, ow] or 0
    N, C, H, W = gx.shape
    OH, OW = gy.shape[2], gy.shape[3]
    Mg = gy.shape[1] // groups
    Cg = C // groups
    KK = KH * KW
    K = Mg * KK
    t = cuda.blockDim.x
    tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
    g = cuda.blockIdx.z
    row0, col0 = cuda.blockIdx.y * t, cuda.blockIdx.x * t
    col = col0 + tx
    ncols = N * H * W
    n = col // (H * W)
    ih = (col // W) % H
    iw = col % W
    acc = _F0
    for k0 in range(0, K, t):
        r, ka = row0 + ty, k0 + tx
        a = _F0
        if r < Cg and ka < K:
            co = ka // KK
            a = w2[g * Mg + co, _widx(r * KK + ka % KK, KH, KW, flip)]
        As[ty, tx] = a
        kb = k0 + ty
        v = _F0
        if kb < K and col < ncols:
            co = kb // KK
            rem = kb % KK
            th = ih + ph - (rem // KW) * dh
            tw = iw + pw - (rem % KW) * dw
            if th >= 0 and tw >= 0 and th % sh == 0 and tw % sw == 0:
                oh = th // sh
                ow = tw // sw
                if oh < OH and ow < OW:
                    v = gy[n, g * Mg + co, oh, ow]
        Bs[ty, tx] = v
        cuda.syncthreads()
        for k in range(K - k0 if K - k0 < t else t):
            acc += As[ty, k] * Bs[k, tx]
        cuda.syncthreads()
    r = row0 + ty
    if r < Cg and col < ncols:
        gx[n, g * Cg + r, ih, iw] = acc


@cuda_jit
def conv2d_bwd_weight_cuda(gy, x, KH, KW, sh, sw, ph, pw, dh, dw, groups, flip, chunk, part):
    """Split-K: grid z = slice * groups + group; slice s sums (n, oh, ow) in [s*chunk, (s+1)*chunk)
    into part[s] (C_out, C_in/g*kH*kW); one slice writes the weight gradient itself."""
    As = cuda.shared.array((_T, _T1), np.float32)   # As[r, k] = gy[n, g*Mg + row0 + r, p], k = (n, p)
    Bs = cuda.shared.array((_T, _T1), np.float32)   # Bs[k, c] = im2col[col0 + c, (n, p)]
    N, C, H, W = x.shape
    OW = gy.shape[3]
    P = gy.shape[2] * OW
    Mg = gy.shape[1] // groups
    Cg = C // groups
    KK = KH * KW
    K = Cg * KK
    R = N * P
    t = cuda.blockDim.x
    tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
    g = cuda.blockIdx.z % groups
    sl = cuda.blockIdx.z // groups
    r_lo = sl * chunk
    r_hi = r_lo + chunk if r_lo + chunk < R else R
    row0, col0 = cuda.blockIdx.y * t, cuda.blockIdx.x * t
    col = col0 + tx
    ci = col // KK
    rem = col % KK
    kh = rem // KW
    kw = rem % KW
    acc = _F0
    for k0 in range(r_lo, r_hi, t):
        r, ra = row0 + ty, k0 + tx
        As[ty, tx] = gy[ra // P, g * Mg + r, (ra % P) // OW, ra % OW] if r < Mg and ra < r_hi else _F0
        rb = k0 + ty
        v = _F0
        if rb < r_hi and col < K:
            n = rb // P
            p = rb % P
            ih = (p // OW) * sh - ph + kh * dh
            iw = (p % OW) * sw - pw + kw * dw
            if ih >= 0 and ih < H and iw >= 0 and iw < W:
                v = x[n, g * Cg + ci, ih, iw]
        Bs[ty, tx] = v
        cuda.syncthreads()
        for k in range(r_hi - k0 if r_hi - k0 < t else t):
            acc += As[ty, k] * Bs[k, tx]
        cuda.syncthreads()
    r = row0 + ty
    if r < Mg and col < K:
        part[sl, g * Mg + r, _widx(col, KH, KW, flip)] = acc


@cuda_jit
def sum_slices_cuda(part, out):
    """out[i, j] = sum over s of part[s, i, j], s in order: the fixed-order second pass of split-K."""
    S, A, B = part.shape
    i = cuda.grid(1)
    if i < A * B:
        acc = _F0
        for s in range(S):
            acc += part[s, i // B, i % B]
        out[i // B, i % B] = acc


@cuda_jit
def conv2d_bwd_bias_cuda(gy, gb):
    """gb[co] = sum over (n, oh, ow) of gy[n, co, oh, ow]: one block per channel."""
    buf = cuda.shared.array(_R, np.float32)
    co = cuda.blockIdx.x
    N, _, OH, OW = gy.shape
    P = OH * OW
    acc = _F0
    j = cuda.threadIdx.x
    while j < N * P:
        acc += gy[j // P, co, (j % P) // OW, j % OW]
        j += cuda.blockDim.x
    total = block_sum(buf, acc)
    if cuda.threadIdx.x == 0:
        gb[co] = total


# ------------------------------------------------------------------------------------------ entry points
def _out_size(i, k, s, lo, hi, d):
    return (i + lo + hi - d * (k - 1) - 1) // s + 1


def conv2d_forward(x, w, b, stride_hw, pads, dilation_hw, groups, flip, out=None):
    """Settings resolved by the CPU host entry point: stride_hw (sh, sw), pads ((top, bottom),
    (left, right)), dilation_hw (dh, dw)."""
    x, w, b = _device.as_device(x), _device.as_device(w), _device.as_device(b)
    n, c, h, wd = x.shape
    co, cg, kh, kw = w.shape
    (sh, sw), ((pt, pb), (pl, pr)), (dh, dw) = stride_hw, pads, dilation_hw
    oh = _out_size(h, kh, sh, pt, pb, dh)
    ow = _out_size(wd, kw, sw, pl, pr, dw)
    out = _device.out_or_empty(out, (n, co, oh, ow))
    grid, block = _launch.grid_tiles(co // groups, n * oh * ow, groups)
    conv2d_fwd_cuda[grid, block](x, w.reshape(co, cg * kh * kw), _device.dummy() if b is None else b,
                                 b is not None, kh, kw, sh, sw, pt, pl, dh, dw, groups, bool(flip), out)
    return out


def conv2d_backward(gy, x, w, stride_hw, pads, dilation_hw, groups, flip, need_input_grad=True,
                    need_bias_grad=True, gx=None, gw=None, gb=None):
    gy, x, w = _device.as_device(gy), _device.as_device(x), _device.as_device(w)
    n, c, h, wd = x.shape
    co, cg, kh, kw = w.shape
    (sh, sw), ((pt, _), (pl, _)), (dh, dw) = stride_hw, pads, dilation_hw
    w2 = w.reshape(co, cg * kh * kw)
    if need_input_grad:
        gx = _device.out_or_empty(gx, x.shape)
        grid, block = _launch.grid_tiles(c // groups, n * h * wd, groups)
        conv2d_bwd_input_cuda[grid, block](gy, w2, kh, kw, sh, sw, pt, pl, dh, dw, groups, bool(flip), gx)
    else:
        gx = None
    gw = _device.out_or_empty(gw, w.shape)
    kdim = cg * kh * kw
    grid, block = _launch.grid_tiles(co // groups, kdim, groups)
    slices, chunk = _launch.split_k(grid[0] * grid[1] * groups, n * gy.shape[2] * gy.shape[3])
    gw2 = gw.reshape(co, kdim)
    part = gw.reshape(1, co, kdim) if slices == 1 else _device.scratch("split-K partials", (slices, co, kdim))
    conv2d_bwd_weight_cuda[(grid[0], grid[1], groups * slices), block](
        gy, x, kh, kw, sh, sw, pt, pl, dh, dw, groups, bool(flip), chunk, part)
    if slices > 1:
        sum_slices_cuda[_launch.grid1d(co * kdim)](part, gw2)
    if need_bias_grad:
        gb = _device.out_or_empty(gb, (co,))
        conv2d_bwd_bias_cuda[_launch.grid_reduce(co)](gy, gb)
    else:
        gb = None
    return gx, gw, gb


def _as1(v):
    return v[0] if isinstance(v, (tuple, list)) else v


def _pads1(pads):
    p = pads[0] if isinstance(pads[0], (tuple, list)) else pads
    return ((0, 0), (int(p[0]), int(p[1])))


def conv1d_forward(x, w, b, stride, pads, dilation, groups, flip, out=None):
    """(N, C, L) with w (C_out, C_in/g, k) as conv2d on (N, C, 1, L); stride/dilation an int or (s,),
    pads ((lo, hi),) or (lo, hi)."""
    x, w = _device.as_device(x), _device.as_device(w)
    n, c, length = x.shape
    co, cg, k = w.shape
    out4 = None if out is None else _device.as_device(out).reshape(n, co, 1, out.shape[2])
    y = conv2d_forward(x.reshape(n, c, 1, length), w.reshape(co, cg, 1, k), b, (1, _as1(stride)),
                       _pads1(pads), (1, _as1(dilation)), groups, flip, out4)
    return y.reshape(n, co, y.shape[3])


def conv1d_backward(gy, x, w, stride, pads, dilation, groups, flip, need_input_grad=True,
                    need_bias_grad=True, gx=None, gw=None, gb=None):
    gy, x, w = _device.as_device(gy), _device.as_device(x), _device.as_device(w)
    n, c, length = x.shape
    co, cg, k = w.shape
    gx4 = None if gx is None else _device.as_device(gx).reshape(n, c, 1, length)
    gw4 = None if gw is None else _device.as_device(gw).reshape(co, cg, 1, k)
    gx4, gw4, gb = conv2d_backward(gy.reshape(n, co, 1, gy.shape[2]), x.reshape(n, c, 1, length),
                                   w.reshape(co, cg, 1, k), (1, _as1(stride)), _pads1(pads),
                                   (1, _as1(dilation)), groups, flip, need_input_grad, need_bias_grad,
                                   gx4, gw4, gb)
    return (None if gx4 is None else gx4.reshape(n, c, length)), gw4.reshape(co, cg, k), gb


# The adapters edgecnn.kernels.conv calls with its resolved settings object ``s`` (.stride, .pads,
# .dilation, .groups, all 2-D; conv1d arrays are 3-D and run with a height of 1).
def _4d(a):
    return None if a is None else (a if a.ndim == 4 else a.reshape(a.shape[0], a.shape[1], 1, a.shape[2]))


def conv2d_forward_device(x, w, b, s, flip, out):
    x, w, b, out = (_device.as_device(a) for a in (x, w, b, out))
    conv2d_forward(_4d(x), _4d(w), b, s.stride, s.pads, s.dilation, s.groups, flip, _4d(out))
    return out


def conv2d_backward_device(gy, x, w, s, flip, gx, gw, gb):
    gy, x, w, gx, gw, gb = (_device.as_device(a) for a in (gy, x, w, gx, gw, gb))
    conv2d_backward(_4d(gy), _4d(x), _4d(w), s.stride, s.pads, s.dilation, s.groups, flip, gx is not None,
                    gb is not None, _4d(gx), _4d(gw), gb)
    return gx, gw, gb


def ptx_cases():
    x = np.zeros((1, 2, 5, 5), np.float32)
    w2 = np.zeros((2, 18), np.float32)
    b = np.zeros(2, np.float32)
    s = (3, 3, 1, 1, 1, 1, 1, 1, 1, False)
    return [(conv2d_fwd_cuda, (x, w2, b, True, *s, x)), (conv2d_bwd_input_cuda, (x, w2, *s, x)),
            (conv2d_bwd_weight_cuda, (x, x, *s, 16, x[:1])), (conv2d_bwd_bias_cuda, (x, b)),
            (sum_slices_cuda, (x[0], w2))]
