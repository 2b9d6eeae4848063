"""Inference of the model zoo: edgecnn vs PyTorch CPU and onnxruntime, measured in the same run.

    python benchmarks/inference.py [--threads 2] [--repeats 15] [--models lenet5,keras-mnist,default]
                                   [--json PATH]

For each model (random weights from seed 0; the cost does not depend on the values), the same weights
go into a PyTorch module and an ONNX graph (built here with onnx.helper), and every engine's logits are
checked against edgecnn's before anything is timed. Rows:

* batch 1, latency: edgecnn's small-batch plan (``edgecnn.inference.compile_plan``, what ``edgecnn
  live`` runs) and the others' one-image call; median microseconds per call. ``Model.predict`` at batch
  1 is timed after them, on its own.
* batch 256, throughput: ``Model.predict(x, batch_size=256)`` and the others on the same 256 images;
  images per second.

Every engine gets the same thread count (numba.set_num_threads, torch.set_num_threads, onnxruntime's
intra_op_num_threads); calls are timed in interleaved rounds (benchmarks/_timing.py), so a ratio
compares the engines at the same moment on a shared host, each sample after 60 ms of untimed calls of
its own engine (onnxruntime's threads keep spinning for ~40 ms after its last call and took the core
edgecnn's second thread needed). Every ratio is edgecnn's time per image over the other's (for
throughput: the other's images per second over edgecnn's): below 1, edgecnn is faster.
PyTorch and onnxruntime are benchmark-only comparisons (pip install torch==2.13.0, and the bench extra:
pip install -e ".[bench]"); a missing one is skipped. Results: table on stdout, JSON in
benchmarks/results/inference.json.
"""
import argparse
import json
import os
import pathlib
import sys

os.environ.setdefault("OMP_WAIT_POLICY", "passive")  # as edgecnn sets it (see edgecnn/_jit.py)

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import numpy as np  # noqa: E402

from _timing import interleaved  # noqa: E402

BIG = 256
SETTLE = 0.06  # seconds of untimed calls before each sample (see _timing.interleaved)


def _parse(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, default=2, help="threads for every engine")
    p.add_argument("--repeats", type=int, default=15, help="interleaved rounds per figure (median)")
    p.add_argument("--models", default="lenet5,keras-mnist,default", help="comma-separated zoo names")
    p.add_argument("--with", dest="others", default="torch,onnxruntime",
                   help="comparisons to run beside edgecnn (comma-separated; empty: none)")
    p.add_argument("--json", default=str(HERE / "results" / "inference.json"), help="where to write JSON")
    return p.parse_args(argv)


def _chain(model):
    """[(kind, layer)] of a chain model, with the layers an inference graph drops left out."""
    out = []
    for lay in model.layers:
        kind = type(lay).__name__
        if kind in ("Input", "InputLayer", "Dropout"):
            continue
        if kind not in ("Conv2D", "BatchNorm2D", "MaxPool2D", "Flatten", "Dense"):
            raise SystemExit(f"benchmarks/inference.py: no translation for layer {kind}")
        out.append((kind, lay))
    return out


def _values(lay):
    return [np.asarray(p.value) for p in lay.params]


def _pool_size(lay):
    """The window of a max pool whose stride is its window and that pads nothing (all the zoo uses)."""
    if tuple(lay.strides) != tuple(lay.pool_size) or any(lay.padding):
        raise SystemExit("benchmarks/inference.py: no translation for a strided or padded pool")
    return tuple(lay.pool_size)


def torch_module(torch, model):
    """The model as a torch.nn.Sequential with edgecnn's weights."""
    nn, mods = torch.nn, []
    for kind, lay in _chain(model):
        v = _values(lay)
        if kind == "Conv2D":
            w = v[0]
            m = nn.Conv2d(w.shape[1], w.shape[0], w.shape[2:], stride=lay.strides,
                          padding=_sym_pads(lay), dilation=lay.dilation, bias=lay.use_bias)
            m.weight.data = torch.from_numpy(w.copy())
            if lay.use_bias:
                m.bias.data = torch.from_numpy(v[1].copy())
        elif kind == "BatchNorm2D":
            m = nn.BatchNorm2d(v[0].shape[0], eps=lay.eps)
            for name, a in zip(("weight", "bias", "running_mean", "running_var"), v):
                getattr(m, name).data = torch.from_numpy(a.copy())
        elif kind == "MaxPool2D":
            m = nn.MaxPool2d(_pool_size(lay))
        elif kind == "Flatten":
            m = nn.Flatten()
        else:
            m = nn.Linear(v[0].shape[1], v[0].shape[0], bias=lay.use_bias)
            m.weight.data = torch.from_numpy(v[0].copy())
            if lay.use_bias:
                m.bias.data = torch.from_numpy(v[1].copy())
        mods.append(m)
        if lay.activation == "relu":
            mods.append(nn.ReLU())
        elif lay.activation is not None:
            raise SystemExit(f"benchmarks/inference.py: no translation for activation {lay.activation}")
    return nn.Sequential(*mods).eval()


def _sym_pads(lay):
    """(ph, pw) of a conv with symmetric padding (all the zoo uses)."""
    pads = lay._pads
    (t, b), (left, r) = pads
    if t != b or left != r:
        raise SystemExit("benchmarks/inference.py: asymmetric padding")
    return (t, left)


def onnx_model(onnx, model):
    """The model as an ONNX graph with edgecnn's weights (opset 17)."""
    from onnx import TensorProto, helper, numpy_helper
    nodes, inits, cur, k = [], [], "x", 0

    def name(s):
        nonlocal k
        k += 1
        return f"{s}{k}"

    def init(a):
        n = name("w")
        inits.append(numpy_helper.from_array(np.ascontiguousarray(a, np.float32), n))
        return n

    for kind, lay in _chain(model):
        v, out = _values(lay), name("t")
        if kind == "Conv2D":
            ph, pw = _sym_pads(lay)
            ins = [cur, init(v[0])] + ([init(v[1])] if lay.use_bias else [])
            nodes.append(helper.make_node("Conv", ins, [out], kernel_shape=list(v[0].shape[2:]),
                                          pads=[ph, pw, ph, pw], strides=list(lay.strides),
                                          dilations=list(lay.dilation)))
        elif kind == "BatchNorm2D":
            nodes.append(helper.make_node("BatchNormalization", [cur] + [init(a) for a in v], [out],
                                          epsilon=lay.eps))
        elif kind == "MaxPool2D":
            kp = list(_pool_size(lay))
            nodes.append(helper.make_node("MaxPool", [cur], [out], kernel_shape=kp, strides=kp))
        elif kind == "Flatten":
            nodes.append(helper.make_node("Flatten", [cur], [out], axis=1))
        else:
            ins = [cur, init(v[0])] + ([init(v[1])] if lay.use_bias else [])
            nodes.append(helper.make_node("Gemm", ins, [out], transB=1))
        cur = out
        if lay.activation == "relu":
            out = name("t")
            nodes.append(helper.make_node("Relu", [cur], [out]))
            cur = out
    c, h, w = model.input_shape
    graph = helper.make_graph(
        nodes, model.name, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", c, h, w])],
        [helper.make_tensor_value_info(cur, TensorProto.FLOAT, ["n", model.output_shape[0]])], inits)
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(m)
    return m.SerializeToString()


def _engines(threads, wanted):
    found = {}
    if "torch" in wanted:
        try:
            import torch
            torch.set_num_threads(threads)
            found["torch"] = torch
        except ImportError:
            print("PyTorch is not installed: skipped (pip install torch==2.13.0)")
    if "onnxruntime" in wanted:
        try:
            import onnx
            import onnxruntime
            found["onnx"] = (onnx, onnxruntime)
        except ImportError:
            print("onnxruntime or onnx is not installed: skipped (pip install onnxruntime onnx)")
    return found


def _ort_session(ort, blob, threads):
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(blob, so, providers=["CPUExecutionProvider"])


def _check(label, got, want):
    err = float(np.max(np.abs(got - want)) / max(1.0, float(np.max(np.abs(want)))))
    if not err < 1e-4:
        raise SystemExit(f"benchmarks/inference.py: {label} disagrees with edgecnn "
                         f"(relative error {err:.2e})")
    return err


def bench_model(name, engines, threads, repeats):
    from edgecnn import models
    from edgecnn.inference import compile_plan

    model = models.build(name, seed=0)
    rng = np.random.default_rng(0)
    xb = rng.random((BIG,) + tuple(model.input_shape), dtype=np.float32)
    x1 = xb[:1].copy()
    plan = compile_plan(model)
    want1, wantb = plan.predict(x1), model.predict(xb, batch_size=BIG)
    one = {"edgecnn_plan": lambda: plan.predict(x1)}
    big = {"edgecnn": lambda: model.predict(xb, batch_size=BIG)}
    errs = {}
    if "torch" in engines:
        torch = engines["torch"]
        tm, t1, tb = torch_module(torch, model), torch.from_numpy(x1), torch.from_numpy(xb)

        def tcall(t):
            with torch.inference_mode():
                return tm(t)
        errs["torch"] = max(_check("PyTorch batch 1", tcall(t1).numpy(), want1),
                            _check("PyTorch batch 256", tcall(tb).numpy(), wantb))
        one["torch"], big["torch"] = (lambda: tcall(t1)), (lambda: tcall(tb))
    if "onnx" in engines:
        onnx, ort = engines["onnx"]
        sess = _ort_session(ort, onnx_model(onnx, model), threads)
        errs["onnxruntime"] = max(_check("onnxruntime batch 1", sess.run(None, {"x": x1})[0], want1),
                                  _check("onnxruntime batch 256", sess.run(None, {"x": xb})[0], wantb))
        one["onnxruntime"] = lambda: sess.run(None, {"x": x1})
        big["onnxruntime"] = lambda: sess.run(None, {"x": xb})
    r1 = interleaved(one, repeats=repeats, warmup=3, target=0.02, settle=SETTLE)
    # Model.predict after the others and on its own: before dense products held OpenBLAS to one thread,
    # the plan ran 1.4x slower for a while after it (OpenBLAS's threads still spinning)
    _check("Model.predict batch 1", model.predict(x1, batch_size=1), want1)
    r1.update(interleaved({"edgecnn_predict": lambda: model.predict(x1, batch_size=1)}, repeats=repeats,
                          warmup=3, target=0.02))
    rb = interleaved(big, repeats=repeats, warmup=2, target=0.05, settle=SETTLE)
    row = {"model": name, "bs1_us": {k: v["median"] * 1e6 for k, v in r1.items()},
           "bs256_img_s": {k: BIG / v["median"] for k, v in rb.items()}, "max_rel_err": errs,
           "fallback": plan.fallback}
    return row


def _table(rows, key, mine, head, unit, ratio):
    """One table: a row per model, edgecnn's figure(s) then each other engine's with ``ratio``."""
    others = [e for e in ("torch", "onnxruntime") if any(e in r[key] for r in rows)]
    print(f"{'model':12}" + "".join(f" {h:>11}" for h in head)
          + "".join(f" {o + ' ' + unit:>18} {'ratio':>6}" for o in others))
    for r in rows:
        fig = r[key]
        line = f"{r['model']:12}" + "".join(f" {fig[m]:11.0f}" for m in mine)
        for o in others:
            line += (f" {fig[o]:18.0f} {ratio(fig[mine[0]], fig[o]):6.2f}" if o in fig
                     else f" {'-':>18} {'-':>6}")
        print(line)


def _print(rows):
    _table(rows, "bs1_us", ("edgecnn_plan", "edgecnn_predict"), ("bs1 plan us", "predict us"), "us",
           lambda mine, other: mine / other)
    print()
    _table(rows, "bs256_img_s", ("edgecnn",), ("bs256 img/s",), "img/s", lambda mine, other: other / mine)
    print("ratio: edgecnn time / other's time (below 1: edgecnn is faster)")


def main(argv=None):
    args = _parse(argv)
    import numba
    from edgecnn import models
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    unknown = [n for n in names if n not in models.names()]
    if unknown or not names:
        raise SystemExit(f"benchmarks/inference.py: --models must name zoo models "
                         f"({', '.join(models.names())}), got {args.models!r}")
    if not 1 <= args.threads <= numba.config.NUMBA_NUM_THREADS:
        raise SystemExit(f"benchmarks/inference.py: --threads must be 1..{numba.config.NUMBA_NUM_THREADS}, "
                         f"got {args.threads}")
    numba.set_num_threads(args.threads)
    engines = _engines(args.threads, {e.strip() for e in args.others.split(",") if e.strip()})
    versions = {"torch": engines["torch"].__version__} if "torch" in engines else {}
    if "onnx" in engines:
        versions["onnxruntime"] = engines["onnx"][1].__version__
    print(f"threads={args.threads}  repeats={args.repeats}  load average {os.getloadavg()[0]:.2f}  "
          + "  ".join(f"{k} {v}" for k, v in versions.items()))
    rows = [bench_model(n, engines, args.threads, args.repeats) for n in names]
    _print(rows)
    path = pathlib.Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")  # whole or not at all
    tmp.write_text(json.dumps({"threads": args.threads, "repeats": args.repeats, "versions": versions,
                               "rows": rows}, indent=1))
    os.replace(tmp, path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
