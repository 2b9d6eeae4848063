"""Winograd F(2x2, 3x3) conv2d for 3x3, stride-1, undilated, ungrouped layers: forward, input
gradient and weight gradient.

Why: these layers (keras-mnist's 32->64 conv, all three convs of the default model) spend most of a
training step in im2col GEMMs that OpenBLAS already runs near its roofline, so the only way to be
much faster is fewer multiplications. F(2x2, 3x3) computes each 2x2 output tile from a 4x4 input
tile with 16 products instead of 36 (Lavin & Gray, 2016): in the transformed domain a conv becomes
16 independent GEMMs (one per tile element xi), 2.25x fewer flops than im2col. Transforms use only
adds and halvings, so float32 round-off stays within a few ulps of the direct sum.

    forward          Ut = (G w G^T)^T                  (16, C, K)   once per call
                     Vt = B^T d B   per input tile     (16, T, C)   T = tiles of a chunk of samples
                     Mt = Vt @ Ut                      (16, T, K)   16 sgemms
                     y  = A^T M A   per output tile (+ bias)
    input gradient   the forward on gy, with w rotated 180 deg and transposed, padding 2 - p
    weight gradient  S = sum over tiles (A gy A^T) (x) (B^T d B) = Gyt^T @ Vt   (16, K, C)
                     gw = G^T S G

Inside the transformed domain everything is channels-last (tile, channel): the transforms are then
long unit-stride loops over channels that LLVM vectorizes, and both GEMMs are plain or
transposed-A products at ~100 GFLOPS (the weight gradient ran at ~56 with channels-first tiles).
Each vectorized loop writes one stream and reads at most three: Numba cannot mark arrays
noalias, and LLVM gives up on loops that would need more runtime overlap checks than that.
Tiles cover the output in 2x2 blocks, TH x TW per sample, numbered row-major with no padding tiles
(an earlier layout added a junk tile column per row, 20 % of the 7x7 layer's GEMM work); an odd output
height or width gets a last tile half outside, whose extra outputs are never written (forward) or
read as zeros (weight gradient). Like _conv_gemm, kernels work on a slice [lo, hi) of the batch,
a chunk of samples at a time.
"""
import functools

import numpy as np
from numba import uint64

from edgecnn._blas import numpy_sgemm
from edgecnn._cblas import sgemm
from edgecnn._jit import njit
from ._conv_gemm import scratch

# Scratch per chunk and thread (transformed x, gy and their products): more than L2, because the
# Python glue between the compiled stages of a chunk holds the GIL, and small planes with small
# chunks spent their time there. Measured at batch 128, forward + backward, 1 / 2 threads (ms):
# 24->48 14x14 26.1/17.7 at 1 MiB, 19.1/12.7 at 4 MiB, 26.7/19.5 at 8 MiB; 48->96 7x7 20.7/17.1,
# 21.2/14.8, 24.1/17.2; 32->64 26x26 (one sample per chunk either way) 87.3/46.8, 83.4/45.1.
CHUNK_BYTES = 1 << 22
# With the GEMMs called from compiled code (see the drivers) a chunk costs no Python, and one that
# fits in L2 with room to spare is faster.
CHUNK_BYTES_COMPILED = 1 << 19
USE_CBLAS = True  # False: always the np.matmul drivers (tests run both)
_H = np.float32(0.5)
_Z = np.float32(0)
_ONE = np.float32(1)


def eligible(w_shape, stride, pads, dilation, groups):
    """True when this conv can run as F(2x2, 3x3): 3x3, stride 1, no dilation, one group, and
    every padding <= 2 (the input gradient is then a forward with padding 2 - p >= 0)."""
    (pt, pb), (pl, pr) = pads
    return (w_shape[2] == 3 and w_shape[3] == 3 and tuple(stride) == (1, 1)
            and tuple(dilation) == (1, 1) and groups == 1 and max(pt, pb, pl, pr) <= 2)


def tiles(Ho, Wo):
    return (Ho + 1) // 2, (Wo + 1) // 2


@functools.lru_cache(maxsize=256)
def padded_rows(rows, cols):
    """rows or a little more, so that 16 planes of (rows, cols) floats start at 16 different
    64-byte slots modulo 4 KiB. Transforms stream all 16 planes at once; with plane strides a
    multiple of 4 KiB (the 26x26 layer's 144 x 64 floats is 9 x 4 KiB) every stream lands in the
    same L1 sets (measured 3x slower)."""
    for r in range(rows, rows + 64):
        if len({(i * r * cols * 4) % 4096 // 64 for i in range(16)}) == 16:
            return r
    return rows


def planes(name, rows, cols):
    """(gemm view, kernel array): 16 float32 planes of (rows, cols), as a (16, rows, cols) view for
    the GEMMs and the C-contiguous (16, padded_rows, cols) array behind it for the Numba kernels."""
    full = scratch(name, (16, padded_rows(rows, cols), cols))
    return full[:, :rows], full



@njit
def weight_transform(w, U):
    """U[:, k, c] = G w[k, c] G^T, G = [[1, 0, 0], [.5, .5, .5], [.5, -.5, .5], [0, 0, 1]]."""
    K, C = w.shape[0], w.shape[1]
    t = np.empty((4, 3), np.float32)
    for k in range(K):
        for c in range(C):
            g = w[k, c]
            for j in range(3):
                t[0, j] = g[0, j]
                t[1, j] = _H * (g[0, j] + g[1, j] + g[2, j])
                t[2, j] = _H * (g[0, j] - g[1, j] + g[2, j])
                t[3, j] = g[2, j]
            for i in range(4):
                U[4 * i + 0, k, c] = t[i, 0]
                U[4 * i + 1, k, c] = _H * (t[i, 0] + t[i, 1] + t[i, 2])
                U[4 * i + 2, k, c] = _H * (t[i, 0] - t[i, 1] + t[i, 2])
                U[4 * i + 3, k, c] = t[i, 2]


# Loops that must vectorize index their innermost dimension with the bare loop variable, or with
# an unsigned offset: Numba adds a negative-index wraparound select to any signed index expression
# (``off + e``), which stopped LLVM from vectorizing (measured 6x slower). Nothing is sliced inside
# hot loops either: every Numba slice bumps a reference count atomically.

@njit
def input_transform(x, n0, nb, pt, pl, TH, TW, Q, z, V):
    """V[:, c, t] = B^T d B for every 4x4 tile d of the zero-padded planes of samples n0..,
    B^T = [[1,0,-1,0],[0,1,1,0],[0,-1,1,0],[0,1,0,-1]].

    Q holds 8 polyphase planes of the zero-padded plane P, each (TH + 1) rows of TW:
    Q[4 s + 2 a' + b'][i TW + j] = P[2 i + a', 2 (j + s) + b']. Tile element d[a, b] of tile
    t = ty TW + tx is then Q[4 (b // 2) + 2 (a % 2) + b % 2][t + (a // 2) TW], one contiguous slice,
    and each of the 32 steps below is one flat, vectorized loop over the tiles of a plane."""
    C, H, W = x.shape[1], x.shape[2], x.shape[3]
    Tp = TH * TW
    Tq = (TH + 1) * TW
    Qf = Q.reshape(Q.shape[0] * Q.shape[1])
    for nl in range(nb):
        n = n0 + nl
        t0 = uint64(nl * Tp)
        for c in range(C):
            for e in range(uint64(8 * Tq)):  # the padding, then x over it, row by row
                Qf[e] = _Z
            for ih in range(H):
                i = (ih + pt) // 2
                if i > TH:
                    break
                row = i * TW
                pa = 2 * ((ih + pt) % 2)
                for iw in range(W):  # P column 2 m + b' goes to plane pa + b' at m (if m < TW)
                    col = iw + pl     # and to plane 4 + pa + b' at m - 1 (if m >= 1)
                    m = col >> 1
                    p = pa + (col & 1)
                    v = x[n, c, ih, iw]
                    if m < TW:
                        Q[p, row + m] = v
                    if m >= 1:
                        Q[4 + p, row + m - 1] = v
            for b in range(4):  # B^T over rows: z[4 i + b] from d[0..3, b]
                q = 4 * (b // 2) + b % 2  # plane of d[0, b]; d[1, b] is q + 2; d[2..3, b] one row on
                r1 = uint64(TW)
                for e in range(uint64(Tp)):
                    z[b, e] = Q[q, e] - Q[q, e + r1]              # d0b - d2b
                for e in range(uint64(Tp)):
                    z[4 + b, e] = Q[q + 2, e] + Q[q, e + r1]      # d1b + d2b
                for e in range(uint64(Tp)):
                    z[8 + b, e] = Q[q, e + r1] - Q[q + 2, e]      # d2b - d1b
                for e in range(uint64(Tp)):
                    z[12 + b, e] = Q[q + 2, e] - Q[q + 2, e + r1]  # d1b - d3b
            for i in range(4):  # then B over columns
                r = 4 * i
                for e in range(uint64(Tp)):
                    V[r, c, t0 + e] = z[r, e] - z[r + 2, e]
                for e in range(uint64(Tp)):
                    V[r + 1, c, t0 + e] = z[r + 1, e] + z[r + 2, e]
                for e in range(uint64(Tp)):
                    V[r + 2, c, t0 + e] = z[r + 2, e] - z[r + 1, e]
                for e in range(uint64(Tp)):
                    V[r + 3, c, t0 + e] = z[r + 1, e] - z[r + 3, e]


@njit
def output_transform(M, Tn, b, has_bias, n0, TH, TW, tmp, y):
    """y[n0 + n, k] = A^T M A per tile (+ b[k]), A^T = [[1, 1, 1, 0], [0, 1, -1, -1]], on the tile
    grid of input_transform: rows A_j = M_j + M_4+j + M_8+j and C_j = M_4+j - M_8+j - M_12+j, then
    the four outputs of a tile A0+A1+A2, A1-A2-A3, C0+C1+C2, C1-C2-C3, as flat loops over whole
    planes (tmp (12, K * M.shape[2])); then interleaved into y, dropping outputs past the last row or
    column."""
    K, Ho, Wo = y.shape[1], y.shape[2], y.shape[3]
    Tp = TH * TW
    nb = Tn // Tp
    width = M.shape[2]  # Tn or more: the row stride of M's planes
    n = K * width
    M2 = M.reshape(16, M.shape[1] * width)
    for j in range(4):
        for e in range(n):
            tmp[j, e] = M2[j, e] + M2[4 + j, e] + M2[8 + j, e]
        for e in range(n):
            tmp[4 + j, e] = M2[4 + j, e] - M2[8 + j, e] - M2[12 + j, e]
    for e in range(n):
        tmp[8, e] = tmp[0, e] + tmp[1, e] + tmp[2, e]
    for e in range(n):
        tmp[9, e] = tmp[1, e] - tmp[2, e] - tmp[3, e]
    for e in range(n):
        tmp[10, e] = tmp[4, e] + tmp[5, e] + tmp[6, e]
    for e in range(n):
        tmp[11, e] = tmp[5, e] - tmp[6, e] - tmp[7, e]
    one = uint64(1)
    for nl in range(nb):
        for k in range(K):
            bv = _Z
            if has_bias:
                bv = b[k]
            for ty in range(TH):
                base = uint64(k * width + nl * Tp + ty * TW)
                for a in range(2):
                    oh = 2 * ty + a
                    if oh < Ho:
                        for tx in range(uint64(Wo // 2)):
                            y[n0 + nl, k, oh, tx + tx] = tmp[8 + 2 * a, base + tx] + bv
                            y[n0 + nl, k, oh, tx + tx + one] = tmp[9 + 2 * a, base + tx] + bv
                        if Wo % 2:
                            y[n0 + nl, k, oh, Wo - 1] = tmp[8 + 2 * a, base + uint64(Wo // 2)] + bv


@njit
def grad_transform(gy, n0, T, TH, TW, tmp, Gyt):
    """Gyt[:, t, k] = A g A^T for every 2x2 tile g of gy (zeros past the output), on the tile grid
    of input_transform,
    A = [[1, 0], [1, 1], [1, -1], [0, -1]], over whole planes: the tile elements g00, g01, g10,
    g11 are gathered channels-last into tmp[0:4] (tmp (8, Tp, K)), the row sums into tmp[4:8]."""
    K, Ho, Wo = gy.shape[1], gy.shape[2], gy.shape[3]
    Tp = TH * TW
    for t in range(T):  # the odd last row or column of tiles lies half past the output: zeros
        nl = n0 + t // Tp
        ty = (t % Tp) // TW
        tx = t % TW
        for a in range(2):
            oh = 2 * ty + a
            for bb in range(2):
                ow = 2 * tx + bb
                row = 2 * a + bb
                if oh < Ho and ow < Wo:
                    for k in range(K):
                        tmp[row, t, k] = gy[nl, k, oh, ow]
                else:
                    for k in range(K):
                        tmp[row, t, k] = _Z
    n = T * K
    t2 = tmp.reshape(8, tmp.shape[1] * K)
    G2 = Gyt.reshape(16, Gyt.shape[1] * K)
    # rows of A g: (g0, g0 + g1, g0 - g1, -g1), each a pair (column 0, column 1);
    # t2 rows 0-3 = g00, g01, g10, g11; 4-7 = r1a, r1b, r2a, r2b
    for e in range(n):
        t2[4, e] = t2[0, e] + t2[2, e]
    for e in range(n):
        t2[5, e] = t2[1, e] + t2[3, e]
    for e in range(n):
        t2[6, e] = t2[0, e] - t2[2, e]
    for e in range(n):
        t2[7, e] = t2[1, e] - t2[3, e]
    for j in range(3):  # Gy rows 4j..4j+3 from the pair (a, b) = t2 rows (0,1), (4,5), (6,7)
        ra = 0 if j == 0 else 2 + 2 * j
        for e in range(n):
            G2[4 * j, e] = t2[ra, e]
        for e in range(n):
            G2[4 * j + 1, e] = t2[ra, e] + t2[ra + 1, e]
        for e in range(n):
            G2[4 * j + 2, e] = t2[ra, e] - t2[ra + 1, e]
        for e in range(n):
            G2[4 * j + 3, e] = -t2[ra + 1, e]
    for e in range(n):  # row 3 of A g is (-g10, -g11)
        G2[12, e] = -t2[2, e]
    for e in range(n):
        G2[13, e] = -t2[2, e] - t2[3, e]
    for e in range(n):
        G2[14, e] = t2[3, e] - t2[2, e]
    for e in range(n):
        G2[15, e] = t2[3, e]


@njit
def input_adjoint(GV, T, n0, pt, pl, TH, TW, R, gP, gx):
    """gx[n0 + n] = input_transform's adjoint applied to GV (16, Tp, C), the input gradient in the
    transformed domain: per tile gd = B GV B^T (B = (B^T)^T = [[1,0,0,0],[0,1,-1,1],[-1,1,1,0],
    [0,0,0,-1]]), added into the 4x4 window the tile read; tiles overlap by two rows and columns.
    Rows R = B GV go to R (16, Tp * C), gd overwrites GV; both as flat loops over whole planes.
    The window sums run channels-last in gP (Hp, Wp, C), then are cropped into NCHW gx."""
    C, H, W = gx.shape[1], gx.shape[2], gx.shape[3]
    Tp = TH * TW
    nb = T // Tp
    n = T * C
    G2 = GV.reshape(16, GV.shape[1] * C)
    for j in range(4):  # R[4a + j] = sum_i B[a, i] GV[4i + j]
        for e in range(n):
            R[j, e] = G2[j, e]
        for e in range(n):
            R[4 + j, e] = G2[4 + j, e] - G2[8 + j, e] + G2[12 + j, e]
        for e in range(n):
            R[8 + j, e] = G2[4 + j, e] + G2[8 + j, e] - G2[j, e]
        for e in range(n):
            R[12 + j, e] = -G2[12 + j, e]
    for a in range(4):  # gd[4a + b] = sum_j B[b, j] R[4a + j]
        r = 4 * a
        for e in range(n):
            G2[r, e] = R[r, e]
        for e in range(n):
            G2[r + 1, e] = R[r + 1, e] - R[r + 2, e] + R[r + 3, e]
        for e in range(n):
            G2[r + 2, e] = R[r + 1, e] + R[r + 2, e] - R[r, e]
        for e in range(n):
            G2[r + 3, e] = -R[r + 3, e]
    Hp, Wp = gP.shape[0], gP.shape[1]
    gP2 = gP.reshape(Hp, Wp * C)
    for nl in range(nb):
        for r in range(Hp):
            for e in range(Wp * C):
                gP2[r, e] = _Z
        for ty in range(TH):
            for tx in range(TW):
                base = uint64((nl * Tp + ty * TW + tx) * C)
                for a in range(4):
                    for b in range(4):
                        q = uint64((2 * tx + b) * C)
                        row = 4 * a + b
                        for c in range(uint64(C)):
                            gP2[2 * ty + a, q + c] += G2[row, base + c]
        for c in range(C):
            for ih in range(H):
                for iw in range(W):
                    gx[n0 + nl, c, ih, iw] = gP[ih + pt, iw + pl, c]


@njit
def weight_grad_transform(St, gw):
    """gw[k, c] = G^T St[:, c, k] G (St viewed 4x4 per (c, k))."""
    K, C = gw.shape[0], gw.shape[1]
    t = np.empty((3, 4), np.float32)
    for k in range(K):
        for c in range(C):
            for j in range(4):
                s0 = St[j, c, k]
                s1 = St[4 + j, c, k]
                s2 = St[8 + j, c, k]
                s3 = St[12 + j, c, k]
                t[0, j] = s0 + _H * (s1 + s2)
                t[1, j] = _H * (s1 - s2)
                t[2, j] = _H * (s1 + s2) + s3
            for i in range(3):
                gw[k, c, i, 0] = t[i, 0] + _H * (t[i, 1] + t[i, 2])
                gw[k, c, i, 1] = _H * (t[i, 1] - t[i, 2])
                gw[k, c, i, 2] = _H * (t[i, 1] + t[i, 2]) + t[i, 3]


# --- drivers: one batch slice [lo, hi), single-threaded (see _conv_threads) ---------------------
# With NumPy's OpenBLAS found (edgecnn._blas.numpy_sgemm) a slice runs as one compiled call that
# calls sgemm itself, a chunk of samples small enough for L2 at a time; otherwise the stages run
# from Python with np.matmul between them, in chunks large enough to pay for that.

def _input_scratch(TH, TW):
    return scratch("wQ", (8, (TH + 1) * TW)), scratch("wz", (16, TH * TW))


def _chunk(n, floats_per_sample, budget):
    return int(max(1, min(n, budget // max(4 * floats_per_sample, 1))))


@njit
def _forward_chunks(x, U, b, has_bias, pt, pl, lo, hi, nb, TH, TW, Q, z, V, M, tmp, y, fn, bits):
    C, K = x.shape[1], y.shape[1]
    Tp = TH * TW
    width = V.shape[2]  # nb * Tp: the row stride of V's and M's planes
    for n0 in range(lo, hi, nb):
        m = min(nb, hi - n0)
        input_transform(x, n0, m, pt, pl, TH, TW, Q, z, V)
        for xi in range(16):  # M[xi] (K, T) = U[xi] (K, C) @ V[xi] (C, T)
            sgemm(fn, bits, False, False, K, m * Tp, C, U, xi * K * C, C,
                  V, xi * V.shape[1] * width, width, _Z, M, xi * M.shape[1] * width, width)
        output_transform(M, m * Tp, b, has_bias, n0, TH, TW, tmp, y)


@njit
def _backward_chunks(gy, x, U, pt, pl, lo, hi, nb, TH, TW, Q, z, V, Gy, tmp, GV, R, gP,
                     want_gx, gx, want_st, St, fn, bits):
    C, K = St.shape[1] if want_st else U.shape[2], gy.shape[1]
    Tp = TH * TW
    width = V.shape[2]
    for n0 in range(lo, hi, nb):
        T = min(nb, hi - n0) * Tp
        grad_transform(gy, n0, T, TH, TW, tmp, Gy)
        if want_st:  # St[xi] (C, K) (+)= V[xi] (C, T) @ Gy[xi] (T, K)
            input_transform(x, n0, T // Tp, pt, pl, TH, TW, Q, z, V)
            beta = _Z if n0 == lo else _ONE
            for xi in range(16):
                sgemm(fn, bits, False, False, C, K, T, V, xi * V.shape[1] * width, width,
                      Gy, xi * Gy.shape[1] * K, K, beta, St, xi * C * K, K)
        if want_gx:  # GV[xi] (T, C) = Gy[xi] (T, K) @ U[xi] (K, C)
            for xi in range(16):
                sgemm(fn, bits, False, False, T, C, K, Gy, xi * Gy.shape[1] * K, K,
                      U, xi * K * C, C, _Z, GV, xi * GV.shape[1] * C, C)
            input_adjoint(GV, T, n0, pt, pl, TH, TW, R, gP, gx)


_NONE4 = np.zeros((1, 1, 1, 1), np.float32)  # stands for an output not wanted
_NONE3 = np.zeros((1, 1, 1), np.float32)


def forward(x, U, b, has_bias, pt, pl, lo, hi, y):
    """y[lo:hi] = conv3x3(x[lo:hi]) + b, with U = weight_transform(w) (16, K, C)."""
    C, K = x.shape[1], y.shape[1]
    TH, TW = tiles(y.shape[2], y.shape[3])
    Tp = TH * TW
    floats = (16 * (C + K) + 12 * K) * Tp
    Q, z = _input_scratch(TH, TW)
    fn, bits = numpy_sgemm() if USE_CBLAS else (0, 0)
    if fn:
        nb = _chunk(hi - lo, floats, CHUNK_BYTES_COMPILED)
        V = planes("wV", C, nb * Tp)[1]
        M = planes("wM", K, nb * Tp)[1]
        tmp = scratch("wtmp", (12, K * nb * Tp))
        _forward_chunks(x, U, b, has_bias, pt, pl, lo, hi, nb, TH, TW, Q, z, V, M, tmp, y, fn, bits)
        return
    nb = _chunk(hi - lo, floats, CHUNK_BYTES)
    for n0 in range(lo, hi, nb):
        m = min(nb, hi - n0)
        V, Vfull = planes("wV", C, m * Tp)
        M, Mfull = planes("wM", K, m * Tp)
        tmp = scratch("wtmp", (12, K * m * Tp))
        input_transform(x, n0, m, pt, pl, TH, TW, Q, z, Vfull)
        np.matmul(U, V, out=M)
        output_transform(Mfull, m * Tp, b, has_bias, n0, TH, TW, tmp, y)


def backward(gy, x, U, pt, pl, lo, hi, gx, St):
    """For samples [lo, hi): gx = the input gradient (if gx is not None; needs U) and St = the summed
    transformed weight gradient (16, C, K) (if St is not None; overwritten; gw =
    weight_grad_transform(St) once the slices are summed). Both start from the same transformed
    gy, Gyt (T, K): St += V @ Gyt with V = input_transform(x), and the input gradient is the
    adjoint of the input transform applied to Gyt @ U."""
    C, K = (x.shape[1] if U is None else U.shape[2]), gy.shape[1]
    TH, TW = tiles(gy.shape[2], gy.shape[3])
    Tp = TH * TW
    floats = (16 * (2 * C + K) + 8 * K + 16 * C) * Tp
    Q, z = _input_scratch(TH, TW)
    gP = scratch("wgP", (2 * TH + 2, 2 * TW + 2, C))
    fn, bits = numpy_sgemm() if USE_CBLAS else (0, 0)
    if fn:
        nb = _chunk(hi - lo, floats, CHUNK_BYTES_COMPILED)
        Gy = planes("wGy", nb * Tp, K)[1]
        GV = planes("wGV", nb * Tp, C)[1]
        _backward_chunks(gy, x if St is not None else _NONE4, U if gx is not None else St, pt, pl, lo, hi,
                         nb, TH, TW, Q, z, planes("wV", C, nb * Tp)[1], Gy, scratch("wtmp", (8, Gy.shape[1], K)),
                         GV, scratch("wR", (16, GV.shape[1] * C)), gP, gx is not None,
                         _NONE4 if gx is None else gx, St is not None, _NONE3 if St is None else St, fn, bits)
        return
    nb = _chunk(hi - lo, floats, CHUNK_BYTES)
    part = scratch("wSpart", (16, C, K))
    for n0 in range(lo, hi, nb):
        m = min(nb, hi - n0)
        Gyt, Gfull = planes("wGy", m * Tp, K)
        tmp = scratch("wtmp", (8, Gfull.shape[1], K))
        grad_transform(gy, n0, m * Tp, TH, TW, tmp, Gfull)
        if St is not None:
            V, Vfull = planes("wV", C, m * Tp)
            input_transform(x, n0, m, pt, pl, TH, TW, Q, z, Vfull)
            target = St if n0 == lo else part
            np.matmul(V, Gyt, out=target)  # (C, T) @ (T, K): both operands plain, ~100 GFLOPS
            if n0 != lo:
                St += part
        if gx is not None:
            GV, GVfull = planes("wGV", m * Tp, C)
            np.matmul(Gyt, U, out=GV)      # (T, K) @ (K, C)
            R = scratch("wR", (16, GVfull.shape[1] * C))
            input_adjoint(GVfull, m * Tp, n0, pt, pl, TH, TW, R, gP, gx)
