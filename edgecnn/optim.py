"""Optimizers (SGD, Adam, AdamW) with PyTorch's update rules, and learning-rate schedules.

Updates run as Numba kernels, in place, in float32 over each parameter's flat view; state buffers
are allocated at construction so ``step()`` allocates nothing. Scalars are computed in Python
(float64, as PyTorch does) and passed to the kernels as float32.

Parameters on a CUDA device (``model.to("cuda")``) are updated by the CUDA twins
(edgecnn.kernels.cuda.optim) and the state lives on the device too; ``state_dict()`` still returns
NumPy arrays and ``load_state_dict`` copies them in, so checkpoints do not depend on the device. An
optimizer made before ``model.to(...)`` moves its state to the parameters' device at its next step.
"""
import math

import numpy as np
from numba import prange

from . import device as D
from ._jit import njit
from .kernels import _common as C

_PARALLEL_MIN = 1 << 17  # below this a parameter is updated on one thread (waking the pool costs more:
# vectorized Adam on 48,000 values took 25-29 us on one thread, 16-28 on two; 120,000: 67-71 vs 38-60)
_F = np.float32
# State values decaying toward zero (momentum and Adam moments of weights whose gradient stays 0, such as
# dead units) become float32 subnormals after a few hundred steps, and subnormal arithmetic is 10-100x
# slower on x86. Below this they are flushed to 0: their effect on an update is < 1e-22 of lr.
FLUSH_BELOW = _F(1e-30)


# -- kernels: a serial range body and a parallel driver over chunks -------------------------------------

# The updates run in blocks of _BLOCK elements, one loop per array written: a loop writing several of
# the arrays needs more runtime overlap checks than LLVM makes (Numba cannot mark arrays noalias), and
# ran scalar (Adam: 2.4 ns per element). The block keeps the second loop's reads in L1.
_BLOCK = 1024


@njit
def _sgd_range(p, g, buf, lo, hi, lr, momentum, one_m_damp, wd, nesterov, first):
    for b0 in range(lo, hi, _BLOCK):
        n = min(hi, b0 + _BLOCK) - b0
        ps, gs, bs = p[b0:b0 + n], g[b0:b0 + n], buf[b0:b0 + n]
        if momentum != 0:
            for i in range(n):
                d = gs[i] + wd * ps[i]
                b = d if first else momentum * bs[i] + one_m_damp * d
                bs[i] = b if abs(b) >= FLUSH_BELOW else _F(0.0)
            if nesterov:
                for i in range(n):
                    ps[i] = ps[i] - lr * ((gs[i] + wd * ps[i]) + momentum * bs[i])
            else:
                for i in range(n):
                    ps[i] = ps[i] - lr * bs[i]
        else:
            for i in range(n):
                ps[i] = ps[i] - lr * (gs[i] + wd * ps[i])


@njit(parallel=True)
def _sgd_par(p, g, buf, lr, momentum, one_m_damp, wd, nesterov, first, chunks):
    n = p.size
    step = (n + chunks - 1) // chunks
    for c in prange(chunks):
        _sgd_range(p, g, buf, c * step, min(n, (c + 1) * step), lr, momentum, one_m_damp, wd, nesterov, first)


@njit
def _adam_range(p, g, m, v, lo, hi, b1, one_m_b1, b2, one_m_b2, step_size, inv_sqrt_bc2, eps, wd, decay):
    for b0 in range(lo, hi, _BLOCK):
        n = min(hi, b0 + _BLOCK) - b0
        ps, gs, ms, vs = p[b0:b0 + n], g[b0:b0 + n], m[b0:b0 + n], v[b0:b0 + n]
        for i in range(n):
            gi = gs[i] + wd * ps[i]  # L2 (Adam's weight_decay); wd = 0 for AdamW
            mi = b1 * ms[i] + one_m_b1 * gi
            ms[i] = mi if abs(mi) >= FLUSH_BELOW else _F(0.0)
        for i in range(n):
            gi = gs[i] + wd * ps[i]
            vi = b2 * vs[i] + one_m_b2 * gi * gi
            vs[i] = vi if vi >= FLUSH_BELOW else _F(0.0)
        for i in range(n):
            # decay = 1 - lr * weight_decay for AdamW (decoupled), 1 for Adam
            ps[i] = ps[i] * decay - step_size * ms[i] / (np.sqrt(vs[i]) * inv_sqrt_bc2 + eps)


@njit(parallel=True)
def _adam_par(p, g, m, v, b1, one_m_b1, b2, one_m_b2, step_size, inv_sqrt_bc2, eps, wd, decay, chunks):
    n = p.size
    step = (n + chunks - 1) // chunks
    for c in prange(chunks):
        _adam_range(p, g, m, v, c * step, min(n, (c + 1) * step), b1, one_m_b1, b2, one_m_b2, step_size,
                    inv_sqrt_bc2, eps, wd, decay)


# -- optimizers --------------------------------------------------------------------------------------------

def _num(op, name, value, lo=0.0, hi=math.inf, lo_open=False):
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise TypeError(f"{op}: {name} must be a number, got {value!r}")
    value = float(value)
    if not (value > lo if lo_open else value >= lo) or not value <= hi or not math.isfinite(value):
        raise ValueError(f"{op}: {name} must be in {'(' if lo_open else '['}{lo}, {hi}], got {value}")
    return value


class Optimizer:
    """Base: holds trainable parameters (objects with ``.name``, ``.value``, ``.grad``) and their state."""
    _state_names = ()

    def __init__(self, params, lr):
        op = type(self).__name__
        params = [p for p in params if getattr(p, "trainable", True) and getattr(p, "grad", None) is not None]
        if not params:
            raise ValueError(f"{op}: no trainable parameters given")
        names = [p.name for p in params]
        if len(set(names)) != len(names):
            raise ValueError(f"{op}: parameter names must be unique")
        self.params = params
        self.lr = _num(op, "lr", lr)
        self.step_count = 0
        self.state = None
        self._bind()
        self._chunks = 8

    def _bind(self):
        """Check the parameters, note their device, make flat views (the kernels see 1-D arrays) and put
        the state on that device (zeros at construction, moved when the parameters have moved)."""
        op = type(self).__name__
        devs = set()
        for p in self.params:
            for a, what in ((p.value, "value"), (p.grad, "grad")):
                if isinstance(a, np.ndarray):
                    if a.dtype != np.float32 or not a.flags.c_contiguous:
                        raise TypeError(f"{op}: parameter {p.name} {what} must be a C-contiguous float32 array")
                    devs.add("cpu")
                elif C.is_device_array(a):
                    C.check_array(op, f"parameter {p.name} {what}", a)
                    devs.add("cuda")
                else:
                    raise TypeError(f"{op}: parameter {p.name} {what} must be a C-contiguous float32 array, "
                                    f"got {type(a).__name__}")
            if tuple(p.grad.shape) != tuple(p.value.shape):
                raise ValueError(f"{op}: parameter {p.name} grad shape {tuple(p.grad.shape)} != value shape "
                                 f"{tuple(p.value.shape)}")
        if len(devs) > 1:
            raise TypeError(f"{op}: parameters must all be on one device, got some on the cpu and some on "
                            f"cuda (call model.to(...) before making the optimizer)")
        old = getattr(self, "_dev", None)
        dev = self._dev = D.get(devs.pop())
        self._cuda = None
        if dev.is_cuda:
            from .kernels.cuda import optim as cuda_optim
            self._cuda = cuda_optim
        self._flat = [(p.value.reshape(p.value.size), p.grad.reshape(p.grad.size)) for p in self.params]
        self._bound = [(p.value, p.grad) for p in self.params]
        if self.state is None:
            self.state = {p.name: {s: dev.zeros((p.value.size,)) for s in self._state_names}
                          for p in self.params}
        elif old is not dev:
            self.state = {n: {s: dev.from_host(old.to_host(a)) for s, a in d.items()}
                          for n, d in self.state.items()}

    def _follow(self):
        """Rebind when ``model.to(...)`` replaced the parameter arrays since the last step."""
        for p, (v, g) in zip(self.params, self._bound):
            if p.value is not v or p.grad is not g:
                self._bind()
                return

    @property
    def device(self):
        return self._dev.name

    def zero_grad(self):
        self._follow()
        for p in self.params:
            self._dev.fill(p.grad, 0)

    def _hyper(self):
        return {}

    def state_dict(self):
        """{"type", "hyper" (JSON-able), "step", "state": {"<param>.<buffer>": float32 array}}."""
        return {"type": type(self).__name__, "hyper": dict(self._hyper(), lr=self.lr), "step": self.step_count,
                "state": {f"{n}.{s}": self._dev.to_host(a).reshape(self._shape(n)) for n, d in self.state.items()
                          for s, a in d.items()}}

    def _shape(self, name):
        return next(tuple(p.value.shape) for p in self.params if p.name == name)

    def load_state_dict(self, sd):
        op = f"{type(self).__name__}.load_state_dict"
        if not isinstance(sd, dict) or sd.get("type") != type(self).__name__:
            raise ValueError(f"{op}: expects a state_dict of a {type(self).__name__}, got type "
                             f"{sd.get('type') if isinstance(sd, dict) else type(sd).__name__!r}")
        state = sd.get("state", {})
        want = {f"{n}.{s}": self._shape(n) for n, d in self.state.items() for s in d}
        if set(state) != set(want):
            raise ValueError(f"{op}: buffer names do not match: missing {sorted(set(want) - set(state))}, "
                             f"unexpected {sorted(set(state) - set(want))}")
        for k, shape in want.items():
            a = state[k]
            if not isinstance(a, np.ndarray) or a.dtype != np.float32 or a.shape != shape:
                raise ValueError(f"{op}: {k} must be a float32 array of shape {shape}, got "
                                 f"{getattr(a, 'dtype', type(a).__name__)} {getattr(a, 'shape', '')}")
        step = sd.get("step")
        if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 0:
            raise ValueError(f"{op}: step must be an int >= 0, got {step!r}")
        hyper = dict(sd.get("hyper", {}))
        self.lr = _num(op, "lr", hyper.pop("lr", self.lr))
        self._set_hyper(hyper)
        self._follow()
        for k in want:
            n, s = k.rsplit(".", 1)
            self._dev.put(self.state[n][s], state[k].reshape(-1))
        self.step_count = int(step)

    def _set_hyper(self, hyper):
        for k, v in hyper.items():
            setattr(self, k, tuple(v) if isinstance(v, list) else v)

    def _par(self, n):
        return n >= _PARALLEL_MIN


class SGD(Optimizer):
    """PyTorch's SGD: d = g + wd*p; buf = d (first step) else momentum*buf + (1-dampening)*d;
    d = d + momentum*buf (Nesterov) or buf; p -= lr*d."""
    _state_names = ("momentum_buffer",)

    def __init__(self, params, lr=0.01, momentum=0.0, nesterov=False, weight_decay=0.0, dampening=0.0):
        super().__init__(params, lr)
        self.momentum = _num("SGD", "momentum", momentum)
        self.dampening = _num("SGD", "dampening", dampening)
        self.weight_decay = _num("SGD", "weight_decay", weight_decay)
        self.nesterov = bool(nesterov)
        if self.nesterov and (self.momentum <= 0 or self.dampening != 0):
            raise ValueError("SGD: nesterov needs momentum > 0 and dampening = 0")

    def _hyper(self):
        return dict(momentum=self.momentum, dampening=self.dampening, weight_decay=self.weight_decay,
                    nesterov=self.nesterov)

    def step(self):
        self._follow()
        first = self.step_count == 0
        args = (_F(self.lr), _F(self.momentum), _F(1.0 - self.dampening), _F(self.weight_decay),
                self.nesterov, first)
        for p, (v, g) in zip(self.params, self._flat):
            buf = self.state[p.name]["momentum_buffer"]
            if self._cuda is not None:
                self._cuda.sgd_update(v, g, buf, *args)
            elif self._par(v.size):
                _sgd_par(v, g, buf, *args, self._chunks)
            else:
                _sgd_range(v, g, buf, 0, v.size, *args)
        self.step_count += 1


class Adam(Optimizer):
    """PyTorch's Adam (weight_decay is L2 added to the gradient)."""
    _state_names = ("exp_avg", "exp_avg_sq")
    _decoupled = False

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        super().__init__(params, lr)
        op = type(self).__name__
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ValueError(f"{op}: betas must be a pair, got {betas!r}")
        self.betas = (_num(op, "betas[0]", betas[0], 0.0, 1.0), _num(op, "betas[1]", betas[1], 0.0, 1.0))
        if self.betas[0] >= 1.0 or self.betas[1] >= 1.0:
            raise ValueError(f"{op}: betas must be < 1, got {betas!r}")
        self.eps = _num(op, "eps", eps, lo_open=True)
        self.weight_decay = _num(op, "weight_decay", weight_decay)

    def _hyper(self):
        return dict(betas=list(self.betas), eps=self.eps, weight_decay=self.weight_decay)

    def step(self):
        self._follow()
        self.step_count += 1
        t = self.step_count
        b1, b2 = self.betas
        bc1, bc2 = 1.0 - b1 ** t, 1.0 - b2 ** t
        wd, decay = (0.0, 1.0 - self.lr * self.weight_decay) if self._decoupled else (self.weight_decay, 1.0)
        args = (_F(b1), _F(1.0 - b1), _F(b2), _F(1.0 - b2), _F(self.lr / bc1), _F(1.0 / math.sqrt(bc2)),
                _F(self.eps), _F(wd), _F(decay))
        for p, (v, g) in zip(self.params, self._flat):
            st = self.state[p.name]
            if self._cuda is not None:
                self._cuda.adam_update(v, g, st["exp_avg"], st["exp_avg_sq"], *args)
            elif self._par(v.size):
                _adam_par(v, g, st["exp_avg"], st["exp_avg_sq"], *args, self._chunks)
            else:
                _adam_range(v, g, st["exp_avg"], st["exp_avg_sq"], 0, v.size, *args)


class AdamW(Adam):
    """PyTorch's AdamW: p *= 1 - lr*weight_decay, then the Adam step without L2."""
    _decoupled = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01):
        super().__init__(params, lr, betas, eps, weight_decay)


OPTIMIZERS = {"sgd": SGD, "adam": Adam, "adamw": AdamW}


def make_optimizer(name, params, **kw):
    try:
        cls = OPTIMIZERS[name.lower()]
    except (KeyError, AttributeError):
        raise ValueError(f"make_optimizer: name must be one of {', '.join(OPTIMIZERS)}, got {name!r}") from None
    return cls(params, **kw)


# -- schedules ---------------------------------------------------------------------------------------------

class Schedule:
    """A callable ``step -> lr`` (step counted from 0). ``get_config()`` rebuilds it via make_schedule."""

    def __init__(self, name, base_lr, total_steps, warmup_steps, fn, kw):
        self.name, self.base_lr, self.total_steps, self.warmup_steps = name, base_lr, total_steps, warmup_steps
        self._fn, self._kw = fn, kw

    def __call__(self, step):
        step = int(step)
        if step < 0:
            raise ValueError(f"schedule {self.name}: step must be >= 0, got {step}")
        if self.name != "one_cycle" and step < self.warmup_steps:
            return self.base_lr * (step + 1) / self.warmup_steps
        return float(self._fn(step))

    def get_config(self):
        return dict(name=self.name, base_lr=self.base_lr, total_steps=self.total_steps,
                    warmup_steps=self.warmup_steps, **self._kw)

    def __repr__(self):
        return f"Schedule({self.get_config()})"


SCHEDULES = ("constant", "step", "cosine", "one_cycle")


def make_schedule(name, base_lr, total_steps, warmup_steps=0, **kw):
    """Learning rate per step.

    * constant: base_lr.
    * step: base_lr * gamma ** ((step - warmup) // step_size); kw step_size (default total/3), gamma (0.1).
    * cosine: min_lr + (base_lr - min_lr) * (1 + cos(pi * t / T)) / 2 after warm-up; kw min_lr (0).
    * one_cycle (PyTorch OneCycleLR, cosine annealing): from base_lr/div_factor up to base_lr over the
      first warmup_steps (or pct_start * total), then down to base_lr/(div_factor*final_div_factor);
      kw pct_start (0.3), div_factor (25), final_div_factor (1e4).
    Every schedule except one_cycle ramps linearly from base_lr/warmup to base_lr over warmup_steps.
    Steps past total_steps keep the final value.
    """
    op = "make_schedule"
    if name not in SCHEDULES:
        raise ValueError(f"{op}: name must be one of {', '.join(SCHEDULES)}, got {name!r}")
    base_lr = _num(op, "base_lr", base_lr)
    if isinstance(total_steps, bool) or not isinstance(total_steps, (int, np.integer)) or total_steps < 1:
        raise ValueError(f"{op}: total_steps must be an int >= 1, got {total_steps!r}")
    if isinstance(warmup_steps, bool) or not isinstance(warmup_steps, (int, np.integer)) \
            or not 0 <= warmup_steps < total_steps:
        raise ValueError(f"{op}: warmup_steps must be an int in [0, total_steps), got {warmup_steps!r}")
    total_steps, warmup = int(total_steps), int(warmup_steps)
    allowed = {"constant": (), "step": ("step_size", "gamma"), "cosine": ("min_lr",),
               "one_cycle": ("pct_start", "div_factor", "final_div_factor")}[name]
    extra = sorted(set(kw) - set(allowed))
    if extra:
        raise ValueError(f"{op}: schedule {name!r} takes {list(allowed) or 'no options'}, got {extra}")
    span = total_steps - warmup

    if name == "constant":
        def fn(s):
            return base_lr
    elif name == "step":
        step_size = kw.setdefault("step_size", max(1, span // 3))
        if isinstance(step_size, bool) or not isinstance(step_size, (int, np.integer)) or step_size < 1:
            raise ValueError(f"{op}: step_size must be an int >= 1, got {step_size!r}")
        gamma = kw.setdefault("gamma", 0.1)
        _num(op, "gamma", gamma)

        def fn(s):
            return base_lr * gamma ** ((s - warmup) // step_size)
    elif name == "cosine":
        min_lr = _num(op, "min_lr", kw.setdefault("min_lr", 0.0))

        def fn(s):
            t = min(s - warmup, span)
            return min_lr + (base_lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * t / span))
    else:
        pct = _num(op, "pct_start", kw.setdefault("pct_start", 0.3), 0.0, 1.0, lo_open=True)
        div = _num(op, "div_factor", kw.setdefault("div_factor", 25.0), lo_open=True)
        fdiv = _num(op, "final_div_factor", kw.setdefault("final_div_factor", 1e4), lo_open=True)
        # PyTorch's phase ends: step (pct*total - 1) peaks, step (total - 1) ends at the minimum
        up = float(warmup - 1) if warmup > 0 else float(pct * total_steps) - 1.0
        end = float(total_steps - 1)
        lo, hi, final = base_lr / div, base_lr, base_lr / (div * fdiv)

        def cos_anneal(a, b, frac):
            return b + (a - b) / 2.0 * (math.cos(math.pi * frac) + 1.0)

        def fn(s):
            s = min(s, total_steps - 1)
            if s <= up:
                return cos_anneal(lo, hi, s / up) if up > 0 else hi
            return cos_anneal(hi, final, (s - up) / (end - up)) if end > up else final
    return Schedule(name, base_lr, total_steps, warmup, fn, kw)
