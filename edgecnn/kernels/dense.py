"""Dense (fully connected) layer: y = x @ w.T + b, x (N, in), w (out, in), b (out,).

The products run in NumPy's matmul between compiled stages (OpenBLAS sgemm, writing straight into the
preallocated outputs with ``out=``); calling matmul inside @njit would route through SciPy's BLAS and
make SciPy a dependency. Bias add and the bias-gradient column sum are small compiled loops with a
fixed summation order (deterministic).

Large products are split into disjoint blocks of output rows or columns, one per Numba thread, on
the conv thread pool (_conv_threads): training holds OpenBLAS to one thread (its own pool would
fight Numba's), which left keras-mnist's 9216->128 layer, 12 ms of a step, on one core. Every
product holds OpenBLAS to one thread for its duration (see _matmul).
"""
import numpy as np

from .._jit import njit
from ._common import check_array, check_out, check_shape, is_device_array
from ._conv_threads import _blas_single, n_parts, run_parts

_F0 = np.float32(0.0)
# Below this many flops a product stays on the calling thread: handing half to the conv pool's
# second thread costs ~0.1 ms on a VM (a wake-up and GIL hand-offs). Measured at 2 threads, forward
# and both backward products: 128x400 @ 400x120 (12 MFLOP each) 0.57 ms split vs 0.39 serial,
# 128x1600 @ 1600x128 (52 MFLOP) 1.19 vs 1.65.
SPLIT_FLOPS = 3 << 23


@njit
def _add_bias_rows(y, b):
    N, M = y.shape
    for i in range(N):
        for j in range(M):
            y[i, j] += b[j]


@njit
def _sum_rows(gy, gb):
    """gb[j] = sum_i gy[i, j], rows added in order (vectorized along j)."""
    N, M = gy.shape
    for j in range(M):
        gb[j] = _F0
    for i in range(N):
        for j in range(M):
            gb[j] += gy[i, j]


def _matmul(a, b, out, axis):
    """out = a @ b, split into blocks of out's rows (axis 0) or columns (axis 1) across threads.
    Blocks are disjoint and fixed by the thread count, so results are deterministic."""
    M, N = out.shape
    n = M if axis == 0 else N
    parts = n_parts(n, 16) if 2 * M * N * a.shape[1] >= SPLIT_FLOPS else 1
    if parts == 1:
        # One OpenBLAS thread here too: a product run on its pool leaves that pool's threads spinning
        # for a long while, on the cores the next conv's threads need. Model.predict outside training
        # (which holds OpenBLAS to one thread anyway), measured: the default model 7,450 -> 11,000-
        # 15,800 img/s at batch 256, lenet5 34,000-40,500 -> 55,000-76,000; at batch 1 right after a
        # batch-256 call, 670 -> 400 us and 454 -> 139 us. Holding costs ~1.4 us a product (set and
        # restore); letting OpenBLAS's own small-size rule decide when to thread measured no faster.
        _blas_single(True)
        try:
            np.matmul(a, b, out=out)
        finally:
            _blas_single(False)
        return

    def part(p, lo, hi):
        if axis == 0:
            np.matmul(a[lo:hi], b, out=out[lo:hi])
        else:
            np.matmul(a, b[:, lo:hi], out=out[:, lo:hi])
    run_parts(part, n, parts)


def dense_fwd_cpu(x, w, b, y):
    """y = x @ w.T (+ b); b may be None."""
    _matmul(x, w.T, y, 0)
    if b is not None:
        _add_bias_rows(y, b)


def dense_bwd_input_cpu(gy, w, gx):
    """gx = gy @ w."""
    _matmul(gy, w, gx, 0)


def dense_bwd_weight_cpu(gy, x, gw, gb):
    """gw = gy.T @ x; gb = column sums of gy (skipped when gb is None). Overwrites, never accumulates."""
    _matmul(gy.T, x, gw, 1)
    if gb is not None:
        _sum_rows(gy, gb)


def _on_device(op, *arrays):
    """True when every array given is a CUDA device array (dispatch to edgecnn.kernels.cuda), False when
    all are NumPy arrays; TypeError when they are mixed."""
    dev = [is_device_array(a) for a in arrays if a is not None]
    if any(dev) and not all(dev):
        raise TypeError(f"{op}: the arrays must all be NumPy arrays or all CUDA device arrays")
    return bool(dev) and all(dev)


def _check_xw(op, x, w):
    check_array(op, "x", x, 2)
    check_array(op, "w", w, 2)
    if x.shape[1] != w.shape[1]:
        raise ValueError(f"{op}: x has {x.shape[1]} features but w expects {w.shape[1]} "
                         f"(x shape {tuple(x.shape)}, w shape (out_features, in_features) = {tuple(w.shape)})")


def dense_forward(x, w, b=None, out=None):
    """y (N, out) = x (N, in) @ w.T + b."""
    op = "dense_forward"
    _check_xw(op, x, w)
    if b is not None:
        check_array(op, "b", b, 1)
        check_shape(op, "b", b, (w.shape[0],))
    dev = _on_device(op, x, w, b, out)
    out = check_out(op, "out", out, (x.shape[0], w.shape[0]), like=x)
    if dev:
        from .cuda import dense as _cu
        return _cu.dense_forward(x, w, b, out)
    if out is x or out is w:
        raise ValueError(f"{op}: out must not be an input, got shape {tuple(out.shape)}")
    dense_fwd_cpu(x, w, b, out)
    return out


def dense_backward(gy, x, w, need_input_grad=True, need_bias_grad=True, gx=None, gw=None, gb=None):
    """(gx, gw, gb): gx = gy @ w, gw = gy.T @ x, gb = sum over the batch; gx / gb None when not needed."""
    op = "dense_backward"
    _check_xw(op, x, w)
    check_array(op, "gy", gy, 2)
    check_shape(op, "gy", gy, (x.shape[0], w.shape[0]))
    dev = _on_device(op, gy, x, w, gx, gw, gb)
    gw = check_out(op, "gw", gw, w.shape, like=gy)
    gb = check_out(op, "gb", gb, (w.shape[0],), like=gy) if need_bias_grad else None
    gx = check_out(op, "gx", gx, x.shape, like=gy) if need_input_grad else None
    if dev:
        from .cuda import dense as _cu
        return _cu.dense_backward(gy, x, w, need_input_grad, need_bias_grad, gx, gw, gb)
    if gx is not None:
        dense_bwd_input_cpu(gy, w, gx)
    dense_bwd_weight_cpu(gy, x, gw, gb)
    return gx, gw, gb
