"""Layers: thin parameter-owning wrappers around ``edgecnn.kernels``.

Every layer has two faces:

* the contract's standalone API, which allocates: ``out_shape(in_shapes)``, ``forward(xs, training)
  -> (y, ctx)``, ``backward(gy, ctx) -> gxs``, ``get_config()``;
* the executor's API, which never allocates: ``workspace(in_shapes, batch, need_gx, dev)`` returns the
  layer's scratch buffers once per batch size, allocated on ``dev`` (an ``edgecnn.device.Device``; the
  executor also puts it in the workspace as ``ws["dev"]`` for the few copies and adds layers make),
  ``fwd(xs, y, ws, training) -> y`` writes into the
  planned output ``y`` (or returns a view of its input, see ``view_output``), and ``bwd(gy, xs, y, ws,
  gxs)`` writes input gradients into ``gxs`` (None where not needed) and parameter gradients into
  each ``Parameter.grad``. ``bwd`` may overwrite ``gy`` (fused activations back-propagate in place).

Shapes exclude the batch axis. ``activation=`` fuses an activation after the layer's op.
"""
import math

import numpy as np

from . import kernels as K
from .device import CPU
from .kernels import _common as C

ACTIVATIONS = ("relu", "leaky_relu", "sigmoid", "tanh", "softmax", "log_softmax", "linear")
# Activations whose derivative depends only on the sign of the output: these run in place on the
# layer's output and back-propagate from it. The others keep the pre-activation in a workspace buffer.
_SIGN_ACTIVATIONS = ("relu", "leaky_relu")
INITIALIZERS = ("auto", "he_normal", "he_uniform", "glorot_uniform", "glorot_normal", "zeros")


class Parameter:
    """A named float32 array; ``grad`` is an array of the same shape when trainable, else None."""
    __slots__ = ("name", "value", "grad", "trainable")

    def __init__(self, name, value, trainable=True):
        self.name = name
        self.value = np.ascontiguousarray(value, dtype=np.float32)
        self.trainable = bool(trainable)
        self.grad = np.zeros_like(self.value) if self.trainable else None

    def __repr__(self):
        kind = "trainable" if self.trainable else "non-trainable"
        return f"Parameter({self.name!r}, shape={self.value.shape}, {kind})"


def _fmt(shape):
    return "(" + ", ".join(str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


def _act_name(layer_type, activation):
    if activation is None:
        return None
    if not isinstance(activation, str) or activation.lower() not in ACTIVATIONS:
        raise ValueError(f"{layer_type}: activation must be one of {', '.join(ACTIVATIONS)} or None, "
                         f"got {activation!r}")
    a = activation.lower()
    return None if a == "linear" else a


_ACT_FNS = {}


def _act_fns(name):
    """(forward, backward) kernels of an activation, looked up once (no per-call string building)."""
    fns = _ACT_FNS.get(name)
    if fns is None:
        fns = _ACT_FNS[name] = (getattr(K, name + "_forward"), getattr(K, name + "_backward"))
    return fns


def _act_forward(name, x, out, alpha):
    if name == "leaky_relu":
        return K.leaky_relu_forward(x, alpha=alpha, out=out)
    return _act_fns(name)[0](x, out=out)


def _act_backward(name, gy, x, y, gx, alpha):
    if name == "leaky_relu":
        return K.leaky_relu_backward(gy, x, y, gx=gx, alpha=alpha)
    return _act_fns(name)[1](gy, x, y, gx=gx)


def _init_weight(rng, shape, fan_in, fan_out, kind):
    """He (fan_in, for ReLU nets) or Glorot initialisation in float32 from a seeded Generator."""
    if kind == "zeros":
        return np.zeros(shape, np.float32)
    if kind == "he_normal":
        w = rng.standard_normal(shape) * math.sqrt(2.0 / fan_in)
    elif kind == "he_uniform":
        lim = math.sqrt(6.0 / fan_in)
        w = rng.uniform(-lim, lim, shape)
    elif kind == "glorot_normal":
        w = rng.standard_normal(shape) * math.sqrt(2.0 / (fan_in + fan_out))
    else:  # glorot_uniform
        lim = math.sqrt(6.0 / (fan_in + fan_out))
        w = rng.uniform(-lim, lim, shape)
    return w.astype(np.float32)


class Layer:
    """Base class. Subclasses set ``n_inputs`` (None = two or more) and implement the hooks."""
    n_inputs = 1
    view_output = False  # fwd returns a view of its input instead of writing ``y``

    def __init__(self, name=None, activation=None, alpha=0.01):
        if name is not None and (not isinstance(name, str) or not name or "/" in name):
            raise ValueError(f"{type(self).__name__}: name must be a non-empty string without '/', "
                             f"got {name!r}")
        self.name = name
        self.activation = _act_name(type(self).__name__, activation)
        self.alpha = float(alpha)
        self.params = []
        self.in_shapes = None
        self.shape = None
        self._inbound = None  # set when called on symbolic tensors (graph.py)

    # -- description ---------------------------------------------------------------------------
    def describe(self):
        """'Conv2D layer 'conv2d_1'' for error messages."""
        who = f" {self.name!r}" if self.name else ""
        return f"{type(self).__name__} layer{who}"

    def _err(self, in_shapes, msg):
        shapes = ", ".join(_fmt(s) for s in in_shapes)
        return ValueError(f"{self.describe()}: {msg} (input shape{'s' if len(in_shapes) > 1 else ''} "
                          f"{shapes}, batch axis excluded)")

    def _need_rank(self, in_shapes, ranks, what):
        for s in in_shapes:
            if len(s) not in ranks:
                raise self._err(in_shapes, f"expects {what}")

    def __call__(self, inputs):
        from .graph import symbolic_call
        return symbolic_call(self, inputs)

    def __repr__(self):
        return f"{type(self).__name__}(name={self.name!r})"

    # -- shapes and parameters -----------------------------------------------------------------
    def out_shape(self, in_shapes):
        raise NotImplementedError

    def build(self, in_shapes, rng):
        """Infer the output shape and create parameters (once)."""
        in_shapes = [tuple(int(d) for d in s) for s in in_shapes]
        self.shape = tuple(self.out_shape(in_shapes))
        self.in_shapes = in_shapes
        self.params = self._make_params(in_shapes, rng)
        return self.shape

    def _make_params(self, in_shapes, rng):
        return []

    def count_params(self):
        t = sum(p.value.size for p in self.params if p.trainable)
        return t, sum(p.value.size for p in self.params if not p.trainable)

    def _param(self, suffix, value, trainable=True):
        return Parameter(f"{self.name or type(self).__name__.lower()}/{suffix}", value, trainable)

    # -- executor hooks ------------------------------------------------------------------------
    def workspace(self, in_shapes, batch, need_gx, dev=CPU):
        ws = {}
        if self.activation is not None and self.activation not in _SIGN_ACTIVATIONS:
            ws["z"] = dev.empty((batch,) + self.shape)
        return ws

    def _pre(self, y, ws):
        """Where the layer's op writes: ``y`` itself, or the pre-activation buffer."""
        return ws.get("z", y)

    def _finish(self, y, ws):
        if self.activation is not None:
            z = ws.get("z", y)
            _act_forward(self.activation, z, y, self.alpha)
        return y

    def _unfinish(self, gy, y, ws):
        """Back-propagate the fused activation, in place on ``gy``."""
        if self.activation is not None:
            _act_backward(self.activation, gy, ws.get("z", y), y, gy, self.alpha)
        return gy

    def fwd(self, xs, y, ws, training):
        raise NotImplementedError

    def bwd(self, gy, xs, y, ws, gxs):
        raise NotImplementedError

    # -- the contract's standalone API (allocates) ----------------------------------------------
    def forward(self, xs, training=False):
        if isinstance(xs, np.ndarray):
            xs = [xs]
        xs = [C.check_array(f"{type(self).__name__}.forward", "xs", x, None) for x in xs]
        in_shapes = [tuple(x.shape[1:]) for x in xs]
        if self.shape is None:
            self.build(in_shapes, np.random.default_rng(0))
        elif in_shapes != self.in_shapes:
            raise self._err(in_shapes, f"was built for input shapes {self.in_shapes}")
        batch = xs[0].shape[0]
        y = np.empty((batch,) + self.shape, np.float32)
        ws = self.workspace(in_shapes, batch, [True] * len(xs))
        ws["dev"] = CPU
        ws["seed"] = getattr(self, "seed", None) or 0
        y = self.fwd(xs, y, ws, training)
        return y, (xs, y, ws)

    def backward(self, gy, ctx):
        xs, y, ws = ctx
        gy = C.check_shape(f"{type(self).__name__}.backward", "gy",
                           C.check_array(f"{type(self).__name__}.backward", "gy", gy, None), y.shape)
        gxs = [np.empty_like(x) for x in xs]
        self.bwd(gy.copy(), xs, y, ws, gxs)
        return gxs

    # -- configuration -------------------------------------------------------------------------
    def get_config(self):
        cfg = {"name": self.name}
        cfg.update(self._config())
        return cfg

    def _config(self):
        return {}

    @classmethod
    def from_config(cls, cfg):
        return cls(**cfg)


# ---------------------------------------------------------------------------------------------
# Convolutions


class Conv2D(Layer):
    """2-D cross-correlation on NCHW; weight (filters, C_in/groups, kH, kW), bias (filters,)."""
    _rank = 2

    def __init__(self, filters, kernel_size, strides=1, padding="valid", dilation=1, groups=1,
                 use_bias=True, activation=None, kernel_initializer="auto", name=None):
        super().__init__(name, activation)
        op = type(self).__name__
        self.filters = None if filters is None else C.as_int(op, "filters", filters, 1)
        self.kernel_size = C.as_tuple(op, "kernel_size", kernel_size, self._rank, 1)
        self.strides = C.as_tuple(op, "strides", strides, self._rank, 1)
        self.dilation = C.as_tuple(op, "dilation", dilation, self._rank, 1)
        self.groups = C.as_int(op, "groups", groups, 1)
        self.padding = padding.lower() if isinstance(padding, str) else padding
        self._pads = C.resolve_padding(op, self.padding, self.kernel_size, self.dilation)
        self.use_bias = bool(use_bias)
        if kernel_initializer not in INITIALIZERS:
            raise ValueError(f"{op}: kernel_initializer must be one of {INITIALIZERS}, "
                             f"got {kernel_initializer!r}")
        self.kernel_initializer = kernel_initializer

    def _channels(self, in_shapes):
        return self.filters

    def out_shape(self, in_shapes):
        r = self._rank
        self._need_rank(in_shapes, (r + 1,), f"a {r + 2}-D input (N, C, {'H, W' if r == 2 else 'L'})")
        c_in = in_shapes[0][0]
        f = self._channels(in_shapes)
        if c_in % self.groups or f % self.groups:
            raise self._err(in_shapes, f"groups={self.groups} must divide input channels {c_in} and "
                                       f"filters {f}")
        try:
            spatial = C.output_shape(type(self).__name__, in_shapes[0][1:], self.kernel_size,
                                     self.strides, self._pads, self.dilation)
        except ValueError as e:
            raise self._err(in_shapes, str(e).split(": ", 1)[1]) from None
        return (f,) + spatial

    def _make_params(self, in_shapes, rng):
        c_in = in_shapes[0][0]
        f = self.shape[0]
        wshape = (f, c_in // self.groups) + self.kernel_size
        rf = int(np.prod(self.kernel_size))
        kind = self.kernel_initializer
        if kind == "auto":
            kind = "he_normal" if self.activation in _SIGN_ACTIVATIONS else "glorot_uniform"
        w = _init_weight(rng, wshape, c_in // self.groups * rf, f // self.groups * rf, kind)
        params = [self._param("kernel", w)]
        if self.use_bias:
            params.append(self._param("bias", np.zeros(f, np.float32)))
        return params

    def _kw(self):
        s, d = self.strides, self.dilation
        pad = self.padding
        if self._rank == 1:
            s, d = s[0], d[0]
            pad = pad[0] if isinstance(pad, (tuple, list)) else pad
        return dict(stride=s, padding=pad, dilation=d, groups=self.groups)

    def fwd(self, xs, y, ws, training):
        b = self.params[1].value if self.use_bias else None
        fn = K.conv2d_forward if self._rank == 2 else K.conv1d_forward
        fn(xs[0], self.params[0].value, b, out=self._pre(y, ws), **self._kw())
        return self._finish(y, ws)

    def bwd(self, gy, xs, y, ws, gxs):
        self._unfinish(gy, y, ws)
        fn = K.conv2d_backward if self._rank == 2 else K.conv1d_backward
        gb = self.params[1].grad if self.use_bias else None
        fn(gy, xs[0], self.params[0].value, need_input_grad=gxs[0] is not None,
           need_bias_grad=self.use_bias, gx=gxs[0], gw=self.params[0].grad, gb=gb, **self._kw())

    def _config(self):
        return dict(filters=self.filters, kernel_size=list(self.kernel_size), strides=list(self.strides),
                    padding=self.padding if isinstance(self.padding, (str, int)) else list(self.padding),
                    dilation=list(self.dilation), groups=self.groups, use_bias=self.use_bias,
                    activation=self.activation, kernel_initializer=self.kernel_initializer)


class Conv1D(Conv2D):
    """1-D cross-correlation on (N, C, L); weight (filters, C_in/groups, k)."""
    _rank = 1


class DepthwiseConv2D(Conv2D):
    """One (or ``depth_multiplier``) kH x kW filters per input channel: Conv2D with groups = C_in."""

    def __init__(self, kernel_size, depth_multiplier=1, strides=1, padding="valid", dilation=1,
                 use_bias=True, activation=None, kernel_initializer="auto", name=None):
        super().__init__(None, kernel_size, strides, padding, dilation, 1, use_bias, activation,
                         kernel_initializer, name)
        self.depth_multiplier = C.as_int("DepthwiseConv2D", "depth_multiplier", depth_multiplier, 1)

    def _channels(self, in_shapes):
        return in_shapes[0][0] * self.depth_multiplier

    def out_shape(self, in_shapes):
        self._need_rank(in_shapes, (3,), "a 4-D input (N, C, H, W)")
        self.groups = in_shapes[0][0]
        return super().out_shape(in_shapes)

    def _config(self):
        cfg = super()._config()
        for k in ("filters", "groups"):
            cfg.pop(k)
        cfg["depth_multiplier"] = self.depth_multiplier
        return cfg


class FixedFilter(Conv2D):
    """Classic filters as a non-trainable first layer: each input channel is cross-correlated with
    each kernel (output channel c*K + k), "same" padding by default.

    ``kernels``: 2-D arrays, or names / (name, params) pairs resolved by ``edgecnn.filters.kernel``.
    Kernels of different sizes are zero-padded (centred) to the largest size.
    """

    def __init__(self, kernels, padding="same", name=None):
        ks = []
        for k in (kernels if isinstance(kernels, (list, tuple)) else [kernels]):
            if isinstance(k, str) or (isinstance(k, (list, tuple)) and k and isinstance(k[0], str)):
                from . import filters
                kname, kparams = (k, {}) if isinstance(k, str) else (k[0], dict(k[1]) if len(k) > 1 else {})
                k = filters.kernel(kname, **kparams)
            k = np.asarray(k, dtype=np.float32)
            if k.ndim != 2 or k.size == 0 or not np.all(np.isfinite(k)):
                raise ValueError(f"FixedFilter: kernels must be finite non-empty 2-D arrays, got shape "
                                 f"{k.shape}")
            ks.append(k)
        if not ks:
            raise ValueError("FixedFilter: kernels must not be empty")
        kh, kw = max(k.shape[0] for k in ks), max(k.shape[1] for k in ks)
        bank = np.zeros((len(ks), kh, kw), np.float32)
        for i, k in enumerate(ks):
            dh, dw = kh - k.shape[0], kw - k.shape[1]
            if dh % 2 or dw % 2:
                raise ValueError(f"FixedFilter: kernel {i} of shape {k.shape} cannot be centred in "
                                 f"{(kh, kw)}; give kernels of equal size or of the same parity")
            bank[i, dh // 2:dh // 2 + k.shape[0], dw // 2:dw // 2 + k.shape[1]] = k
        self.bank = bank
        super().__init__(len(ks), (kh, kw), 1, padding, 1, 1, False, None, "zeros", name)

    def _channels(self, in_shapes):
        return in_shapes[0][0] * len(self.bank)

    def out_shape(self, in_shapes):
        self._need_rank(in_shapes, (3,), "a 4-D input (N, C, H, W)")
        self.groups = in_shapes[0][0]
        return super().out_shape(in_shapes)

    def _make_params(self, in_shapes, rng):
        w = np.ascontiguousarray(np.tile(self.bank, (in_shapes[0][0], 1, 1))[:, None])
        return [self._param("kernel", w, trainable=False)]

    def workspace(self, in_shapes, batch, need_gx, dev=CPU):
        ws = super().workspace(in_shapes, batch, need_gx, dev)
        if need_gx[0]:
            ws["gw"] = dev.empty(self.params[0].value.shape)
        return ws

    def bwd(self, gy, xs, y, ws, gxs):
        if gxs[0] is None:
            return  # nothing trainable here, nothing upstream needs a gradient
        K.conv2d_backward(gy, xs[0], self.params[0].value, need_input_grad=True, need_bias_grad=False,
                          gx=gxs[0], gw=ws["gw"], **self._kw())

    def _config(self):
        return dict(kernels=self.bank.tolist(), padding=self.padding if isinstance(self.padding, (str, int))
                    else list(self.padding))


# ---------------------------------------------------------------------------------------------
# Pooling


class _Pool2D(Layer):
    def __init__(self, pool_size=2, strides=None, padding=0, name=None):
        super().__init__(name)
        op = type(self).__name__
        self.pool_size = C.as_tuple(op, "pool_size", pool_size, 2, 1)
        self.strides = self.pool_size if strides is None else C.as_tuple(op, "strides", strides, 2, 1)
        self.padding = C.as_tuple(op, "padding", padding, 2, 0)
        if any(2 * p > k for p, k in zip(self.padding, self.pool_size)):
            raise ValueError(f"{op}: padding {self.padding} must be at most half of pool_size "
                             f"{self.pool_size}")

    def out_shape(self, in_shapes):
        self._need_rank(in_shapes, (3,), "a 4-D input (N, C, H, W)")
        try:
            spatial = C.output_shape(type(self).__name__, in_shapes[0][1:], self.pool_size, self.strides,
                                     tuple((p, p) for p in self.padding), (1, 1))
        except ValueError as e:
            raise self._err(in_shapes, str(e).split(": ", 1)[1]) from None
        return (in_shapes[0][0],) + spatial

    def _kw(self):
        return dict(kernel_size=self.pool_size, stride=self.strides, padding=self.padding)

    def _config(self):
        return dict(pool_size=list(self.pool_size), strides=list(self.strides), padding=list(self.padding))


class MaxPool2D(_Pool2D):
    def workspace(self, in_shapes, batch, need_gx, dev=CPU):
        return {"argmax": dev.empty((batch,) + self.shape, np.int32)}

    def fwd(self, xs, y, ws, training):
        K.max_pool2d_forward(xs[0], out=y, argmax=ws["argmax"], **self._kw())
        return y

    def bwd(self, gy, xs, y, ws, gxs):
        if gxs[0] is not None:
            K.max_pool2d_backward(gy, ws["argmax"], xs[0].shape, gx=gxs[0])


class AvgPool2D(_Pool2D):
    def __init__(self, pool_size=2, strides=None, padding=0, count_include_pad=True, name=None):
        super().__init__(pool_size, strides, padding, name)
        self.count_include_pad = bool(count_include_pad)

    def fwd(self, xs, y, ws, training):
        K.avg_pool2d_forward(xs[0], count_include_pad=self.count_include_pad, out=y, **self._kw())
        return y

    def bwd(self, gy, xs, y, ws, gxs):
        if gxs[0] is not None:
            K.avg_pool2d_backward(gy, xs[0].shape, count_include_pad=self.count_include_pad, gx=gxs[0],
                                  **self._kw())

    def _config(self):
        return dict(super()._config(), count_include_pad=self.count_include_pad)


class L2Pool2D(_Pool2D):
    def fwd(self, xs, y, ws, training):
        K.l2_pool2d_forward(xs[0], out=y, **self._kw())
        return y

    def bwd(self, gy, xs, y, ws, gxs):
        if gxs[0] is not None:
            K.l2_pool2d_backward(gy, xs[0], y, gx=gxs[0], **self._kw())


class GlobalAvgPool2D(Layer):
    """(C, H, W) -> (C,): the mean over each channel's plane."""

    def __init__(self, name=None):
        super().__init__(name)

    def out_shape(self, in_shapes):
        self._need_rank(in_shapes, (3,), "a 4-D input (N, C, H, W)")
        return (in_shapes[0][0],)

    def fwd(self, xs, y, ws, training):
        K.global_avg_pool2d_forward(xs[0], out=y)
        return y

    def bwd(self, gy, xs, y, ws, gxs):
        if gxs[0] is not None:
            K.global_avg_pool2d_backward(gy, xs[0].shape, gx=gxs[0])


# ---------------------------------------------------------------------------------------------
# Dense, reshaping, regularisation, normalisation


class Dense(Layer):
    """y = x W^T + b on (N, in_features); weight (units, in_features)."""

    def __init__(self, units, activation=None, use_bias=True, kernel_initializer="auto", name=None):
        super().__init__(name, activation)
        self.units = C.as_int("Dense", "units", units, 1)
        self.use_bias = bool(use_bias)
        if kernel_initializer not in INITIALIZERS:
            raise ValueError(f"Dense: kernel_initializer must be one of {INITIALIZERS}, "
                             f"got {kernel_initializer!r}")
        self.kernel_initializer = kernel_initializer

    def out_shape(self, in_shapes):
        self._need_rank(in_shapes, (1,), "a flat input (N, features); add Flatten() or "
                                         "GlobalAvgPool2D() before it")
        return (self.units,)

    def _make_params(self, in_shapes, rng):
        fan_in = in_shapes[0][0]
        kind = self.kernel_initializer
        if kind == "auto":
            kind = "he_normal" if self.activation in _SIGN_ACTIVATIONS else "glorot_uniform"
        params = [self._param("kernel", _init_weight(rng, (self.units, fan_in), fan_in, self.units, kind))]
        if self.use_bias:
            params.append(self._param("bias", np.zeros(self.units, np.float32)))
        return params

    def fwd(self, xs, y, ws, training):
        b = self.params[1].value if self.use_bias else None
        K.dense_forward(xs[0], self.params[0].value, b, out=self._pre(y, ws))
        return self._finish(y, ws)

    def bwd(self, gy, xs, y, ws, gxs):
        self._unfinish(gy, y, ws)
        gb = self.params[1].grad if self.use_bias else None
        K.dense_backward(gy, xs[0], self.params[0].value, need_input_grad=gxs[0] is not None,
                         need_bias_grad=self.use_bias, gx=gxs[0], gw=self.params[0].grad, gb=gb)

    def _config(self):
        return dict(units=self.units, activation=self.activation, use_bias=self.use_bias,
                    kernel_initializer=self.kernel_initializer)


class Flatten(Layer):
    """(C, H, W) -> (C*H*W,) as a view: no copy forward, none backward when the executor can alias."""
    view_output = True

    def __init__(self, name=None):
        super().__init__(name)

    def out_shape(self, in_shapes):
        return (int(np.prod(in_shapes[0])),)

    def fwd(self, xs, y, ws, training):
        return xs[0].reshape(xs[0].shape[0], -1)

    def bwd(self, gy, xs, y, ws, gxs):
        if gxs[0] is not None and not ws.get("aliased"):
            ws["dev"].copyto(gxs[0].reshape(gy.shape), gy)


class Dropout(Layer):
    """Inverted dropout; the mask comes from a seed the model derives per step (reproducible)."""

    def __init__(self, rate, seed=None, name=None):
        super().__init__(name)
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0.0 <= rate < 1.0:
            raise ValueError(f"Dropout: rate must be a number in [0, 1), got {rate!r}")
        self.rate = float(rate)
        self.seed = seed

    def out_shape(self, in_shapes):
        return in_shapes[0]

    def workspace(self, in_shapes, batch, need_gx, dev=CPU):
        return {"mask": dev.empty((batch,) + self.shape, np.uint8), "training": False, "seed": 0}

    def fwd(self, xs, y, ws, training):
        ws["training"] = bool(training) and self.rate > 0.0
        if not ws["training"]:
            return xs[0]  # identity at inference: no copy
        K.dropout_forward(xs[0], self.rate, ws["seed"], training=True, out=y, mask=ws["mask"])
        return y

    def bwd(self, gy, xs, y, ws, gxs):
        if gxs[0] is None:
            return
        if ws["training"]:
            K.dropout_backward(gy, ws["mask"], self.rate, gx=gxs[0])
        else:
            ws["dev"].copyto(gxs[0], gy)

    def _config(self):
        return dict(rate=self.rate, seed=self.seed)


class BatchNorm2D(Layer):
    """Per-channel batch normalisation of (C, H, W) (or (C,) features, seen as (C, 1, 1)).

    gamma/beta are trainable; running_mean/running_var are non-trainable parameters (PyTorch
    semantics: momentum 0.1, unbiased running variance). ``activation=`` fuses e.g. ReLU after it.
    """

    def __init__(self, momentum=0.1, eps=1e-5, activation=None, name=None):
        super().__init__(name, activation)
        if not (isinstance(momentum, (int, float)) and 0.0 <= momentum <= 1.0):
            raise ValueError(f"BatchNorm2D: momentum must be in [0, 1], got {momentum!r}")
        if not (isinstance(eps, (int, float)) and eps > 0):
            raise ValueError(f"BatchNorm2D: eps must be > 0, got {eps!r}")
        self.momentum, self.eps = float(momentum), float(eps)

    def out_shape(self, in_shapes):
        self._need_rank(in_shapes, (1, 3), "a 4-D input (N, C, H, W) or 2-D features (N, C)")
        return in_shapes[0]

    def _make_params(self, in_shapes, rng):
        c = in_shapes[0][0]
        return [self._param("gamma", np.ones(c, np.float32)), self._param("beta", np.zeros(c, np.float32)),
                self._param("running_mean", np.zeros(c, np.float32), trainable=False),
                self._param("running_var", np.ones(c, np.float32), trainable=False)]

    def workspace(self, in_shapes, batch, need_gx, dev=CPU):
        ws = super().workspace(in_shapes, batch, need_gx, dev)
        c = self.shape[0]
        ws.update(save_mean=dev.empty((c,)), save_invstd=dev.empty((c,)), training=False)
        if not need_gx[0]:
            ws["gx"] = dev.empty((batch,) + self.shape)
        return ws

    @staticmethod
    def _4d(a):
        return a if a.ndim == 4 else a.reshape(a.shape[0], a.shape[1], 1, 1)

    def fwd(self, xs, y, ws, training):
        g, b, rm, rv = (p.value for p in self.params)
        ws["training"] = bool(training)
        relu = self.activation == "relu"  # fused into the kernels: two passes over y fewer
        K.batchnorm2d_forward(self._4d(xs[0]), g, b, rm, rv, training=bool(training),
                              momentum=self.momentum, eps=self.eps, out=self._4d(self._pre(y, ws)),
                              save_mean=ws["save_mean"], save_invstd=ws["save_invstd"], relu=relu)
        return y if relu else self._finish(y, ws)

    def bwd(self, gy, xs, y, ws, gxs):
        if not ws["training"]:
            raise RuntimeError(f"{self.describe()}: backward needs a forward with training=True")
        relu = self.activation == "relu"
        if not relu:
            self._unfinish(gy, y, ws)
        gx = gxs[0] if gxs[0] is not None else ws["gx"]
        K.batchnorm2d_backward(self._4d(gy), self._4d(xs[0]), self.params[0].value, ws["save_mean"],
                               ws["save_invstd"], gx=self._4d(gx), ggamma=self.params[0].grad,
                               gbeta=self.params[1].grad, relu_y=self._4d(y) if relu else None)

    def _config(self):
        return dict(momentum=self.momentum, eps=self.eps, activation=self.activation)


class Activation(Layer):
    """An activation as its own layer: relu, leaky_relu, sigmoid, tanh, softmax, log_softmax, linear."""

    def __init__(self, activation, alpha=0.01, name=None):
        if activation is None:
            raise ValueError(f"Activation: activation must be one of {', '.join(ACTIVATIONS)}, got None")
        super().__init__(name, activation, alpha)
        self.view_output = self.activation is None  # linear: identity view

    def out_shape(self, in_shapes):
        if self.activation in ("softmax", "log_softmax"):
            self._need_rank(in_shapes, (1,), f"a 2-D input (N, K) for {self.activation}")
        return in_shapes[0]

    def workspace(self, in_shapes, batch, need_gx, dev=CPU):
        return {}

    def fwd(self, xs, y, ws, training):
        if self.activation is None:
            return xs[0]
        _act_forward(self.activation, xs[0], y, self.alpha)
        return y

    def bwd(self, gy, xs, y, ws, gxs):
        if gxs[0] is None:
            return
        if self.activation is None:
            if not ws.get("aliased"):
                ws["dev"].copyto(gxs[0], gy)
        else:
            _act_backward(self.activation, gy, xs[0], y, gxs[0], self.alpha)

    def _config(self):
        return dict(activation=self.activation or "linear", alpha=self.alpha)


# ---------------------------------------------------------------------------------------------
# Merges


class Add(Layer):
    """Element-wise sum of two or more tensors of the same shape (residual blocks)."""
    n_inputs = None

    def __init__(self, activation=None, name=None):
        super().__init__(name, activation)

    def out_shape(self, in_shapes):
        if len(in_shapes) < 2:
            raise self._err(in_shapes, "needs at least two inputs")
        if any(s != in_shapes[0] for s in in_shapes):
            raise self._err(in_shapes, "needs inputs of the same shape")
        return in_shapes[0]

    def fwd(self, xs, y, ws, training):
        z, dev = self._pre(y, ws), ws["dev"]
        dev.add(xs[0], xs[1], z)
        for x in xs[2:]:
            dev.add(z, x, z)
        return self._finish(y, ws)

    def bwd(self, gy, xs, y, ws, gxs):
        self._unfinish(gy, y, ws)
        copyto = ws["dev"].copyto
        for gx in gxs:
            if gx is not None:
                copyto(gx, gy)

    def _config(self):
        return dict(activation=self.activation)


class Concatenate(Layer):
    """Concatenation along ``axis`` (counted with the batch axis: 1 = channels in NCHW)."""
    n_inputs = None

    def __init__(self, axis=1, name=None):
        super().__init__(name)
        if isinstance(axis, bool) or not isinstance(axis, int) or axis == 0:
            raise ValueError(f"Concatenate: axis must be a non-zero int (0 is the batch axis), got {axis!r}")
        self.axis = axis

    def _ax(self, rank):
        a = self.axis if self.axis > 0 else rank + 1 + self.axis
        return a

    def out_shape(self, in_shapes):
        if len(in_shapes) < 2:
            raise self._err(in_shapes, "needs at least two inputs")
        rank = len(in_shapes[0])
        a = self._ax(rank)
        if not 1 <= a <= rank or any(len(s) != rank for s in in_shapes):
            raise self._err(in_shapes, f"axis {self.axis} needs inputs of equal rank with that axis")
        rest = [s[:a - 1] + s[a:] for s in in_shapes]
        if any(r != rest[0] for r in rest):
            raise self._err(in_shapes, f"needs inputs whose shapes agree except along axis {self.axis}")
        s = list(in_shapes[0])
        s[a - 1] = sum(t[a - 1] for t in in_shapes)
        return tuple(s)

    def workspace(self, in_shapes, batch, need_gx, dev=CPU):
        a = self._ax(len(in_shapes[0]))
        if dev.is_cuda:
            # device arrays have no slice assignment: view every tensor as (outer, C_axis, inner) and
            # use the channel-block copy kernels
            outer = batch * int(np.prod(in_shapes[0][:a - 1], dtype=np.int64))
            inner = int(np.prod(in_shapes[0][a:], dtype=np.int64))
            return {"cuda3": [(outer, s[a - 1], inner) for s in in_shapes],
                    "cuda3_out": (outer, self.shape[a - 1], inner)}
        slices, start = [], 0
        for s in in_shapes:
            slices.append((slice(None),) * a + (slice(start, start + s[a - 1]),))
            start += s[a - 1]
        return {"slices": slices}

    def fwd(self, xs, y, ws, training):
        if "cuda3" in ws:
            from .kernels.cuda import tensor
            tensor.concat_channels([x.reshape(s) for x, s in zip(xs, ws["cuda3"])], y.reshape(ws["cuda3_out"]))
            return y
        for x, sl in zip(xs, ws["slices"]):
            y[sl] = x
        return y

    def bwd(self, gy, xs, y, ws, gxs):
        if "cuda3" in ws:
            self._split_cuda(gy, ws, gxs)
            return
        for gx, sl in zip(gxs, ws["slices"]):
            if gx is not None:
                gx[...] = gy[sl]

    @staticmethod
    def _split_cuda(gy, ws, gxs):
        # tensor.split_channels wants every slice; an input without a gradient (None) is skipped here
        from .kernels.cuda import _launch, tensor
        g3 = gy.reshape(ws["cuda3_out"])
        off = 0
        for gx, s in zip(gxs, ws["cuda3"]):
            if gx is not None:
                tensor.take_channels_cuda[_launch.grid1d(gx.size)](g3, off, gx.reshape(s))
            off += s[1]

    def _config(self):
        return dict(axis=self.axis)


LAYERS = {cls.__name__: cls for cls in (Conv2D, Conv1D, DepthwiseConv2D, FixedFilter, MaxPool2D, AvgPool2D,
                                        L2Pool2D, GlobalAvgPool2D, Dense, Flatten, Dropout, BatchNorm2D,
                                        Activation, Add, Concatenate)}
# Keras-style aliases
MaxPooling2D, AveragePooling2D, GlobalAveragePooling2D, BatchNormalization = (MaxPool2D, AvgPool2D,
                                                                             GlobalAvgPool2D, BatchNorm2D)
