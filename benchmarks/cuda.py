"""CUDA benchmarks (when a GPU is present) and the on-paper roofline of a training step.

    python benchmarks/cuda.py [--repeats 15] [--json PATH] [--estimate-only] [--smoke]
                              [--bandwidth-gbs 360] [--peak-tflops 12.7] [--gemm-efficiency 0.12]
                              [--launch-us 25] [--batch 128]

With a GPU, the CPU benchmarks' cases on the device (benchmarks/_cuda_measure.py; shapes, models and
filter cases are imported from the CPU benchmark modules):
  kernels     benchmarks/kernels.py's conv/pool shapes (batch 64) and keras-mnist's dense layer
  train       benchmarks/train.py's models at batch 128 with Adam, ``model.to("cuda")``, img/s
  filters     benchmarks/filters.py's cases on a 640x480 frame held as device arrays
  inference   the default model, host uint8 digits -> probabilities, batch 1 and 4 (the live case)
beside PyTorch CUDA (kernels, training; when importable with CUDA), OpenCV on the CPU and cv2.cuda (filters,
when OpenCV was built with CUDA), and the CPU (inference); interleaved rounds, medians. Without a GPU it
says why it skipped them. ``--smoke`` runs every measurement once with tiny shapes and no PyTorch; it is
allowed under the simulator (NUMBA_ENABLE_CUDASIM=1), where it checks the code runs, not its speed.

Always: an analytic estimate (no GPU needed) of FLOPs, compulsory DRAM traffic and kernel launches of
one training step and of batch-1 and batch-128 inference for the zoo models (layer lists read from their
edgecnn graphs, built on the CPU), and the time a roofline gives on the assumed GPU (default: an RTX
3060-class part, 360 GB/s, 12.7 FP32 TFLOPS). The
GEMM-style kernels are credited only ``--gemm-efficiency`` of the peak (one output per thread and two
shared-memory loads per FMA cap them near 1/8 of it), and every launch costs ``--launch-us`` of host
time (numba's Python-side dispatch), which is what bounds small batches. Host and GPU overlap, except
at the loss read-back that splits a training step in two (Model.train_step returns the loss as a float).
"""
import argparse
import json
import pathlib
import sys
import time

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

F32 = 4


# ----------------------------------------------------------------------------------------- the estimate
ZOO = ("default", "keras-mnist", "lenet5")


def _layer(model, node):
    """The estimate's description of one graph node: a list of dicts (a fused activation is its own
    launch, so its own entry); shapes exclude the batch axis."""
    from edgecnn import layers as L
    lay = node.layer
    (c, *hw), out = model._shapes[node.ins[0]], model._shapes[node.out]
    size = int(np.prod(out))
    name = type(lay).__name__
    if isinstance(lay, L.Conv2D):
        if lay.groups != 1:
            raise NotImplementedError("the estimate covers groups=1 convolutions only")
        kh, kw = lay.kernel_size
        d = [dict(kind="conv", name=f"conv {c}->{out[0]} {kh}x{kw}", c=c, h=hw[0], w=hw[1], co=out[0],
                  kk=kh * kw,
                  oh=out[1], ow=out[2], bias=lay.use_bias, first=not model._requires_grad[node.ins[0]])]
    elif isinstance(lay, L.BatchNorm2D):
        d = [dict(kind="bn", name="batchnorm", c=c, hw=size // c)]
    elif isinstance(lay, L.MaxPool2D):
        d = [dict(kind="maxpool", name="maxpool", x=c * hw[0] * hw[1], y=size)]
    elif isinstance(lay, L.GlobalAvgPool2D):
        d = [dict(kind="gap", name="global avg pool", c=c, hw=hw[0] * hw[1])]
    elif isinstance(lay, L.Dense):
        d = [dict(kind="dense", name=f"dense {c}->{out[0]}", i=c, o=out[0], bias=lay.use_bias)]
    elif isinstance(lay, L.Dropout):
        d = [dict(kind="dropout", name="dropout", n=size)]
    elif isinstance(lay, (L.Flatten, L.Activation)):
        d = []  # Flatten: a view; Activation: its entry is added below
    else:
        raise NotImplementedError(f"the estimate has no model of {name}")
    act = getattr(lay, "activation", None)
    if act is not None:
        d.append(dict(kind="relu", name=act, n=size))  # relu, tanh, ...: one elementwise launch each way
    return d


def models(names=ZOO):
    """{name: layer list} of zoo models, read from their edgecnn graphs (built on the CPU: no kernel
    runs and no GPU is needed), ending with the softmax cross-entropy."""
    from edgecnn import models as zoo
    out = {}
    for name in names:
        m = zoo.build(name)
        layers = [d for node in m._nodes for d in _layer(m, node)]
        out[name] = layers + [dict(kind="loss", name="softmax xent", n=int(np.prod(m.output_shape)))]
    return out


def params(layers):
    n = 0
    for L in layers:
        if L["kind"] == "conv":
            n += L["co"] * L["c"] * L["kk"] + (L["co"] if L["bias"] else 0)
        elif L["kind"] == "dense":
            n += L["o"] * L["i"] + (L["o"] if L["bias"] else 0)
        elif L["kind"] == "bn":
            n += 2 * L["c"]
    return n


def _split_k(blocks, reduced):
    from edgecnn.kernels.cuda import _launch
    return _launch.split_k(blocks, reduced)[0]


def kernels(L, B, training):
    """[(kernel, flops, gemm?, bytes)] for one layer: the launches it makes, with FLOPs and the
    compulsory DRAM bytes (each operand read once, each output written once)."""
    k = L["kind"]
    out = []
    if k == "conv":
        x = B * L["c"] * L["h"] * L["w"]
        y = B * L["co"] * L["oh"] * L["ow"]
        wn = L["co"] * L["c"] * L["kk"]
        fl = 2.0 * y * L["c"] * L["kk"]
        out.append(("conv fwd", fl, True, (x + wn + y) * F32))
        if training:
            if not L["first"]:
                out.append(("conv bwd input", fl, True, (y + wn + x) * F32))
            out.append(("conv bwd weight", fl, True, (y + x + wn) * F32))
            blocks = -(-L["co"] // 16) * -(-L["c"] * L["kk"] // 16)
            slices = _split_k(blocks, B * L["oh"] * L["ow"])
            if slices > 1:  # split-K partial sums, then the fixed-order sum over slices
                out.append(("conv gw slice sum", slices * wn, False, (slices + 1) * wn * F32))
            if L["bias"]:
                out.append(("conv bwd bias", y, False, y * F32))
    elif k == "dense":
        x, y, wn = B * L["i"], B * L["o"], L["i"] * L["o"]
        fl = 2.0 * B * L["i"] * L["o"]
        out.append(("dense fwd", fl, True, (x + wn + y) * F32))
        if training:
            out += [("dense bwd input", fl, True, (y + wn + x) * F32),
                    ("dense bwd weight", fl, True, (y + x + wn) * F32)]
            if L["bias"]:
                out.append(("dense bwd bias", y, False, y * F32))
    elif k == "relu":
        n = B * L["n"]
        out.append((f"{L['name']} fwd", n, False, 2 * n * F32))
        if training:
            out.append((f"{L['name']} bwd", n, False, 3 * n * F32))
    elif k == "maxpool":
        x, y = B * L["x"], B * L["y"]
        out.append(("maxpool fwd", x, False, (x + 2 * y) * F32))       # y and int32 argmax
        if training:
            out.append(("maxpool bwd", x, False, (2 * y + x) * F32))
    elif k == "dropout":
        n = B * L["n"]
        if training:
            out += [("dropout fwd", 10 * n, False, 2 * n * F32 + n),
                    ("dropout bwd", n, False, 2 * n * F32 + n)]
    elif k == "bn":
        n = B * L["c"] * L["hw"]
        if training:
            out += [("bn stats", 3 * n, False, 2 * n * F32), ("bn apply", 2 * n, False, 2 * n * F32),
                    ("bn bwd reduce", 3 * n, False, 2 * n * F32), ("bn bwd input", 6 * n, False, 3 * n * F32)]
        else:
            out += [("bn params", L["c"], False, 0), ("bn apply", 2 * n, False, 2 * n * F32)]
    elif k == "gap":
        n = B * L["c"] * L["hw"]
        out.append(("gap fwd", n, False, (n + B * L["c"]) * F32))
        if training:
            out.append(("gap bwd", n, False, (n + B * L["c"]) * F32))
    elif k == "loss" and training:
        n = B * L["n"]
        out += [("xent", 20 * n, False, 3 * n * F32), ("loss sum", B, False, B * F32),
                ("loss scale", 1, False, 0)]
    return out


def _backward(kernel):
    return "bwd" in kernel or "slice sum" in kernel or kernel.startswith("adam")


def estimate(name, layers, B, training, bw, peak, eff, launch_us):
    rows = [kv for L in layers for kv in kernels(L, B, training)]
    if training:  # Adam on the device: read p, g, m, v; write p, m, v (one elementwise launch per tensor)
        p = params(layers)
        ntensors = sum(1 + (L.get("bias", True) if L["kind"] in ("conv", "dense") else 1)
                       for L in layers if L["kind"] in ("conv", "dense", "bn"))
        rows.append((f"adam ({ntensors} tensors)", 10.0 * p, False, 7 * p * F32))
        launches = len(rows) - 1 + ntensors
    else:
        launches, ntensors = len(rows), 0
    flops = sum(r[1] for r in rows)
    bytes_ = sum(r[3] for r in rows)
    t_math = sum(r[1] / (peak * (eff if r[2] else 1.0)) for r in rows)
    t_mem = sum(r[3] / bw for r in rows)
    t_gpu = sum(max(r[1] / (peak * (eff if r[2] else 1.0)), r[3] / bw) for r in rows)
    t_launch = launches * launch_us * 1e-6
    # Launches are asynchronous, so host and GPU overlap, except that Model.train_step reads the loss back
    # (a sync) between the forward pass + loss and the backward pass + optimizer: each half overlaps alone.
    t = 0.0
    for half in (False, True):
        part = [r for r in rows if _backward(r[0]) == half]
        n = len(part) if not half else len(part) - 1 + ntensors if training else 0
        gpu = sum(max(r[1] / (peak * (eff if r[2] else 1.0)), r[3] / bw) for r in part)
        t += max(gpu, n * launch_us * 1e-6)
    return dict(model=name, batch=B, training=training, flops=flops, bytes=bytes_, launches=launches,
                t_math_ms=t_math * 1e3, t_mem_ms=t_mem * 1e3, t_gpu_ms=t_gpu * 1e3,
                t_launch_ms=t_launch * 1e3, t_ms=t * 1e3, images_per_s=B / t,
                bound="launch overhead" if t_launch > t_gpu else ("math" if t_math > t_mem else "memory"),
                rows=[dict(kernel=r[0], flops=r[1], gemm=r[2], bytes=r[3]) for r in rows])


def print_estimates(args):
    bw, peak = args.bandwidth_gbs * 1e9, args.peak_tflops * 1e12
    print(f"Roofline estimate: {args.bandwidth_gbs:.0f} GB/s, {args.peak_tflops} FP32 TFLOPS peak, GEMM "
          f"kernels at {args.gemm_efficiency:.0%} of peak, {args.launch_us:.0f} us host time per launch")
    print(f"{'model':12} {'pass':>16} {'GFLOP':>8} {'MB DRAM':>8} {'launch':>6} {'math ms':>8} "
          f"{'mem ms':>7} {'gpu ms':>7} {'host ms':>7} {'img/s':>9}  bound")
    res = []
    for name, layers in models().items():
        for B, training in ((args.batch, True), (1, False), (args.batch, False)):
            e = estimate(name, layers, B, training, bw, peak, args.gemm_efficiency, args.launch_us)
            res.append(e)
            tag = f"train bs{B}" if training else f"infer bs{B}"
            print(f"{name:12} {tag:>16} {e['flops'] / 1e9:8.3f} {e['bytes'] / 1e6:8.2f} {e['launches']:6d} "
                  f"{e['t_math_ms']:8.3f} {e['t_mem_ms']:7.3f} {e['t_gpu_ms']:7.3f} {e['t_launch_ms']:7.3f} "
                  f"{e['images_per_s']:9.0f}  {e['bound']}")
    return res


# ----------------------------------------------------------------------------------------- measurements
def _gpu_reason(smoke=False):
    """None when the measurements can run, else why not (the simulator is accepted for --smoke only)."""
    try:
        from edgecnn.kernels.cuda import _device
    except Exception as e:
        return f"edgecnn.kernels.cuda cannot be imported ({e})"
    if _device.simulator_enabled():
        return None if smoke else "NUMBA_ENABLE_CUDASIM=1 (the simulator is no benchmark; --smoke runs on it)"
    try:
        _device.require_cuda("benchmarks/cuda.py")
    except Exception as e:
        return str(e)
    return None


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--json", default=str(HERE / "results" / "cuda.json"))
    p.add_argument("--estimate-only", action="store_true", help="skip the GPU measurements")
    p.add_argument("--smoke", action="store_true",
                   help="every measurement once, tiny shapes, no PyTorch (allowed under the simulator)")
    p.add_argument("--bandwidth-gbs", type=float, default=360.0, help="assumed DRAM bandwidth (RTX 3060)")
    p.add_argument("--peak-tflops", type=float, default=12.7, help="assumed FP32 peak (RTX 3060)")
    p.add_argument("--gemm-efficiency", type=float, default=0.12,
                   help="fraction of peak credited to the tiled GEMM kernels")
    p.add_argument("--launch-us", type=float, default=25.0, help="host time per kernel launch (numba)")
    p.add_argument("--batch", type=int, default=128, help="training batch (edgecnn train's default)")
    args = p.parse_args(argv)
    result = {"time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "measured": None}
    reason = "--estimate-only" if args.estimate_only else _gpu_reason(args.smoke)
    if reason is None:
        import _cuda_measure
        result["measured"] = _cuda_measure.run(args.repeats, smoke=args.smoke)
        result["smoke"] = args.smoke
    else:
        print(f"CUDA benchmarks skipped: {reason}")
        result["skipped"] = reason
    print()
    result["estimate"] = print_estimates(args)
    result["assumptions"] = {k: getattr(args, k) for k in ("bandwidth_gbs", "peak_tflops", "gemm_efficiency",
                                                           "launch_us", "batch")}
    path = pathlib.Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1))
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
