"""CUDA kernel benchmarks (when a GPU is present) and the on-paper roofline of a training step.

    python benchmarks/cuda.py [--repeats 15] [--json PATH] [--estimate-only]
                              [--bandwidth-gbs 360] [--peak-tflops 12.7] [--gemm-efficiency 0.12]
                              [--launch-us 25] [--batch 128]

With a GPU: the same conv/pool shapes as benchmarks/kernels.py (batch 64), plus the dense layer of
keras-mnist, run through edgecnn's CUDA twins on device arrays and (when importable with CUDA) through
PyTorch on the same GPU, interleaved, medians, ratio = edgecnn / torch. Without a GPU it says why it
skipped the measurements.

Always: an analytic estimate (no GPU needed) of FLOPs, compulsory DRAM traffic and kernel launches of
one training step and of a batch-1 inference for the default and keras-mnist models, and the time a
roofline gives on the assumed GPU (default: an RTX 3060-class part, 360 GB/s, 12.7 FP32 TFLOPS). The
GEMM-style kernels are credited only ``--gemm-efficiency`` of the peak (one output per thread and two
shared-memory loads per FMA cap them near 1/8 of it), and every launch costs ``--launch-us`` of host
time (numba's Python-side dispatch), which is what bounds small batches.
"""
import argparse
import json
import pathlib
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

F32 = 4


# ----------------------------------------------------------------------------------------- the estimate
def _conv(name, c, h, w, co, k, pad, bias=True, first=False):
    oh, ow = h + 2 * pad - k + 1, w + 2 * pad - k + 1
    return dict(kind="conv", name=name, c=c, h=h, w=w, co=co, k=k, oh=oh, ow=ow, bias=bias, first=first)


def models():
    """Layer lists mirroring edgecnn.models (kept here so the estimate needs no GPU and no graph)."""
    keras = [
        _conv("conv 1->32 3x3", 1, 28, 28, 32, 3, 0, first=True),
        dict(kind="relu", name="relu", n=32 * 26 * 26),
        _conv("conv 32->64 3x3", 32, 26, 26, 64, 3, 0), dict(kind="relu", name="relu", n=64 * 24 * 24),
        dict(kind="maxpool", name="maxpool 2", c=64, h=24, w=24),
        dict(kind="dropout", name="dropout .25", n=64 * 12 * 12),
        dict(kind="dense", name="dense 9216->128", i=9216, o=128), dict(kind="relu", name="relu", n=128),
        dict(kind="dropout", name="dropout .5", n=128),
        dict(kind="dense", name="dense 128->10", i=128, o=10), dict(kind="loss", name="softmax xent", n=10),
    ]
    default = []
    for i, (c, co, hw) in enumerate([(1, 16, 28), (16, 32, 14), (32, 32, 14), (32, 64, 7), (64, 64, 7)]):
        default += [_conv(f"conv {c}->{co} 3x3 p1", c, hw, hw, co, 3, 1, bias=False, first=i == 0),
                    dict(kind="bn", name="batchnorm", c=co, hw=hw * hw),
                    dict(kind="relu", name="relu", n=co * hw * hw)]
        if i in (0, 2):
            default.append(dict(kind="maxpool", name="maxpool 2", c=co, h=hw, w=hw))
    default += [dict(kind="gap", name="global avg pool", c=64, hw=49),
                dict(kind="dense", name="dense 64->10", i=64, o=10),
                dict(kind="loss", name="softmax xent", n=10)]
    return {"default": default, "keras-mnist": keras}


def params(layers):
    n = 0
    for L in layers:
        if L["kind"] == "conv":
            n += L["co"] * L["c"] * L["k"] ** 2 + (L["co"] if L["bias"] else 0)
        elif L["kind"] == "dense":
            n += L["o"] * L["i"] + L["o"]
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
        wn = L["co"] * L["c"] * L["k"] ** 2
        fl = 2.0 * y * L["c"] * L["k"] ** 2
        out.append(("conv fwd", fl, True, (x + wn + y) * F32))
        if training:
            if not L["first"]:
                out.append(("conv bwd input", fl, True, (y + wn + x) * F32))
            out.append(("conv bwd weight", fl, True, (y + x + wn) * F32))
            blocks = -(-L["co"] // 16) * -(-L["c"] * L["k"] ** 2 // 16)
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
                    ("dense bwd weight", fl, True, (y + x + wn) * F32), ("dense bwd bias", y, False, y * F32)]
    elif k == "relu":
        n = B * L["n"]
        out.append(("relu fwd", n, False, 2 * n * F32))
        if training:
            out.append(("relu bwd", n, False, 3 * n * F32))
    elif k == "maxpool":
        x = B * L["c"] * L["h"] * L["w"]
        y = x // 4
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


def estimate(name, layers, B, training, bw, peak, eff, launch_us):
    rows = [kv for L in layers for kv in kernels(L, B, training)]
    if training:  # Adam on the device: read p, g, m, v; write p, m, v (one elementwise launch per tensor)
        p = params(layers)
        ntensors = sum(1 + (L.get("bias", True) if L["kind"] in ("conv", "dense") else 1)
                       for L in layers if L["kind"] in ("conv", "dense", "bn"))
        rows.append((f"adam ({ntensors} tensors)", 10.0 * p, False, 7 * p * F32))
        launches = len(rows) - 1 + ntensors
    else:
        launches = len(rows)
    flops = sum(r[1] for r in rows)
    bytes_ = sum(r[3] for r in rows)
    t_math = sum(r[1] / (peak * (eff if r[2] else 1.0)) for r in rows)
    t_mem = sum(r[3] / bw for r in rows)
    t_gpu = sum(max(r[1] / (peak * (eff if r[2] else 1.0)), r[3] / bw) for r in rows)
    t_launch = launches * launch_us * 1e-6
    t = max(t_gpu, t_launch)   # launches are asynchronous: the host and the GPU overlap
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
def _gpu_reason():
    try:
        from edgecnn.kernels.cuda import _device
    except Exception as e:
        return f"edgecnn.kernels.cuda cannot be imported ({e})"
    if _device.simulator_enabled():
        return "NUMBA_ENABLE_CUDASIM=1 (the simulator is not a benchmark)"
    try:
        _device.require_cuda("benchmarks/cuda.py")
    except Exception as e:
        return str(e)
    return None


def measure(args):
    import numpy as np
    from numba import cuda

    from _timing import interleaved
    from edgecnn.kernels.cuda import conv as gconv, dense as gdense, pool as gpool
    from kernels import BATCH, CONV_SHAPES, POOL_SHAPE

    torch = None
    try:
        import torch as _t
        torch = _t if _t.cuda.is_available() else None
    except ImportError:
        pass

    def sync_torch(f):
        def g():
            f()
            torch.cuda.synchronize()
        return g

    def sync(f):
        def g():
            f()
            cuda.synchronize()
        return g

    rng = np.random.default_rng(0)
    rows = []
    for label, (c, h, w), co, k, pad in CONV_SHAPES:
        x = rng.standard_normal((BATCH, c, h, w)).astype(np.float32)
        wt = rng.standard_normal((co, c, k, k)).astype(np.float32)
        b = rng.standard_normal(co).astype(np.float32)
        dx, dw, db = cuda.to_device(x), cuda.to_device(wt), cuda.to_device(b)
        pads = ((pad, pad), (pad, pad))
        y = gconv.conv2d_forward(dx, dw, db, (1, 1), pads, (1, 1), 1, False)
        gy = cuda.to_device(rng.standard_normal(y.shape).astype(np.float32))
        gx, gw, gb = gconv.conv2d_backward(gy, dx, dw, (1, 1), pads, (1, 1), 1, False)
        fns = {"edgecnn_fwd": sync(lambda: gconv.conv2d_forward(dx, dw, db, (1, 1), pads, (1, 1), 1, False,
                                                                y)),
               "edgecnn_bwd": sync(lambda: gconv.conv2d_backward(gy, dx, dw, (1, 1), pads, (1, 1), 1, False,
                                                                 True, True, gx, gw, gb))}
        if torch is not None:
            tx = torch.tensor(x, device="cuda", requires_grad=True)
            tw = torch.tensor(wt, device="cuda", requires_grad=True)
            tb = torch.tensor(b, device="cuda", requires_grad=True)
            tgy = torch.tensor(gy.copy_to_host(), device="cuda")
            F = torch.nn.functional
            fns["torch_fwd"] = sync_torch(lambda: F.conv2d(tx.detach(), tw.detach(), tb.detach(),
                                                           padding=pad))
            fns["torch_bwd"] = sync_torch(lambda: torch.autograd.grad(F.conv2d(tx, tw, tb, padding=pad),
                                                                      (tx, tw, tb), tgy))
        flop = 2.0 * y.size * c * k * k
        rows.append((f"conv {label}", flop, interleaved(fns, repeats=args.repeats)))
    x = cuda.to_device(rng.standard_normal(POOL_SHAPE).astype(np.float32))
    y, am = gpool.max_pool2d_forward(x, (2, 2), (2, 2), (0, 0))
    gx = gpool.max_pool2d_backward(y, am, POOL_SHAPE)
    fns = {"edgecnn_fwd": sync(lambda: gpool.max_pool2d_forward(x, (2, 2), (2, 2), (0, 0), y, am)),
           "edgecnn_bwd": sync(lambda: gpool.max_pool2d_backward(y, am, POOL_SHAPE, gx,
                                                                 settings=((2, 2), (2, 2), (0, 0))))}
    rows.append((f"maxpool2x2 {POOL_SHAPE}", 0, interleaved(fns, repeats=args.repeats)))
    xd = cuda.to_device(rng.standard_normal((BATCH, 9216)).astype(np.float32))
    wd = cuda.to_device(rng.standard_normal((128, 9216)).astype(np.float32))
    yd = gdense.dense_forward(xd, wd)
    gyd = cuda.to_device(np.ones((BATCH, 128), np.float32))
    outs = gdense.dense_backward(gyd, xd, wd)
    fns = {"edgecnn_fwd": sync(lambda: gdense.dense_forward(xd, wd, None, yd)),
           "edgecnn_bwd": sync(lambda: gdense.dense_backward(gyd, xd, wd, True, True, *outs))}
    rows.append(("dense 9216->128", 2.0 * BATCH * 9216 * 128, interleaved(fns, repeats=args.repeats)))
    head = f"kernel (batch {BATCH})"
    print(f"\n{head:34} {'fwd ms':>8} {'GF/s':>7} {'bwd ms':>8} {'torch fwd':>9} {'ratio':>6}")
    out = []
    for label, flop, res in rows:
        f, bk = res["edgecnn_fwd"]["median"], res["edgecnn_bwd"]["median"]
        tf = res.get("torch_fwd", {}).get("median")
        gf = flop / f / 1e9 if flop else float("nan")
        print(f"{label:34} {f * 1e3:8.3f} {gf:7.1f} {bk * 1e3:8.3f} "
              f"{'' if tf is None else f'{tf * 1e3:9.3f}':>9} {'' if tf is None else f'{f / tf:6.2f}':>6}")
        out.append(dict(kernel=label, fwd_s=f, bwd_s=bk, torch_fwd_s=tf, flop=flop))
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--json", default=str(HERE / "results" / "cuda.json"))
    p.add_argument("--estimate-only", action="store_true", help="skip the GPU measurements")
    p.add_argument("--bandwidth-gbs", type=float, default=360.0, help="assumed DRAM bandwidth (RTX 3060)")
    p.add_argument("--peak-tflops", type=float, default=12.7, help="assumed FP32 peak (RTX 3060)")
    p.add_argument("--gemm-efficiency", type=float, default=0.12,
                   help="fraction of peak credited to the tiled GEMM kernels")
    p.add_argument("--launch-us", type=float, default=25.0, help="host time per kernel launch (numba)")
    p.add_argument("--batch", type=int, default=128, help="training batch (edgecnn train's default)")
    args = p.parse_args(argv)
    result = {"time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "measured": None}
    reason = "--estimate-only" if args.estimate_only else _gpu_reason()
    if reason is None:
        result["measured"] = measure(args)
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
