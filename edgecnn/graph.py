"""The executor: a DAG of layers built with a Keras-like functional API, run on planned buffers.

* Building (``Model(x, y)``) orders the layers topologically, names them, infers shapes (errors name
  the layer and the shapes) and creates the parameters from a seeded generator.
* Planning (first ``forward`` at a batch size) allocates every activation, gradient and workspace
  buffer once; the plan is cached per batch size, so a training step allocates none of them.
* Devices: ``model.to("cuda")`` moves parameters and gradients to the GPU; plans then allocate there,
  so parameters, activations, gradients (and the optimizer's state) stay on the device for a whole
  training step. Host batches are copied into a planned input buffer; ``predict`` and ``state_dict``
  return NumPy arrays. The device is decided once per plan: the CPU path calls NumPy directly.
* Backward walks the order in reverse. Where a tensor fans out, the first consumer (in backward order)
  writes its gradient buffer and the others write a scratch buffer that is then added in. Layers whose
  inputs need no gradient (the first layer) skip the input gradient.
* Fusion: a CPU plan runs BatchNorm2D (+ ReLU) followed by 2x2 max pooling as one op
  (edgecnn.fusion); the plan holds the call each node makes (``fwd_ops`` / ``bwd_ops``).
"""
import re
from collections import OrderedDict

import numpy as np

from . import device as D
from . import fusion as F
from . import layers as L
from .kernels import _common as C

_MAX_PLANS = 4  # plans cached per model (training batch, last partial batch, predict batch, ...)


class SymbolicTensor:
    """The output of a layer in a graph under construction: a shape (batch axis excluded)."""
    __slots__ = ("shape", "layer", "inputs")

    def __init__(self, shape, layer, inputs):
        self.shape, self.layer, self.inputs = tuple(shape), layer, list(inputs)

    def __repr__(self):
        who = "Input" if self.layer is None else self.layer.describe()
        return f"SymbolicTensor(shape=(None, {', '.join(map(str, self.shape))}), from {who})"


def Input(shape, name=None):
    """A model input of ``shape`` (batch axis excluded), e.g. ``Input((1, 28, 28))``."""
    shape = tuple(shape) if isinstance(shape, (tuple, list)) else (shape,)
    shape = C.as_tuple("Input", "shape", shape, len(shape), 1) if shape else ()
    if not shape:
        raise ValueError("Input: shape must have at least one dimension, got ()")
    t = SymbolicTensor(shape, None, [])
    t.inputs = name or "input"  # an input tensor keeps its name where others keep their inputs
    return t


def symbolic_call(layer, inputs):
    single = isinstance(inputs, SymbolicTensor)
    ins = [inputs] if single else list(inputs) if isinstance(inputs, (list, tuple)) else None
    if ins is None or not ins or not all(isinstance(t, SymbolicTensor) for t in ins):
        raise TypeError(f"{layer.describe()}: call it on the output of Input(...) or of another layer "
                        f"(or a list of them), got {type(inputs).__name__}")
    if layer.n_inputs == 1 and len(ins) != 1:
        raise ValueError(f"{layer.describe()}: takes one input, got {len(ins)}")
    if layer._inbound is not None:
        raise ValueError(f"{layer.describe()}: this layer object is already part of a graph; create a "
                         f"new layer (weight sharing is not supported)")
    shape = layer.out_shape([t.shape for t in ins])  # raises naming the layer and the shapes
    layer._inbound = ins
    return SymbolicTensor(shape, layer, ins)


def _snake(name):
    """Keras's layer naming: Conv2D -> conv2d, MaxPool2D -> max_pool2d."""
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


class _Node:
    __slots__ = ("layer", "ins", "out", "first")

    def __init__(self, layer, ins, out):
        self.layer, self.ins, self.out = layer, ins, out  # tensor ids; tensor 0 is the model input


class _Plan:
    """Every buffer a forward/backward at one batch size needs. Activation and workspace buffers are
    allocated at planning; gradient buffers on the first backward (an inference-only batch size, as in
    ``predict``, never pays for them). Both happen once per batch size."""

    def __init__(self, model, batch):
        nodes, shapes, req = model._nodes, model._shapes, model._requires_grad
        self._model = model
        self.batch = batch
        self.dev = dev = model._dev
        self.x_in = self.labels = None  # device path: where host batches and labels are copied in
        self.y = [None] * len(shapes)
        self.g = None
        self.gx = self.accum = None
        self.vals = [None] * len(shapes)  # what the last forward produced (buffers or views)
        self.training = False
        # what runs for each node: the layer's own fwd / bwd, or a fused pair's (edgecnn.fusion)
        self.fwd_ops = [node.layer.fwd for node in nodes]
        self.bwd_ops = [node.layer.bwd for node in nodes]
        self.unmaterialized = set()  # tensors a fused pair never writes: no buffers
        if not dev.is_cuda and F.ENABLED:
            for k, j in F.bn_pool_pairs(model):
                f = F.BNPool(self, k, j)
                self.fwd_ops[k], self.fwd_ops[j] = f.bn_fwd, f.pool_fwd
                self.bwd_ops[k], self.bwd_ops[j] = f.bn_bwd, f.pool_bwd
                self.unmaterialized.add(nodes[k].out)
        for node in nodes:
            # Flatten / linear / inference Dropout return views
            if not node.layer.view_output and node.out not in self.unmaterialized:
                self.y[node.out] = dev.empty((batch,) + shapes[node.out])
        self.ws = [node.layer.workspace([shapes[t] for t in node.ins], batch, [req[t] for t in node.ins], dev)
                   for node in nodes]
        for ws in self.ws:
            ws["dev"] = dev

    def ensure_grads(self):
        if self.g is not None:
            return
        model, batch, dev = self._model, self.batch, self.dev
        nodes, shapes, req = model._nodes, model._shapes, model._requires_grad
        g = [None] * len(shapes)
        # 1. backward order: which consumer edge writes a tensor's gradient buffer first
        written, first = set(), {}
        for k in range(len(nodes) - 1, -1, -1):
            for j, t in enumerate(nodes[k].ins):
                if req[t] and t not in written:
                    written.add(t)
                    first[(k, j)] = True
        # 2. forward order: gradient buffers; a view layer (Flatten) aliases its input's when it can
        for k, node in enumerate(nodes):
            o = node.out
            if req[o] and o not in self.unmaterialized:
                t = node.ins[0]
                if node.layer.view_output and req[t] and first.get((k, 0)):
                    g[o] = g[t].reshape((batch,) + shapes[o])
                    self.ws[k]["aliased"] = True
                else:
                    g[o] = dev.empty((batch,) + shapes[o])
        # 3. where each node's input gradients go; scratch buffers for the extra fan-out edges
        gx_all, acc_all = [], []
        for k, node in enumerate(nodes):
            gxs, acc = [], []
            for j, t in enumerate(node.ins):
                if not req[t]:
                    gxs.append(None)
                elif first.get((k, j)):
                    gxs.append(g[t])
                else:
                    s = dev.empty((batch,) + shapes[t])
                    gxs.append(s)
                    acc.append((g[t], s))
            gx_all.append(gxs)
            acc_all.append(acc)
        out = nodes[-1].out
        if g[out] is None:  # nothing trainable: still give the loss somewhere to write
            g[out] = dev.empty((batch,) + shapes[out])
        self.gx, self.accum, self.g = gx_all, acc_all, g

    def input_buffer(self):
        if self.x_in is None:
            self.x_in = self.dev.empty((self.batch,) + self._model.input_shape)
        return self.x_in

    def label_buffer(self):
        if self.labels is None:
            self.labels = self.dev.empty((self.batch,), np.int32)
        return self.labels

    def buffers(self):
        """Every planned array (activations, gradients, scratch, workspace, input and label buffers)."""
        out = [a for a in self.y + (self.g or []) + [self.x_in, self.labels] if a is not None]
        out += [g for gx in self.gx or [] for g in gx if g is not None]
        out += [v for ws in self.ws for v in ws.values() if _is_array(v)]
        return out

    def nbytes(self):
        seen, total = set(), 0
        for a in self.buffers():
            key = _memory_of(a)
            if key is not None and key not in seen:
                seen.add(key)
                total += a.nbytes
        return total


def _is_array(v):
    return isinstance(v, np.ndarray) or C.is_device_array(v)


def _memory_of(a):
    """A key for the allocation ``a`` owns, None for a view (so nbytes counts each buffer once)."""
    if isinstance(a, np.ndarray):
        return id(a) if a.base is None else None
    gpu = getattr(a, "gpu_data", None)  # numba: views share the allocation object
    if gpu is not None:
        return id(gpu)
    ary = getattr(a, "_ary", a)  # the simulator wraps a NumPy array
    return id(ary if getattr(ary, "base", None) is None else ary.base)


class Model:
    """A DAG of layers from one input tensor to one output tensor.

    ``Model(x, y, name=None, seed=0)``: ``seed`` seeds the parameter initialisation (He for layers
    with a ReLU activation, else Glorot uniform) and the dropout masks.
    """

    def __init__(self, inputs, outputs, name=None, seed=0):
        if isinstance(inputs, (list, tuple)) and len(inputs) == 1:
            inputs = inputs[0]
        if isinstance(outputs, (list, tuple)) and len(outputs) == 1:
            outputs = outputs[0]
        if not isinstance(inputs, SymbolicTensor) or inputs.layer is not None:
            raise TypeError("Model: inputs must be one tensor made by Input(...)")
        if not isinstance(outputs, SymbolicTensor) or outputs.layer is None:
            raise TypeError("Model: outputs must be one tensor made by calling a layer")
        self.name = name or "model"
        self.input_shape = inputs.shape
        self.output_shape = outputs.shape
        self._input_name = inputs.inputs
        self._seed = int(seed)
        self._build_graph(inputs, outputs)
        self._plans = OrderedDict()
        self._last = None
        self._dev = D.CPU
        self._dropout_counter = 0
        self._dropout_seed = int(seed)

    # -- construction ------------------------------------------------------------------------------
    def _build_graph(self, inp, out):
        order, ids, state = [], {id(inp): 0}, {}

        def visit(t):  # iterative DFS post-order, inputs in call order: deterministic
            stack = [(t, False)]
            while stack:
                cur, done = stack.pop()
                if id(cur) in ids:
                    continue
                if cur.layer is None:
                    raise ValueError(f"Model: the graph reaches an Input other than the model's input "
                                     f"(shape {cur.shape}); only single-input models are supported")
                if done:
                    ids[id(cur)] = len(order) + 1
                    order.append(cur)
                    continue
                if state.get(id(cur)):
                    continue
                state[id(cur)] = True
                stack.append((cur, True))
                for src in reversed(cur.inputs):
                    if id(src) not in ids:
                        stack.append((src, False))
        visit(out)
        self._shapes = [inp.shape] + [t.shape for t in order]
        self._nodes = [_Node(t.layer, [ids[id(s)] for s in t.inputs], ids[id(t)]) for t in order]
        self.layers = [n.layer for n in self._nodes]
        if len(set(map(id, self.layers))) != len(self.layers):
            raise ValueError("Model: a layer object appears twice (weight sharing is not supported)")
        # names: user names must be unique; others get keras-like names in topological order
        used = {lay.name for lay in self.layers if lay.name}
        if len(used) != sum(1 for lay in self.layers if lay.name):
            raise ValueError(f"Model: layer names must be unique, got "
                             f"{[lay.name for lay in self.layers if lay.name]}")
        counts = {}
        for lay in self.layers:
            if lay.name:
                continue
            base = _snake(type(lay).__name__)
            while True:
                n = counts.get(base, 0)
                counts[base] = n + 1
                cand = base if n == 0 else f"{base}_{n}"
                if cand not in used:
                    break
            lay.name = cand
            used.add(cand)
        rng = np.random.default_rng(self._seed)
        for node in self._nodes:
            node.layer.build([self._shapes[t] for t in node.ins], rng)
        req = [False] * len(self._shapes)
        for node in self._nodes:
            trainable = any(p.trainable for p in node.layer.params)
            req[node.out] = trainable or any(req[t] for t in node.ins)
        self._requires_grad = req
        self._consumers = [0] * len(self._shapes)
        for node in self._nodes:
            for t in node.ins:
                self._consumers[t] += 1

    # -- introspection -------------------------------------------------------------------------------
    def parameters(self):
        return [p for lay in self.layers for p in lay.params]

    def trainable_parameters(self):
        return [p for p in self.parameters() if p.trainable]

    def count_params(self):
        t = sum(p.value.size for p in self.parameters() if p.trainable)
        return t, sum(p.value.size for p in self.parameters() if not p.trainable)

    def get_layer(self, name):
        for lay in self.layers:
            if lay.name == name:
                return lay
        raise KeyError(f"Model {self.name!r}: no layer named {name!r}")

    def is_chain(self):
        return all(n.ins == [k] for k, n in enumerate(self._nodes))

    def summary(self, print_fn=print):
        text = format_summary(self)
        if print_fn is not None:
            print_fn(text)
        return text

    def __repr__(self):
        t, n = self.count_params()
        return f"<Model {self.name!r}: {len(self.layers)} layers, {t + n:,} parameters>"

    # -- buffers ---------------------------------------------------------------------------------------
    def plan(self, batch):
        """The buffers for ``batch`` (allocated on first use, cached for the last few batch sizes)."""
        p = self._plans.get(batch)
        if p is None:
            p = _Plan(self, batch)
            self._plans[batch] = p
            while len(self._plans) > _MAX_PLANS:
                old = next(iter(self._plans))
                if self._plans[old] is self._last:
                    self._plans.move_to_end(old)
                    old = next(iter(self._plans))
                del self._plans[old]
        else:
            self._plans.move_to_end(batch)
        return p

    def release_buffers(self):
        self._plans.clear()
        self._last = None

    # -- devices -----------------------------------------------------------------------------------------
    @property
    def device(self):
        """'cpu' or 'cuda': where the parameters and the planned buffers live."""
        return self._dev.name

    def to(self, device):
        """Move parameters and gradients to ``device`` ("cpu", "cuda" or "auto", see edgecnn.device);
        returns the model. Buffers are planned again on the new device. Optimizers made earlier follow
        their parameters at their next step (their state moves with them)."""
        dev = D.get(device)
        if dev is self._dev:
            return self
        for prm in self.parameters():
            value = self._dev.to_host(prm.value)
            prm.value = dev.from_host(value)
            if prm.grad is not None:
                prm.grad = dev.from_host(self._dev.to_host(prm.grad))
        self.release_buffers()
        self._dev = dev
        return self

    def cpu(self):
        return self.to("cpu")

    def cuda(self):
        return self.to("cuda")

    def _check_x(self, x, where):
        dev = self._dev
        on_device = not isinstance(x, np.ndarray)
        if on_device and not (dev.is_cuda and dev.owns(x)):
            raise TypeError(f"Model.{where}: x must be a NumPy array{' or a CUDA device array' * dev.is_cuda}"
                            f", got {type(x).__name__}" + ("" if dev.is_cuda or not C.is_device_array(x) else
                                                           "; the model is on the cpu: call model.to('cuda')"))
        if x.ndim != len(self.input_shape) + 1 or tuple(x.shape[1:]) != self.input_shape or x.shape[0] < 1:
            raise ValueError(f"Model.{where}: x must have shape (N, {', '.join(map(str, self.input_shape))}) "
                             f"with N >= 1, got {tuple(x.shape)}")
        if x.dtype != np.float32:
            raise TypeError(f"Model.{where}: x must be float32, got {x.dtype} with shape {tuple(x.shape)}")
        if on_device:
            return C.check_array(f"Model.{where}", "x", x)  # contiguity: no implicit device copies
        return x if x.flags.c_contiguous else np.ascontiguousarray(x)

    # -- running -----------------------------------------------------------------------------------------
    def forward(self, x, training=False):
        """Logits for float32 ``x`` (N, *input_shape). The result is a buffer owned by the model and
        overwritten by the next forward at the same batch size: copy it to keep it."""
        x = self._check_x(x, "forward")
        p = self.plan(x.shape[0])
        if p.dev.is_cuda and isinstance(x, np.ndarray):  # a host batch goes into the planned buffer
            p.dev.put(p.input_buffer(), x)
            x = p.x_in
        vals = p.vals
        vals[0] = x
        if training:
            self._dropout_counter += 1
        for k, node in enumerate(self._nodes):
            ws = p.ws[k]
            if "seed" in ws:
                ws["seed"] = self._mask_seed(k)
            vals[node.out] = p.fwd_ops[k]([vals[t] for t in node.ins], p.y[node.out], ws, training)
        p.training = bool(training)
        self._last = p
        return vals[self._nodes[-1].out]

    __call__ = forward

    def _mask_seed(self, k):
        # a distinct, reproducible stream per (model seed, training step, layer)
        h = (self._dropout_seed * 0x9E3779B1 + self._dropout_counter * 0x85EBCA77 + k * 0xC2B2AE3D)
        return int(h % 2147483647)

    def backward(self, gy):
        """Write every trainable ``.grad`` (overwriting) from ``gy`` = dLoss/dOutput of the last forward."""
        p = self._last
        if p is None:
            raise RuntimeError("Model.backward: call forward(x, training=True) first")
        out = self._nodes[-1].out
        p.ensure_grads()
        host = isinstance(gy, np.ndarray)
        if not (host or p.dev.owns(gy)) or gy.dtype != np.float32 or tuple(gy.shape) != p.g[out].shape:
            raise ValueError(f"Model.backward: gy must be float32 with shape {p.g[out].shape} (the last "
                             f"forward's output) on the host or the model's device ({p.dev.name}), got "
                             f"{getattr(gy, 'dtype', type(gy).__name__)} {getattr(gy, 'shape', '')}")
        if host and p.dev.is_cuda:
            p.dev.put(p.g[out], gy)
        else:
            p.dev.copyto(p.g[out], gy)
        self._backward(p)

    def _backward(self, p):
        nodes, vals, req, add = self._nodes, p.vals, self._requires_grad, p.dev.add
        for k in range(len(nodes) - 1, -1, -1):
            node = nodes[k]
            if not req[node.out]:
                continue
            p.bwd_ops[k](p.g[node.out], [vals[t] for t in node.ins], vals[node.out], p.ws[k], p.gx[k])
            for g, s in p.accum[k]:
                add(g, s, g)

    def train_step(self, x, labels):
        """forward(training=True) + softmax cross-entropy + backward. Returns (loss, logits): the loss
        as a Python float, the logits as the model's buffer (a device array on CUDA)."""
        from .kernels import softmax_cross_entropy
        logits = self.forward(x, training=True)
        if logits.ndim != 2:
            raise ValueError(f"Model.train_step: needs (N, K) logits, the model outputs {logits.shape}")
        p = self._last
        if p.dev.is_cuda and p.dev.owns(labels):
            if np.dtype(labels.dtype) != np.int32:
                raise TypeError(f"Model.train_step: device labels must be int32, got {np.dtype(labels.dtype)}")
        else:
            labels = np.asarray(labels)
            if labels.dtype not in (np.int32, np.int64) or p.dev.is_cuda:
                labels = labels.astype(np.int32, copy=False)
        if tuple(labels.shape) != (x.shape[0],):
            raise ValueError(f"Model.train_step: labels must have shape ({x.shape[0]},), got "
                             f"{tuple(labels.shape)}")
        if p.dev.is_cuda and isinstance(labels, np.ndarray):
            k = logits.shape[1]  # checked here: the device kernel only sees a NaN loss
            if labels.min() < 0 or labels.max() >= k:
                raise ValueError(f"Model.train_step: labels must be in [0, {k}), got values from "
                                 f"{labels.min()} to {labels.max()}")
            p.dev.put(p.label_buffer(), labels)
            labels = p.labels
        p.ensure_grads()
        loss, _ = softmax_cross_entropy(logits, labels, grad=p.g[self._nodes[-1].out])
        self._backward(p)
        return float(loss), logits

    def predict(self, x, batch_size=256):
        """Inference logits for all of ``x`` in batches (a new array)."""
        x = self._check_x(x, "predict")
        C.as_int("Model.predict", "batch_size", batch_size, 1)
        n = x.shape[0]
        out = np.empty((n,) + self.output_shape, np.float32)
        dev = self._dev
        for i in range(0, n, batch_size):
            y = self.forward(x[i:i + batch_size], training=False)
            if dev.is_cuda:
                dev.to_host(y, out[i:i + batch_size])  # rows of a C-contiguous array: contiguous
            else:
                out[i:i + batch_size] = y
        return out

    # -- state -------------------------------------------------------------------------------------------
    def state_dict(self):
        """{parameter name: float32 NumPy copy}, wherever the model lives."""
        return {p.name: self._dev.to_host(p.value) for p in self.parameters()}

    def load_state_dict(self, d):
        """Copy arrays into the parameters in place (optimizers keep their references)."""
        if not isinstance(d, dict):
            raise TypeError(f"Model.load_state_dict: expects a dict of arrays, got {type(d).__name__}")
        params = {p.name: p for p in self.parameters()}
        missing = sorted(set(params) - set(d))
        unexpected = sorted(set(d) - set(params))
        if missing or unexpected:
            raise ValueError(f"Model.load_state_dict: names do not match the model {self.name!r}: "
                             f"missing {missing}, unexpected {unexpected}")
        for name, p in params.items():
            a = d[name]
            if not isinstance(a, np.ndarray) or a.dtype != np.float32:
                raise TypeError(f"Model.load_state_dict: {name} must be a float32 array, got "
                                f"{getattr(a, 'dtype', type(a).__name__)}")
            if a.shape != tuple(p.value.shape):
                raise ValueError(f"Model.load_state_dict: {name} must have shape {tuple(p.value.shape)}, "
                                 f"got {a.shape}")
            if not np.all(np.isfinite(a)):
                raise ValueError(f"Model.load_state_dict: {name} holds NaN or infinite values")
        for name, p in params.items():
            self._dev.put(p.value, d[name])

    def seed(self, seed):
        """Reseed the dropout masks (parameter initialisation is fixed at construction)."""
        self._dropout_seed = int(seed)
        self._dropout_counter = 0

    def get_rng_state(self):
        return {"seed": self._dropout_seed, "counter": self._dropout_counter}

    def set_rng_state(self, s):
        try:
            seed, counter = int(s["seed"]), int(s["counter"])
        except (TypeError, KeyError, ValueError):
            raise ValueError(f"Model.set_rng_state: expects {{'seed': int, 'counter': int}}, got {s!r}") \
                from None
        self._dropout_seed, self._dropout_counter = seed, counter

    # -- configuration -----------------------------------------------------------------------------------
    def get_config(self):
        names = [self._input_name] + [n.layer.name for n in self._nodes]
        layers = [{"class_name": type(n.layer).__name__, "config": n.layer.get_config(),
                   "inbound": [names[t] for t in n.ins]} for n in self._nodes]
        return {"name": self.name, "input_shape": list(self.input_shape), "input_name": self._input_name,
                "seed": self._seed, "layers": layers, "output": names[-1]}

    @classmethod
    def from_config(cls, cfg):
        try:
            inp = Input(tuple(cfg["input_shape"]), name=cfg.get("input_name", "input"))
            tensors = {inp.inputs: inp}
            for spec in cfg["layers"]:
                kind = spec["class_name"]
                if kind not in L.LAYERS:
                    raise ValueError(f"unknown layer class {kind!r}")
                layer = L.LAYERS[kind].from_config(dict(spec["config"]))
                ins = [tensors[n] for n in spec["inbound"]]
                tensors[layer.name] = layer(ins if len(ins) > 1 else ins[0])
            out = tensors[cfg["output"]]
        except (KeyError, TypeError) as e:
            raise ValueError(f"Model.from_config: malformed config ({type(e).__name__}: {e})") from None
        return cls(inp, out, name=cfg.get("name"), seed=cfg.get("seed", 0))


class Sequential(Model):
    """A chain: ``Sequential([Conv2D(32, 3, activation="relu"), ...], input_shape=(1, 28, 28))``."""

    def __init__(self, layers, input_shape, name=None, seed=0):
        if not layers:
            raise ValueError("Sequential: needs at least one layer")
        x = inp = Input(input_shape)
        for lay in layers:
            if not isinstance(lay, L.Layer):
                raise TypeError(f"Sequential: expects layers, got {type(lay).__name__}")
            x = lay(x)
        super().__init__(inp, x, name=name or "sequential", seed=seed)


def _human_bytes(n):
    if n < 1024:
        return f"{n} B"
    n /= 1024
    for unit in ("KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.2f} {unit}"
        n /= 1024


def format_summary(model):
    """Keras's table: Layer (type), Output Shape, Param # (plus Connected to for non-chains), totals."""
    chain = model.is_chain()
    names = [model._input_name] + [n.layer.name for n in model._nodes]
    rows = [("Layer (type)", "Output Shape", "Param #") + (() if chain else ("Connected to",))]
    if not chain:
        rows.append((f"{model._input_name} (InputLayer)", _shape_str(model.input_shape), "0", ""))
    for node in model._nodes:
        lay = node.layer
        t, n = lay.count_params()
        row = (f"{lay.name} ({type(lay).__name__})", _shape_str(model._shapes[node.out]), f"{t + n:,}")
        if not chain:
            row += (", ".join(names[i] for i in node.ins),)
        rows.append(row)
    widths = [max(len(r[i]) for r in rows) + 3 for i in range(len(rows[0]))]
    widths[0] = max(widths[0], 29)
    widths[1] = max(widths[1], 26)
    widths[2] = max(widths[2], 10)

    def line(r):
        return (" " + "".join(c.ljust(w) for c, w in zip(r, widths))).rstrip()
    total_w = sum(widths) + 1
    out = [f'Model: "{model.name}"', "_" * total_w, line(rows[0]), "=" * total_w]
    for i, r in enumerate(rows[1:]):
        out.append(line(r))
        if i < len(rows) - 2:
            out.append("_" * total_w if not chain else "")
    if chain:
        out = [o for o in out if o != ""]
    t, n = model.count_params()
    out += ["=" * total_w,
            f"Total params: {t + n:,} ({(t + n) * 4:,} bytes, {_human_bytes((t + n) * 4)})",
            f"Trainable params: {t:,} ({t * 4:,} bytes, {_human_bytes(t * 4)})",
            f"Non-trainable params: {n:,} ({n * 4:,} bytes, {_human_bytes(n * 4)})",
            "_" * total_w]
    return "\n".join(out)


def _shape_str(shape):
    return "(None, " + ", ".join(str(d) for d in shape) + ")"
