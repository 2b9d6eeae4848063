"""conv2d / conv1d: forward and hand-written backward, float32, NCHW, OIHW weights.

Convolution here is cross-correlation, as in every ML library; ``flip=True`` flips the kernel
(true convolution). conv1d runs as conv2d with a height of 1.

Three CPU implementations, chosen per shape by ``_choose_path`` and ``_winograd``:
* ``_conv_gemm``: per-chunk im2col that stays in L2 + OpenBLAS sgemm (channel-rich layers);
* ``_conv_direct``: plain loops (single-channel first layers, depthwise and other thin groups);
* ``_conv_winograd``: F(2x2, 3x3) for the channel-rich 3x3 stride-1 layers (2.25x fewer flops).
Each has a stride-1 variant on "wide rows" (every tap is one contiguous slice of the padded
plane) and a general one (any stride). All are serial kernels over a slice of the batch;
``_conv_threads`` runs one slice per thread and joins once. The tests run every variant
against the float64 reference.
"""
import numpy as np

from .._blas import numpy_sgemm
from ._common import (as_int, as_tuple, check_array, check_out, check_shape, is_device_array,
                      output_shape, resolve_padding)
from . import _conv_direct, _conv_gemm, _conv_winograd
from ._conv_threads import n_parts, run_parts

__all__ = ["conv2d_forward", "conv2d_backward", "conv1d_forward", "conv1d_backward",
           "conv2d_output_shape", "conv2d_fwd_cpu", "conv2d_bwd_input_cpu", "conv2d_bwd_weight_cpu"]

# Tests set these to exercise one path on every configuration: _FORCE_PATH "direct", "gemm" or
# "winograd" (the last only where it applies: 3x3, stride 1, ...; elsewhere it means "gemm");
# _FORCE_GENERIC=True also sends stride-1 convs to the general kernels (not the wide-row ones).
_FORCE_PATH = None
_FORCE_GENERIC = False
_NO_BIAS = np.zeros(1, np.float32)


# ---------------------------------------------------------------------------------------------
# Validation: everything below runs before any compiled code.

class _Conv:
    """Resolved settings of one call (2-D; conv1d maps onto it with a height of 1)."""
    __slots__ = ("stride", "pads", "dilation", "groups", "out_shape")  # out_shape: nd-dimensional


def _settings(op, x_shape, w_shape, stride, padding, dilation, groups, nd):
    """Validate shapes and settings for an nd-dimensional conv; return a 2-D _Conv."""
    x_shape, w_shape = tuple(x_shape), tuple(w_shape)
    stride = as_tuple(op, "stride", stride, nd, 1)
    dilation = as_tuple(op, "dilation", dilation, nd, 1)
    groups = as_int(op, "groups", groups, 1)
    N, C = x_shape[0], x_shape[1]
    K, Cg = w_shape[0], w_shape[1]
    kernel = w_shape[2:]
    if C % groups:
        raise ValueError(f"{op}: groups={groups} must divide the input channels: x shape {x_shape} "
                         f"has {C} channels")
    if K % groups:
        raise ValueError(f"{op}: groups={groups} must divide the output channels: w shape {w_shape} "
                         f"has {K} output channels")
    if Cg * groups != C:
        raise ValueError(f"{op}: w shape {w_shape} expects {Cg * groups} input channels "
                         f"({Cg} per group x groups={groups}), but x shape {x_shape} has {C}")
    pads = resolve_padding(op, padding, kernel, dilation)
    spatial = output_shape(op, x_shape[2:], kernel, stride, pads, dilation)
    s = _Conv()
    if nd == 1:
        s.stride, s.dilation, s.pads = (1, stride[0]), (1, dilation[0]), ((0, 0), pads[0])
    else:
        s.stride, s.dilation, s.pads = stride, dilation, pads
    s.groups = groups
    s.out_shape = (N, K, *spatial)
    return s


def _check_flag(op, name, value):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{op}: {name} must be a bool, got {value!r}")
    return bool(value)


def _check_no_overlap(op, name, out, *inputs):
    for a in inputs:
        if isinstance(out, np.ndarray) and isinstance(a, np.ndarray) and np.may_share_memory(out, a):
            raise ValueError(f"{op}: {name} (shape {tuple(out.shape)}) must not overlap an input "
                             f"(shape {tuple(a.shape)})")


def _check_inputs(op, nd, x, w, b=None, gy=None):
    rank = nd + 2
    if gy is not None:
        check_array(op, "gy", gy, rank)
    check_array(op, "x", x, rank)
    check_array(op, "w", w, rank)
    if b is not None:
        check_array(op, "b", b, 1)
        check_shape(op, "b", b, (w.shape[0],))
    arrays = [a for a in (gy, x, w, b) if a is not None]
    if len({is_device_array(a) for a in arrays}) > 1:
        raise TypeError(f"{op}: x, w{', b' if b is not None else ''}{', gy' if gy is not None else ''} "
                        f"must all be NumPy arrays or all CUDA device arrays")


def conv2d_output_shape(x_shape, w_shape, stride=1, padding=0, dilation=1, groups=1):
    """(N, C_out, H_out, W_out) of conv2d_forward; raises ValueError when the output would be empty."""
    op = "conv2d_output_shape"
    for name, shp in (("x_shape", x_shape), ("w_shape", w_shape)):
        if (not isinstance(shp, (tuple, list)) or len(shp) != 4
                or not all(isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d > 0
                           for d in shp)):
            raise ValueError(f"{op}: {name} must be 4 positive ints, got {shp!r}")
    return _settings(op, x_shape, w_shape, stride, padding, dilation, groups, 2).out_shape


# ---------------------------------------------------------------------------------------------
# CPU kernels: validated, 4-D, C-contiguous float32 arguments; settings resolved.

def _choose_path(x_shape, w_shape, groups, stride=(1, 1), dilation=(1, 1)):
    if _FORCE_PATH is not None:
        return "gemm" if _FORCE_PATH == "winograd" else _FORCE_PATH
    K, Cg, KH, KW = w_shape
    # A GEMM needs a reasonably deep inner dimension and several filters per group to pay for
    # writing the patches; otherwise the direct loops win. Measured (one thread, batch 64):
    # 1->32 3x3 and 1->6 5x5 faster direct.
    if Cg * KH * KW < 32 or K // groups < 8:
        return "direct"
    # Stride-1 5x5 layers of moderate depth: the direct loops' 4-channel blocks beat a GEMM whose
    # patches are mostly overhead (lenet5's 6->16: fwd 1.63 vs 1.88 ms, bwd 4.01 vs 4.99 ms, one
    # thread, batch 128; 8->16 pad 2: 7.9 vs 10.3 / 16.4 vs 25.5 ms, two threads).
    if (tuple(stride) == (1, 1) and tuple(dilation) == (1, 1) and KH == KW == 5
            and (K // groups) % 4 == 0 and Cg * KH * KW <= 200):
        return "direct"
    return "gemm"


def _input_grad_by_gemm(w_shape, groups):
    """For a stride-1 layer on the direct path: compute its input gradient with the compiled im2col
    GEMM instead? Only where the direct loops would fall back to their one-channel gather (input
    channels per group not a multiple of 4) on a deep patch and enough filters for the GEMM's inner
    dimension: lenet5's 6->16 5x5, 1.11-1.43 -> 0.81-1.16 ms per 64 samples on one thread. 3x3 layers
    with 2-5 input channels measured level or slower, so they keep the gather."""
    K, Cg, KH, KW = w_shape
    return (_FORCE_PATH is None and not _FORCE_GENERIC and Cg % 4 != 0 and Cg * KH * KW >= 100
            and K // groups >= 16 and _conv_gemm.USE_CBLAS and bool(numpy_sgemm()[0]))


def _winograd(x_shape, w_shape, stride, pads, dilation, groups):
    """Run this conv as F(2x2, 3x3)? Only where a GEMM would be chosen anyway: the transforms cost
    memory passes that the thin layers the direct loops serve cannot pay back."""
    if not _conv_winograd.eligible(w_shape, stride, pads, dilation, groups):
        return False
    if _FORCE_PATH is not None or _FORCE_GENERIC:
        return _FORCE_PATH == "winograd"
    return _choose_path(x_shape, w_shape, groups, stride, dilation) == "gemm"


def _winograd_weights(w):
    """U (16, K, C): the transformed kernel of the forward."""
    U = np.empty((16, w.shape[0], w.shape[1]), np.float32)
    _conv_winograd.weight_transform(w, U)
    return U


def _unpack(stride, pads, dilation):
    return stride[0], stride[1], pads[0][0], pads[1][0], dilation[0], dilation[1]


def conv2d_fwd_cpu(x, w, b, stride, pads, dilation, groups, y):
    """y = conv(x, w) + b (cross-correlation). pads = ((top, bottom), (left, right))."""
    has_bias = b is not None
    b = b if has_bias else _NO_BIAS
    sh, sw, pt, pl, dh, dw = _unpack(stride, pads, dilation)
    gemm = _choose_path(x.shape, w.shape, groups, stride, dilation) == "gemm"
    if _winograd(x.shape, w.shape, stride, pads, dilation, groups):
        U = _winograd_weights(w)

        def part(p, lo, hi):
            _conv_winograd.forward(x, U, b, has_bias, pt, pl, lo, hi, y)
    elif sh == sw == 1 and not _FORCE_GENERIC:
        kernel = _conv_gemm.gemm_fwd_s1 if gemm else _conv_direct.direct_fwd_s1

        def part(p, lo, hi):
            kernel(x, w, b, has_bias, pt, pl, dh, dw, groups, lo, hi, y)
    else:
        kernel = _conv_gemm.gemm_fwd if gemm else _conv_direct.direct_fwd

        def part(p, lo, hi):
            kernel(x, w, b, has_bias, sh, sw, pt, pl, dh, dw, groups, lo, hi, y)
    run_parts(part, x.shape[0], n_parts(x.shape[0]))


def conv2d_bwd_input_cpu(gy, w, stride, pads, dilation, groups, gx):
    """gx = d(sum(y * gy))/dx."""
    _bwd_cpu(gy, None, w, stride, pads, dilation, groups, gx, None, None)


def conv2d_bwd_weight_cpu(gy, x, stride, pads, dilation, groups, gw):
    """gw = d(sum(y * gy))/dw (overwritten)."""
    _bwd_cpu(gy, x, None, stride, pads, dilation, groups, None, gw, None)


def _bwd_cpu(gy, x, w, stride, pads, dilation, groups, gx, gw, gb):
    """Any of gx, gw, gb (None = skip), sharing passes over the data.

    Each thread takes a slice of the batch; gw and gb get one partial buffer per slice (the
    first is the output itself), summed afterwards in slice order: race-free and deterministic.
    """
    sh, sw, pt, pl, dh, dw = _unpack(stride, pads, dilation)
    N = gy.shape[0]
    w_shape = w.shape if w is not None else gw.shape
    x_shape = gy.shape[:1] + (w_shape[1] * groups,)
    if _winograd(x_shape, w_shape, stride, pads, dilation, groups):
        _bwd_winograd(gy, x, w, pads, gx, gw, gb)
        return
    gemm = _choose_path(x_shape, w_shape, groups, stride, dilation) == "gemm"
    parts = n_parts(N)
    gws = [gw] + [None if gw is None else np.empty_like(gw) for _ in range(parts - 1)]
    gbs = [gb] + [None if gb is None else np.empty_like(gb) for _ in range(parts - 1)]

    s1 = sh == sw == 1 and not _FORCE_GENERIC
    gx_gemm = s1 and not gemm and gx is not None and _input_grad_by_gemm(w_shape, groups)

    def part(p, lo, hi):
        if gemm and s1:
            _conv_gemm.gemm_bwd_s1(gy, x, w, pt, pl, dh, dw, groups, lo, hi, gx, gws[p])
        elif gemm:
            _conv_gemm.gemm_bwd(gy, x, w, sh, sw, pt, pl, dh, dw, groups, lo, hi, gx, gws[p])
        elif s1:
            if gws[p] is not None:
                _conv_direct.direct_bwd_weight_s1(gy, x, pt, pl, dh, dw, groups, lo, hi, gws[p])
            if gx is not None and gx_gemm:
                _conv_gemm.gemm_bwd_s1(gy, None, w, pt, pl, dh, dw, groups, lo, hi, gx, None)
            elif gx is not None:
                _conv_direct.direct_bwd_input_s1(gy, w, pt, pl, dh, dw, groups, lo, hi, gx)
        else:
            if gws[p] is not None:
                _conv_direct.direct_bwd_weight(gy, x, sh, sw, pt, pl, dh, dw, groups, lo, hi, gws[p])
            if gx is not None:
                _conv_direct.direct_bwd_input(gy, w, sh, sw, pt, pl, dh, dw, groups, lo, hi, gx)
        if gbs[p] is not None:
            _conv_direct.bias_grad(gy, lo, hi, gbs[p])
    run_parts(part, N, parts)
    for p in range(1, parts):
        if gw is not None:
            gw += gws[p]
        if gb is not None:
            gb += gbs[p]


def _bwd_winograd(gy, x, w, pads, gx, gw, gb):
    """_bwd_cpu for F(2x2, 3x3) layers: each batch slice computes its input gradient and a
    (16, C, K) transformed weight-gradient partial; partials are summed in slice order
    (deterministic), then transformed once."""
    (pt, pb), (pl, pr) = pads
    N = gy.shape[0]
    parts = n_parts(N)
    U = None if gx is None else _winograd_weights(w)
    Ss = None if gw is None else [np.empty((16, gw.shape[1], gw.shape[0]), np.float32)
                                  for _ in range(parts)]
    gbs = [gb] + [None if gb is None else np.empty_like(gb) for _ in range(parts - 1)]

    def part(p, lo, hi):
        _conv_winograd.backward(gy, x, U, pt, pl, lo, hi, gx, None if Ss is None else Ss[p])
        if gbs[p] is not None:
            _conv_direct.bias_grad(gy, lo, hi, gbs[p])
    run_parts(part, N, parts)
    for p in range(1, parts):
        if Ss is not None:
            Ss[0] += Ss[p]
        if gb is not None:
            gb += gbs[p]
    if gw is not None:
        _conv_winograd.weight_grad_transform(Ss[0], gw)


def _as4d(a):
    """(N, C, L) -> (N, C, 1, L) view: conv1d runs as conv2d with a height of 1."""
    return a.reshape(a.shape[0], a.shape[1], 1, a.shape[2])


def _flipped(w):
    return np.ascontiguousarray(w[:, :, ::-1, ::-1])


# ---------------------------------------------------------------------------------------------
# Host entry points.

def _forward(op, nd, x, w, b, stride, padding, dilation, groups, flip, out):
    _check_inputs(op, nd, x, w, b)
    s = _settings(op, x.shape, w.shape, stride, padding, dilation, groups, nd)
    flip = _check_flag(op, "flip", flip)
    out = check_out(op, "out", out, s.out_shape, like=x)
    x4, w4, y4 = (x, w, out) if nd == 2 else (_as4d(x), _as4d(w), _as4d(out))
    if is_device_array(x):  # the CUDA twins always see 4-D arrays and 2-D settings
        _cuda(op).conv2d_forward_device(x4, w4, b, s, flip, y4)
        return out
    _check_no_overlap(op, "out", out, x, w, *(() if b is None else (b,)))
    if flip:
        w4 = _flipped(w4)
    conv2d_fwd_cpu(x4, w4, b, s.stride, s.pads, s.dilation, s.groups, y4)
    return out


def _backward(op, nd, gy, x, w, stride, padding, dilation, groups, flip, need_input_grad,
              need_bias_grad, gx, gw, gb):
    _check_inputs(op, nd, x, w, gy=gy)
    s = _settings(op, x.shape, w.shape, stride, padding, dilation, groups, nd)
    flip = _check_flag(op, "flip", flip)
    need_gx = _check_flag(op, "need_input_grad", need_input_grad)
    need_gb = _check_flag(op, "need_bias_grad", need_bias_grad)
    check_shape(op, "gy", gy, s.out_shape)
    gx = check_out(op, "gx", gx, x.shape, like=x) if need_gx else None
    gw = check_out(op, "gw", gw, w.shape, like=x)
    gb = check_out(op, "gb", gb, (w.shape[0],), like=x) if need_gb else None
    if nd == 1:
        gy4, x4, w4, gw4 = _as4d(gy), _as4d(x), _as4d(w), _as4d(gw)
        gx4 = None if gx is None else _as4d(gx)
    else:
        gy4, x4, w4, gx4, gw4 = gy, x, w, gx, gw
    if is_device_array(x):  # the CUDA twins always see 4-D arrays and 2-D settings
        _cuda(op).conv2d_backward_device(gy4, x4, w4, s, flip, gx4, gw4, gb)
        return gx, gw, gb
    outs = [(n, a) for n, a in (("gx", gx), ("gw", gw), ("gb", gb)) if a is not None]
    for name, a in outs:
        _check_no_overlap(op, name, a, gy, x, w, *(o for m, o in outs if m != name))
    if flip:
        w4 = _flipped(w4)
        gw_f = np.empty_like(gw4)
        _bwd_cpu(gy4, x4, w4, s.stride, s.pads, s.dilation, s.groups, gx4, gw_f, gb)
        gw4[...] = gw_f[:, :, ::-1, ::-1]
    else:
        _bwd_cpu(gy4, x4, w4, s.stride, s.pads, s.dilation, s.groups, gx4, gw4, gb)
    return gx, gw, gb


def _cuda(op):
    try:
        from .cuda import conv as cuda_conv
    except ImportError as e:
        raise NotImplementedError(f"{op}: CUDA conv kernels are not available ({e})") from None
    return cuda_conv


def conv2d_forward(x, w, b=None, stride=1, padding=0, dilation=1, groups=1, flip=False, out=None):
    """y (N, C_out, H_out, W_out) = conv2d of x (N, C, H, W) with w (C_out, C/groups, kH, kW) + b.

    stride, dilation: int or pair; padding: int, pair, "valid", "same" or "full";
    flip=True flips the kernel (true convolution). ``out`` is an optional preallocated result.
    """
    return _forward("conv2d_forward", 2, x, w, b, stride, padding, dilation, groups, flip, out)


def conv2d_backward(gy, x, w, stride=1, padding=0, dilation=1, groups=1, flip=False,
                    need_input_grad=True, need_bias_grad=True, gx=None, gw=None, gb=None):
    """(gx, gw, gb) for y = conv2d_forward(x, w, b, ...) given gy = dL/dy.

    gx is None when need_input_grad=False, gb None when need_bias_grad=False. gw and gb are
    overwritten, not accumulated.
    """
    return _backward("conv2d_backward", 2, gy, x, w, stride, padding, dilation, groups, flip,
                     need_input_grad, need_bias_grad, gx, gw, gb)


def conv1d_forward(x, w, b=None, stride=1, padding=0, dilation=1, groups=1, flip=False, out=None):
    """y (N, C_out, L_out) = conv1d of x (N, C, L) with w (C_out, C/groups, k) + b."""
    return _forward("conv1d_forward", 1, x, w, b, stride, padding, dilation, groups, flip, out)


def conv1d_backward(gy, x, w, stride=1, padding=0, dilation=1, groups=1, flip=False,
                    need_input_grad=True, need_bias_grad=True, gx=None, gw=None, gb=None):
    """(gx, gw, gb) for y = conv1d_forward(x, w, b, ...); same keywords as conv2d_backward."""
    return _backward("conv1d_backward", 1, gy, x, w, stride, padding, dilation, groups, flip,
                     need_input_grad, need_bias_grad, gx, gw, gb)
