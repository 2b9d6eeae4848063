"""An inference fast path for small batches on the CPU (the ``edgecnn live`` case: a few digits a frame).

``compile_plan(model, max_batch=8)`` turns a trained Model into a fixed plan of steps:

* Conv2D [+ BatchNorm2D] [+ activation] [+ MaxPool2D] becomes one step: batch norm's running statistics
  are folded into the convolution's weights and bias (computed in float64, stored as float32); patches
  and GEMM run channels-last, and the bias, the activation and the max pooling run in the one pass that
  writes the result into the next conv's zero-padded input (or NCHW, for what follows a last conv);
* Dense [+ BatchNorm2D] [+ activation] becomes one step; Flatten and (inference) Dropout cost nothing.

Every buffer is allocated once for ``max_batch`` images; a larger batch runs in chunks of ``max_batch``.
Settings are validated once, when the plan is built: a call checks its input, then goes straight to the
compiled kernels below, with NumPy's OpenBLAS held to one thread for the call (letting it use 2 threads
for these small GEMMs took 23 ms a batch on 2 shared cores).

Threads: a step of at least PARALLEL_MIN_MACS multiply-adds (a conv with a 2x2 pool or none, a dense
layer) is split by output rows (units) into 2 chunks a thread over edgecnn's filter pool
(edgecnn._spin_pool). Each chunk is the whole step for its rows, patches, OpenBLAS's single-threaded sgemm
called from compiled code, bias, activation and pooling: patches made on one core and multiplied on
another cost a cache-line transfer each (splitting only the GEMM measured 1.4x slower: keras-mnist's
second conv, 195 against 133 us). The calling thread claims chunks too, so a late or descheduled worker
costs at most the chunk it took, never a wait for it to start (an earlier design, two halves of the
batch with one join per call, measured p95 3.4-4.6 ms against 0.8-1.8 on one thread on a busy host).
Batch 1, one process alone on 2 cores: keras-mnist 0.54 -> 0.20-0.22 ms, the default model 0.15 ->
0.09 ms (README, "Inference"). A plan serves one thread at a time (its buffers are shared); while
another thread holds the pool, its steps run on one thread.

Covered: chains (``model.is_chain()``) of Conv2D (groups=1; any stride, padding, dilation), Dense,
BatchNorm2D right after one of them, MaxPool2D right after a conv step, Flatten, Dropout, and the
activations relu / leaky_relu / linear (fused or as an Activation layer). Anything else (DAGs with Add or
Concatenate, grouped or depthwise convs, other pools, sigmoid/tanh/softmax outputs, ...) or a model that
is not on the CPU falls back to ``Model.predict``: same results, the general executor's speed
(``plan.fallback`` says why).

Dense layers without a batch norm run on the model's own weight arrays (``dense_rows``). Everything else
the plan copies when built (batch norm folded in, conv weights reordered), and it checks on every call that
the model's parameters are still the same arrays and that the copied ones still hold the values it copied
(one compiled comparison, ~10 us for the default model; 2 us for keras-mnist, whose 1.18 M dense weights
are not copied); after ``load_state_dict``, an optimizer step or ``model.to(...)`` it folds again (or falls
back).
"""
import numpy as np

from . import _spin_pool
from . import layers as L
from ._blas import numpy_openblas, numpy_sgemm
from ._cblas import sgemm
from ._filter_kernels import chunk_first, chunk_stop
from ._jit import njit

_NEG_INF = np.float32(-np.inf)
_F0 = np.float32(0)
_ACTS = {None: 0, "relu": 1, "leaky_relu": 2}
# A conv's GEMM or a dense product of at least this many multiply-adds per call is split over the
# filter pool's threads (edgecnn._spin_pool); a smaller one gains less than the hand-off costs (a
# 0.24 M one, lenet5's second conv: 4.6-5.0 us in 2-4 chunks against 5.4 on one thread).
PARALLEL_MIN_MACS = 1 << 17
PARALLEL = [True]  # False: every step on the calling thread (steadier on a machine busy with other work)
_ONE_CHUNK = 1 | 1 << 32  # the packed chunk range [0, 1) of 1: a whole call on this thread


class Unsupported(Exception):
    """The model has a layer or a shape this plan does not cover (the message says which)."""


# ---------------------------------------------------------------------------------------------------------
# Compiled pieces (serial: one thread, no races)

@njit(inline="always")
def _act(v, act, alpha):
    if act == 1:
        return v if v > _F0 else _F0
    if act == 2:
        return v if v > _F0 else v * alpha
    return v


@njit
def im2col_nhwc(xp, n, KH, KW, sh, sw, dh, dw, Ho, Wo, cols):
    """cols[m*Ho*Wo + oh*Wo + ow, (i*KW + j)*C + c] = xp[m, oh*sh + i*dh, ow*sw + j*dw, c] for m < n.
    ``xp`` is channels-last and already zero-padded: every tap is one contiguous run of C values."""
    for m in range(n):
        _patch_rows(xp, m, 0, Ho, KH, KW, sh, sw, dh, dw, Ho, Wo, cols)


@njit
def _patch_rows(xp, m, oh0, oh1, KH, KW, sh, sw, dh, dw, Ho, Wo, cols):
    """im2col_nhwc for output rows [oh0, oh1) of image m."""
    C = xp.shape[3]
    for oh in range(oh0, oh1):
        for ow in range(Wo):
            dst = cols[(m * Ho + oh) * Wo + ow]
            for i in range(KH):
                row = xp[m, oh * sh + i * dh]
                if C == 1:  # a first layer: no inner loop of one
                    for j in range(KW):
                        dst[i * KW + j] = row[ow * sw + j * dw, 0]
                    continue
                for j in range(KW):
                    src = row[ow * sw + j * dw]
                    base = (i * KW + j) * C
                    for c in range(C):
                        dst[base + c] = src[c]


@njit
def conv_epilogue(z, b, act, alpha, n, Ho, Wo, kh, kw, sh, sw, ph, pw, y):
    """y[m, oh, ow, :] = max over the pool window of act(z[m*Ho*Wo + ih*Wo + iw, :] + b), m < n (a 1x1
    pool with stride 1 just adds the bias). z: the GEMM result (n*Ho*Wo, K); y: (>= n, Hp, Wp, K), the
    inside of the next conv's padded input or a channels-last view of an NCHW buffer."""
    Hp, Wp, K = y.shape[1], y.shape[2], y.shape[3]
    for m in range(n):
        for oh in range(Hp):
            for ow in range(Wp):
                out = y[m, oh, ow]
                for k in range(K):
                    out[k] = _NEG_INF
                for i in range(kh):
                    ih = oh * sh - ph + i
                    if ih < 0 or ih >= Ho:
                        continue
                    for j in range(kw):
                        iw = ow * sw - pw + j
                        if iw < 0 or iw >= Wo:
                            continue
                        zr = z[(m * Ho + ih) * Wo + iw]
                        for k in range(K):
                            v = _act(zr[k] + b[k], act, alpha)
                            if v > out[k]:
                                out[k] = v


@njit
def conv_epilogue_pool2(z, b, act, alpha, n, Ho, Wo, y):
    """conv_epilogue for the common 2x2, stride 2, unpadded max pool and a non-decreasing activation
    (so the bias and the activation go after the max)."""
    for m in range(n):
        _pool2_rows(z, b, act, alpha, m, 0, y.shape[1], Ho, Wo, y)


@njit
def _pool2_rows(z, b, act, alpha, m, r0, r1, Ho, Wo, y):
    """conv_epilogue_pool2 for pooled rows [r0, r1) of image m."""
    Wp, K = y.shape[2], y.shape[3]
    for oh in range(r0, r1):
        q0 = (m * Ho + 2 * oh) * Wo
        q1 = q0 + Wo
        for ow in range(Wp):
            z00, z01, z10, z11 = z[q0 + 2 * ow], z[q0 + 2 * ow + 1], z[q1 + 2 * ow], z[q1 + 2 * ow + 1]
            out = y[m, oh, ow]
            for k in range(K):
                v = max(max(z00[k], z01[k]), max(z10[k], z11[k]))
                out[k] = _act(v + b[k], act, alpha)


@njit
def _bias_rows(z, b, act, alpha, m, r0, r1, Ho, Wo, y):
    """conv_epilogue without pooling, for rows [r0, r1) of image m."""
    K = y.shape[3]
    for oh in range(r0, r1):
        for ow in range(Wo):
            zr = z[(m * Ho + oh) * Wo + ow]
            out = y[m, oh, ow]
            for k in range(K):
                out[k] = _act(zr[k] + b[k], act, alpha)


@njit
def conv_rows_part(cols, xp, w, b, act, alpha, KH, KW, sh, sw, dh, dw, Ho, Wo, pool2, fn, bits, y, z,
                   nchunks):
    """A whole conv step (patches, GEMM through OpenBLAS's sgemm, bias, activation, then the 2x2 max pool
    when ``pool2``, else none) for the output rows of chunks [first, stop) of total (edgecnn._spin_pool's
    packing): rows of y, over the n = len(cols) // (Ho*Wo) images. Each thread makes the patches it
    multiplies: patches made on one core and multiplied on another cost a cache-line transfer each
    (measured: 2x slower patches for the next call)."""
    P, R, K = Ho * Wo, cols.shape[1], w.shape[1]
    n = cols.shape[0] // P
    per = Ho // 2 if pool2 else Ho  # output rows per image
    total = nchunks & 0xFFFF
    lo, hi = chunk_first(nchunks) * n * per // total, chunk_stop(nchunks) * n * per // total
    u = lo
    while u < hi:
        m = u // per
        r0, r1 = u - m * per, min(hi - m * per, per)
        c0, c1 = (2 * r0, 2 * r1) if pool2 else (r0, r1)
        _patch_rows(xp, m, c0, c1, KH, KW, sh, sw, dh, dw, Ho, Wo, cols)
        p0 = (m * Ho + c0) * Wo
        sgemm(fn, bits, False, False, (c1 - c0) * Wo, K, R, cols, p0 * R, R, w, 0, K, _F0, z, p0 * K, K)
        if pool2:
            _pool2_rows(z, b, act, alpha, m, r0, r1, Ho, Wo, y)
        else:
            _bias_rows(z, b, act, alpha, m, r0, r1, Ho, Wo, y)
        u = m * per + r1


@njit
def dense_rows(x, w, b, act, alpha, z):
    """z[m] = act(w @ x[m] + b) for the rows of x (n, F); w (U, F) as a Dense layer holds it, so the
    model's own array serves (nothing copied, nothing to go stale)."""
    _dense_units(x, w, b, act, alpha, z, 0, w.shape[0])


@njit
def dense_rows_part(x, w, b, act, alpha, z, nchunks):
    """dense_rows for the units of chunks [first, stop) of total (edgecnn._spin_pool's packing), in
    groups of 8 units."""
    total, U = nchunks & 0xFFFF, w.shape[0]
    groups = (U + 7) // 8
    lo, hi = chunk_first(nchunks) * groups // total * 8, chunk_stop(nchunks) * groups // total * 8
    if hi > lo:
        _dense_units(x, w, b, act, alpha, z, lo, min(hi, U))


@njit
def _dense_units(x, w, b, act, alpha, z, lo, hi):
    """Units [lo, hi) of dense_rows. Each pass runs 8 dot products over F at once (4 weight rows x 2
    images; 8 rows for a single image): one chain would wait on the previous add, and each weight row
    is read once per pair of images instead of once per image."""
    n, F = x.shape
    last = hi - 1  # past the end: the last row again (computed, not stored)
    if n == 1:
        xr = x[0]
        for u in range(lo, hi, 8):
            w0, w1, w2, w3 = w[u], w[min(u + 1, last)], w[min(u + 2, last)], w[min(u + 3, last)]
            w4, w5 = w[min(u + 4, last)], w[min(u + 5, last)]
            w6, w7 = w[min(u + 6, last)], w[min(u + 7, last)]
            a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = _F0
            for f in range(F):
                p = xr[f]
                a0 += p * w0[f]
                a1 += p * w1[f]
                a2 += p * w2[f]
                a3 += p * w3[f]
                a4 += p * w4[f]
                a5 += p * w5[f]
                a6 += p * w6[f]
                a7 += p * w7[f]
            acc = (a0, a1, a2, a3, a4, a5, a6, a7)
            for k in range(min(8, hi - u)):
                z[0, u + k] = _act(acc[k] + b[u + k], act, alpha)
        return
    for u in range(lo, hi, 4):
        w0, w1, w2, w3 = w[u], w[min(u + 1, last)], w[min(u + 2, last)], w[min(u + 3, last)]
        for m in range(0, n, 2):
            x0, x1 = x[m], x[min(m + 1, n - 1)]
            a00 = a01 = a02 = a03 = a10 = a11 = a12 = a13 = _F0
            for f in range(F):
                p, q = x0[f], x1[f]
                a00 += p * w0[f]
                a01 += p * w1[f]
                a02 += p * w2[f]
                a03 += p * w3[f]
                a10 += q * w0[f]
                a11 += q * w1[f]
                a12 += q * w2[f]
                a13 += q * w3[f]
            r0, r1 = (a00, a01, a02, a03), (a10, a11, a12, a13)
            for k in range(min(4, hi - u)):
                z[m, u + k] = _act(r0[k] + b[u + k], act, alpha)
                if m + 1 < n:
                    z[m + 1, u + k] = _act(r1[k] + b[u + k], act, alpha)


@njit
def _all_equal(arrays, copies):
    """True when every flat float32 array in the tuple ``arrays`` equals its copy in ``copies``."""
    differ = 0
    for k in range(len(arrays)):
        a, b = arrays[k], copies[k]
        for i in range(a.size):
            differ += a[i] != b[i]  # no early exit: the loop vectorizes
    return differ == 0


# ---------------------------------------------------------------------------------------------------------
# Steps

class _Split:
    """A chunked kernel (edgecnn._spin_pool's packing) run on the filter pool, 2 chunks a thread. The
    calling thread claims chunks too, so a worker that is late or descheduled costs at most the chunk
    it took, never a wait for it to start."""

    def __init__(self, kernel, fixed, macs_per_row, parts):
        """parts(rows of src): how many pieces the kernel can split a call into."""
        self.kernel, self.fixed, self.macs_per_row, self.parts = kernel, fixed, macs_per_row, parts
        self._runners = {}  # rows -> the pool's runner for arrays of that shape

    def __call__(self, src, out):
        """True when done in parallel; False (nothing done) when one thread is better or the pool is
        serving another thread."""
        threads = _spin_pool.thread_count() if PARALLEL[0] else 1
        if threads < 2 or len(src) * self.macs_per_row < PARALLEL_MIN_MACS:
            return False
        go = self._runners.get(len(src))
        if go is None:
            go = self._runners[len(src)] = _spin_pool.POOL.runner(
                _spin_pool.new_call_id(), self.kernel, src, self.fixed, out)
        return go(src, out, min(2 * threads, self.parts(len(src))), threads)


def _fold_bn(w, b, bn):
    """Fold an inference batch norm into the affine map before it: w (K, ...), b (K,) or None."""
    gamma, beta, mean, var = (p.value.astype(np.float64) for p in bn.params)
    scale = gamma / np.sqrt(var + bn.eps)
    w = w * scale.reshape((-1,) + (1,) * (w.ndim - 1))
    b = (np.zeros_like(mean) if b is None else b) - mean
    return w, b * scale + beta


class _ConvStep:
    """Channels-last inside: patches from a zero-padded NHWC input, one GEMM giving NHWC, then bias,
    activation and pooling in one pass, written into the next conv's padded input (or NCHW)."""

    def __init__(self, conv, bn, act, alpha, pool, max_batch):
        self.conv, self.bn, self.act, self.alpha = conv, bn, act, np.float32(alpha)
        (self.C, self.H, self.W), (self.K, self.Ho, self.Wo) = conv.in_shapes[0], conv.shape
        self.KH, self.KW = conv.kernel_size
        self.sh, self.sw = conv.strides
        self.dh, self.dw = conv.dilation
        (pt, pb), (pl, pr) = conv._pads
        # the input, NHWC and zero-padded: whoever produces it writes only the inside (the border stays 0)
        self.xpad = np.zeros((max_batch, self.H + pt + pb, self.W + pl + pr, self.C), np.float32)
        self.x_in = self.xpad[:, pt:pt + self.H, pl:pl + self.W]
        if pool is None:
            self.pool = (1, 1, 1, 1, 0, 0)
            self.out_shape = (self.K, self.Ho, self.Wo)
        else:
            self.pool = tuple(pool.pool_size) + tuple(pool.strides) + tuple(pool.padding)
            self.out_shape = pool.shape
        self.pool2 = self.pool == (2, 2, 2, 2, 0, 0) and (act != 2 or alpha >= 0)  # monotone activation
        self.R, self.P = self.C * self.KH * self.KW, self.Ho * self.Wo
        self.cols = np.empty((max_batch * self.P, self.R), np.float32)
        self.z = np.empty((max_batch * self.P, self.K), np.float32)
        self.y = np.empty((max_batch,) + tuple(self.out_shape), np.float32)  # NCHW, as the model has it
        self.y_hwc = self.y.transpose(0, 2, 3, 1)  # where the epilogue writes (unless into the next conv)
        self.fold()

    def params(self):
        return [p for lay in (self.conv, self.bn) if lay is not None for p in lay.params]

    def folded(self):
        return self.params()  # the weights are always copied (reordered for channels-last patches)

    def fold(self):
        w = self.conv.params[0].value.astype(np.float64).reshape(self.K, self.R)
        b = self.conv.params[1].value.astype(np.float64) if self.conv.use_bias else None
        if self.bn is not None:
            w, b = _fold_bn(w, b, self.bn)
        w = w.reshape(self.K, self.C, self.KH, self.KW).transpose(2, 3, 1, 0).reshape(self.R, self.K)
        self.w = np.ascontiguousarray(w, np.float32)  # (R, K), rows in (i, j, c) order as the patches
        self.b = np.zeros(self.K, np.float32) if b is None else b.astype(np.float32)
        self.fused = self.split = None  # made at the first call: y may still become the next conv's input

    def _fuse(self):
        """conv_rows_part's fixed arguments and a _Split running it over the pool's threads, or
        (False, False) where it does not apply (no OpenBLAS sgemm to call from compiled code; a max
        pool other than 2x2)."""
        fn, bits = numpy_sgemm()
        if not fn or not (self.pool2 or self.pool == (1, 1, 1, 1, 0, 0)):
            return False, False
        per = self.Ho // 2 if self.pool2 else self.Ho
        fixed = (self.xpad, self.w, self.b, self.act, self.alpha, self.KH, self.KW, self.sh, self.sw, self.dh,
                 self.dw, self.Ho, self.Wo, self.pool2, fn, bits, self.y_hwc)
        return fixed, _Split(conv_rows_part, fixed, self.R * self.K, lambda rows: rows // self.P * per)

    def views(self, n):
        return self.cols[:n * self.P], self.z[:n * self.P]

    def run(self, x, n, views):
        """``x`` is ``self.x_in`` (written by the conv before) or an NCHW batch, copied in here."""
        cols, z = views
        if x is not self.x_in:
            self.x_in[:n] = x[:n].transpose(0, 2, 3, 1)
        if self.fused is None:
            self.fused, self.split = self._fuse()
        if self.fused:
            if not self.split(cols, z):
                conv_rows_part(cols, *self.fused, z, _ONE_CHUNK)
            return self.y
        im2col_nhwc(self.xpad, n, self.KH, self.KW, self.sh, self.sw, self.dh, self.dw, self.Ho, self.Wo,
                    cols)
        np.matmul(cols, self.w, out=z)
        if self.pool2:
            conv_epilogue_pool2(z, self.b, self.act, self.alpha, n, self.Ho, self.Wo, self.y_hwc)
        else:
            conv_epilogue(z, self.b, self.act, self.alpha, n, self.Ho, self.Wo, *self.pool, self.y_hwc)
        return self.y


class _DenseStep:
    def __init__(self, dense, bn, act, alpha, max_batch):
        self.dense, self.bn, self.act, self.alpha = dense, bn, act, np.float32(alpha)
        self.F, self.U = dense.in_shapes[0][0], dense.units
        self.out_shape = (self.U,)
        self.z = np.empty((max_batch, self.U), np.float32)
        self.fold()

    def params(self):
        return [p for lay in (self.dense, self.bn) if lay is not None for p in lay.params]

    def folded(self):
        """The parameters whose values this step copied (and so must be checked for changes)."""
        return self.params() if self.bn is not None else []

    def fold(self):
        if self.bn is None:  # the layer's own arrays: a change to their values is seen at once
            self.w = self.dense.params[0].value
            self.b = self.dense.params[1].value if self.dense.use_bias else np.zeros(self.U, np.float32)
        else:
            w = self.dense.params[0].value.astype(np.float64)
            b = self.dense.params[1].value.astype(np.float64) if self.dense.use_bias else None
            w, b = _fold_bn(w, b, self.bn)
            self.w = np.ascontiguousarray(w, np.float32)  # (U, F), as the layer holds it
            self.b = b.astype(np.float32)
        groups = (self.U + 7) // 8
        self.split = _Split(dense_rows_part, (self.w, self.b, self.act, self.alpha), self.F * self.U,
                            lambda rows: groups)

    def views(self, n):
        return (self.z[:n],)

    def run(self, x, n, views):
        z, = views
        x = x[:n].reshape(n, self.F)
        if not self.split(x, z):
            dense_rows(x, self.w, self.b, self.act, self.alpha, z)
        return z


# ---------------------------------------------------------------------------------------------------------
# Building

def _activation(layer):
    """(code, alpha) of a layer's fused activation; Unsupported for anything but linear/relu/leaky."""
    if layer.activation not in _ACTS:
        raise Unsupported(f"{layer.describe()}: activation {layer.activation!r}")
    return _ACTS[layer.activation], layer.alpha


def _build_steps(model, max_batch):
    if not model.is_chain():
        raise Unsupported("the model is a DAG (Add, Concatenate or fan-out), not a chain")
    layers, steps, i = model.layers, [], 0

    def take(cls):
        nonlocal i
        if i < len(layers) and type(layers[i]) is cls:
            i += 1
            return layers[i - 1]
        return None

    while i < len(layers):
        lay = layers[i]
        if type(lay) in (L.Flatten, L.Dropout) or (type(lay) is L.Activation and lay.activation is None):
            i += 1
            continue
        if type(lay) not in (L.Conv2D, L.Dense):
            raise Unsupported(f"{lay.describe()} is not covered here" + (" without a conv before it"
                                                                         if type(lay) is L.MaxPool2D else ""))
        if type(lay) is L.Conv2D and lay.groups != 1:
            raise Unsupported(f"{lay.describe()}: groups={lay.groups}")
        i += 1
        act, alpha = _activation(lay)
        bn = take(L.BatchNorm2D) if act == 0 else None
        if bn is not None:
            act, alpha = _activation(bn)
        if act == 0:
            a = take(L.Activation)
            if a is not None:
                act, alpha = _activation(a)
        if type(lay) is L.Conv2D:
            steps.append(_ConvStep(lay, bn, act, alpha, take(L.MaxPool2D), max_batch))
        else:
            steps.append(_DenseStep(lay, bn, act, alpha, max_batch))
    if not steps:
        raise Unsupported("the model has no conv or dense layer")
    for s, nxt in zip(steps, steps[1:]):  # a conv writes straight into the next conv's padded input
        if isinstance(s, _ConvStep) and isinstance(nxt, _ConvStep):
            s.y = s.y_hwc = nxt.x_in
    return steps


def compile_plan(model, max_batch=8):
    """An ``InferencePlan`` for ``model`` (see the module docstring); it falls back to Model.predict
    where the fast path does not apply."""
    return InferencePlan(model, max_batch)


class InferencePlan:
    """``plan.predict(x)``: logits of float32 ``x`` (N, *input_shape), equal to ``model.predict(x)``
    within float32 rounding. ``fallback`` is None when the fast path runs, else the reason it does not."""

    def __init__(self, model, max_batch=8):
        if isinstance(max_batch, bool) or not isinstance(max_batch, (int, np.integer)) or max_batch < 1:
            raise ValueError(f"InferencePlan: max_batch must be an int >= 1, got {max_batch!r}")
        self.model, self.max_batch = model, int(max_batch)
        self.input_shape, self.output_shape = tuple(model.input_shape), tuple(model.output_shape)
        self._views = {}
        self._build()

    def _build(self):
        self.steps, self._views = [], {}
        self.fallback = None
        self._device = getattr(self.model, "device", "cpu")
        if self._device != "cpu":
            self.fallback = f"the model is on {self._device}"
            return
        try:
            self.steps = _build_steps(self.model, self.max_batch)
        except Unsupported as e:
            self.steps, self.fallback = [], str(e)
            return
        # what the folded weights came from: the parameter arrays and a copy of their values
        self._params = [p for s in self.steps for p in s.params()]
        self._values = [p.value for p in self._params]
        # values copied into the plan (folded or reordered); the rest it reads from the model itself
        self._flat = tuple(p.value.reshape(-1) for s in self.steps for p in s.folded())  # views: in-place
        self._copies = tuple(f.copy() for f in self._flat)

    def _current(self):
        """True when the model still holds the parameters (arrays and values) the plan folded."""
        if getattr(self.model, "device", "cpu") != self._device:
            return False
        if self.fallback is not None:
            return True
        for p, v in zip(self._params, self._values):
            if p.value is not v:
                return False
        return not self._flat or _all_equal(self._flat, self._copies)

    def _check(self, x):
        if not isinstance(x, np.ndarray):
            raise TypeError(f"InferencePlan.predict: x must be a NumPy array, got {type(x).__name__}")
        if x.ndim != len(self.input_shape) + 1 or tuple(x.shape[1:]) != self.input_shape or x.shape[0] < 1:
            raise ValueError(f"InferencePlan.predict: x must have shape (N, "
                             f"{', '.join(map(str, self.input_shape))}) with N >= 1, got {tuple(x.shape)}")
        if x.dtype != np.float32:
            raise TypeError(f"InferencePlan.predict: x must be float32, got {x.dtype} with shape "
                            f"{tuple(x.shape)}")
        return x if x.flags.c_contiguous else np.ascontiguousarray(x)

    def predict(self, x):
        """Logits, a new float32 array (N, *output_shape)."""
        x = self._check(x)
        if not self._current():
            self._build()
        if self.fallback is not None:
            return self.model.predict(x)
        n = x.shape[0]
        out = np.empty((n,) + self.output_shape, np.float32)
        blas = numpy_openblas()
        threads = blas[0]() if blas else 1
        if threads != 1:
            blas[1](1)  # one thread for these small GEMMs (see edgecnn._blas); restored below
        try:
            for lo in range(0, n, self.max_batch):
                m = min(self.max_batch, n - lo)
                views = self._views.get(m)
                if views is None:
                    views = self._views[m] = [s.views(m) for s in self.steps]
                h = x[lo:lo + m]
                for step, v in zip(self.steps, views):
                    h = step.run(h, m, v)
                out[lo:lo + m] = h[:m].reshape((m,) + self.output_shape)
        finally:
            if threads != 1:
                blas[1](threads)
        return out
