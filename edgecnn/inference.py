"""An inference fast path for small batches on the CPU (the ``edgecnn live`` case: a few digits a frame).

``compile_plan(model, max_batch=8)`` turns a trained Model into a fixed plan of steps:

* Conv2D [+ BatchNorm2D] [+ activation] [+ MaxPool2D] becomes one step: batch norm's running statistics
  are folded into the convolution's weights and bias (computed in float64, stored as float32); patches
  and GEMM run channels-last, and the bias, the activation and the max pooling run in the one pass that
  writes the result into the next conv's zero-padded input (or NCHW, for what follows a last conv);
* Dense [+ BatchNorm2D] [+ activation] becomes one step; Flatten and (inference) Dropout cost nothing.

Every buffer is allocated once for ``max_batch`` images; a larger batch runs in chunks of ``max_batch``.
Settings are validated once, when the plan is built: a call checks its input, then goes straight to the
compiled kernels below and NumPy's matmul, all on the calling thread, with NumPy's OpenBLAS held to one
thread for the call. At these sizes one thread wins, measured on 2 cores shared with other work, default
model, batch 4: 0.54-0.7 ms (p95 0.8-1.8 ms); letting OpenBLAS use 2 threads, 23 ms; two halves of the
batch on 2 threads with one join per call, 0.7-1.05 ms (p95 3.4-4.6 ms); Model.predict, which wakes a
thread pool per layer, 1.6-67 ms (p95 7-90 ms). A plan serves one thread at a time (its buffers are
shared).

Covered: chains (``model.is_chain()``) of Conv2D (groups=1; any stride, padding, dilation), Dense,
BatchNorm2D right after one of them, MaxPool2D right after a conv step, Flatten, Dropout, and the
activations relu / leaky_relu / linear (fused or as an Activation layer). Anything else (DAGs with Add or
Concatenate, grouped or depthwise convs, other pools, sigmoid/tanh/softmax outputs, ...) or a model that
is not on the CPU falls back to ``Model.predict``: same results, the general executor's speed
(``plan.fallback`` says why).

The plan copies (folds) the parameters when built and checks on every call that the model's parameters
are still the arrays, with the values, it folded (one compiled comparison, ~10 us for the default model);
after ``load_state_dict``, an optimizer step or ``model.to(...)`` it folds again (or falls back).
"""
import numpy as np

from . import layers as L
from ._blas import numpy_openblas
from ._jit import njit

_NEG_INF = np.float32(-np.inf)
_F0 = np.float32(0)
_ACTS = {None: 0, "relu": 1, "leaky_relu": 2}


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
    C = xp.shape[3]
    for m in range(n):
        for oh in range(Ho):
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
    Hp, Wp, K = y.shape[1], y.shape[2], y.shape[3]
    for m in range(n):
        for oh in range(Hp):
            r0 = (m * Ho + 2 * oh) * Wo
            r1 = r0 + Wo
            for ow in range(Wp):
                z00, z01, z10, z11 = z[r0 + 2 * ow], z[r0 + 2 * ow + 1], z[r1 + 2 * ow], z[r1 + 2 * ow + 1]
                out = y[m, oh, ow]
                for k in range(K):
                    v = max(max(z00[k], z01[k]), max(z10[k], z11[k]))
                    out[k] = _act(v + b[k], act, alpha)


@njit
def dense_epilogue(z, b, act, alpha):
    """z = act(z + b), in place; z (n, U)."""
    n, U = z.shape
    for m in range(n):
        for u in range(U):
            z[m, u] = _act(z[m, u] + b[u], act, alpha)


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

    def fold(self):
        w = self.conv.params[0].value.astype(np.float64).reshape(self.K, self.R)
        b = self.conv.params[1].value.astype(np.float64) if self.conv.use_bias else None
        if self.bn is not None:
            w, b = _fold_bn(w, b, self.bn)
        w = w.reshape(self.K, self.C, self.KH, self.KW).transpose(2, 3, 1, 0).reshape(self.R, self.K)
        self.w = np.ascontiguousarray(w, np.float32)  # (R, K), rows in (i, j, c) order as the patches
        self.b = np.zeros(self.K, np.float32) if b is None else b.astype(np.float32)

    def views(self, n):
        return self.cols[:n * self.P], self.z[:n * self.P]

    def run(self, x, n, views):
        """``x`` is ``self.x_in`` (written by the conv before) or an NCHW batch, copied in here."""
        cols, z = views
        if x is not self.x_in:
            self.x_in[:n] = x[:n].transpose(0, 2, 3, 1)
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

    def fold(self):
        w = self.dense.params[0].value.astype(np.float64)
        b = self.dense.params[1].value.astype(np.float64) if self.dense.use_bias else None
        if self.bn is not None:
            w, b = _fold_bn(w, b, self.bn)
        self.wt = np.ascontiguousarray(w.T, np.float32)  # (F, U): x @ wt
        self.b = np.zeros(self.U, np.float32) if b is None else b.astype(np.float32)

    def views(self, n):
        return (self.z[:n],)

    def run(self, x, n, views):
        z, = views
        np.matmul(x[:n].reshape(n, self.F), self.wt, out=z)
        dense_epilogue(z, self.b, self.act, self.alpha)
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
        self._flat = tuple(v.reshape(-1) for v in self._values)  # views: in-place updates show through
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
        return _all_equal(self._flat, self._copies)

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
