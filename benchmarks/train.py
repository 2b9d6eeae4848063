"""Training throughput (img/s) of the zoo models, edgecnn vs PyTorch CPU, same batch, same threads.

    python benchmarks/train.py [--models keras-mnist,lenet5,default] [--batch 128] [--threads 2]
                               [--rounds 7] [--steps 5] [--profile] [--json out.json] [--blas-threads 1]

Both sides train with Adam (lr 1e-3) on the same random batch with softmax cross-entropy. Rounds are
interleaved (edgecnn, torch, edgecnn, torch, ...) and medians reported, because the host is shared
and noisy. JIT warm-up (first step) is reported apart from steady state. ``--profile`` adds a
per-layer forward/backward breakdown of one edgecnn training step (median over steps).
"""
import argparse
import json
import os
import statistics
import sys
import time

# NumPy's OpenBLAS (used by the dense kernels and the conv GEMM path) starts its own thread pool, whose
# spinning threads fight Numba's: measured here, a 128x400 @ 400x120 matmul went from 48 ms to 0.4 ms
# with OpenBLAS capped to one thread. The cap must be set before NumPy is first imported.
if __name__ == "__main__":
    _blas = "1"
    for i, a in enumerate(sys.argv):
        if a.startswith("--blas-threads"):
            _blas = a.split("=", 1)[1] if "=" in a else sys.argv[i + 1]
    for _v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_v, _blas)


def _parse():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="keras-mnist,lenet5,default")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=7, help="interleaved rounds per side")
    ap.add_argument("--steps", type=int, default=5, help="training steps per round")
    ap.add_argument("--profile", action="store_true", help="per-layer time of an edgecnn step")
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--json", default=None, help="write the results here")
    ap.add_argument("--blas-threads", type=int, default=1,
                    help="OpenBLAS threads for NumPy matmul (set before NumPy loads; default 1)")
    return ap.parse_args()


def torch_model(name):
    import torch.nn as nn
    if name == "keras-mnist":
        return nn.Sequential(nn.Conv2d(1, 32, 3), nn.ReLU(), nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
                             nn.Dropout(0.25), nn.Flatten(), nn.Linear(9216, 128), nn.ReLU(), nn.Dropout(0.5),
                             nn.Linear(128, 10))
    if name == "lenet5":
        return nn.Sequential(nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 16, 5),
                             nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(400, 120), nn.ReLU(),
                             nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10))
    return None  # other models: translated from the edgecnn config below


def torch_from_edgecnn(model):
    """A PyTorch twin of a chain/DAG edgecnn model made of the layers the zoo uses."""
    import torch
    import torch.nn as nn
    from edgecnn import layers as L
    acts = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, None: None}
    mods, shapes = [], model._shapes
    for node in model._nodes:
        lay, c_in = node.layer, shapes[node.ins[0]][0]
        if isinstance(lay, L.Conv2D) and type(lay) is L.Conv2D:
            pad = lay.padding if lay.padding != "same" else "same"
            m = nn.Conv2d(c_in, lay.filters, lay.kernel_size, lay.strides, pad, lay.dilation, lay.groups,
                          bias=lay.use_bias)
        elif isinstance(lay, L.BatchNorm2D):
            m = nn.BatchNorm2d(c_in, eps=lay.eps, momentum=lay.momentum)
        elif isinstance(lay, L.MaxPool2D):
            m = nn.MaxPool2d(lay.pool_size, lay.strides, lay.padding)
        elif isinstance(lay, L.GlobalAvgPool2D):
            m = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        elif isinstance(lay, L.Dense):
            m = nn.Linear(shapes[node.ins[0]][0], lay.units, bias=lay.use_bias)
        elif isinstance(lay, L.Flatten):
            m = nn.Flatten()
        elif isinstance(lay, L.Dropout):
            m = nn.Dropout(lay.rate)
        else:
            raise NotImplementedError(f"no torch twin for {type(lay).__name__}")
        if not model.is_chain():
            raise NotImplementedError("torch twin only for chains")
        mods.append(m)
        if getattr(lay, "activation", None):
            mods.append(acts[lay.activation]())
    del torch
    return nn.Sequential(*mods)


def bench_edgecnn(name, batch, steps_per_round):
    import numpy as np
    from edgecnn import models, optim
    model = models.build(name)
    opt = optim.Adam(model.parameters(), lr=1e-3)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, 1, 28, 28)).astype(np.float32)
    y = rng.integers(0, 10, batch).astype(np.int32)
    t0 = time.perf_counter()
    model.train_step(x, y)
    opt.step()
    warm = time.perf_counter() - t0

    def run():
        t = time.perf_counter()
        for _ in range(steps_per_round):
            model.train_step(x, y)
            opt.step()
        return batch * steps_per_round / (time.perf_counter() - t)
    return model, opt, x, y, warm, run


def bench_torch(name, batch, steps_per_round, edgecnn_model):
    import torch
    import torch.nn.functional as F
    net = torch_model(name) or torch_from_edgecnn(edgecnn_model)
    net.train()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 1, 28, 28, generator=g)
    y = torch.randint(0, 10, (batch,), generator=g)

    def step():
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(net(x), y)
        loss.backward()
        opt.step()
    t0 = time.perf_counter()
    step()
    warm = time.perf_counter() - t0

    def run():
        t = time.perf_counter()
        for _ in range(steps_per_round):
            step()
        return batch * steps_per_round / (time.perf_counter() - t)
    return warm, run


def profile_step(model, opt, x, y, repeats=5):
    """Median seconds per layer (forward, backward) of a training step, plus loss and optimizer."""
    import numpy as np
    from edgecnn.kernels import softmax_cross_entropy
    nodes = model._nodes
    fw = [[] for _ in nodes]
    bw = [[] for _ in nodes]
    other = {"loss": [], "optimizer": [], "total": []}
    for _ in range(repeats):
        t_start = time.perf_counter()
        p = model.plan(x.shape[0])
        vals = p.vals
        vals[0] = x
        model._dropout_counter += 1
        for k, node in enumerate(nodes):
            ws = p.ws[k]
            if "seed" in ws:
                ws["seed"] = model._mask_seed(k)
            t = time.perf_counter()
            vals[node.out] = p.fwd_ops[k]([vals[i] for i in node.ins], p.y[node.out], ws, True)
            fw[k].append(time.perf_counter() - t)
        p.training = True
        model._last = p
        p.ensure_grads()
        t = time.perf_counter()
        softmax_cross_entropy(vals[nodes[-1].out], y, grad=p.g[nodes[-1].out])
        other["loss"].append(time.perf_counter() - t)
        for k in range(len(nodes) - 1, -1, -1):
            node = nodes[k]
            t = time.perf_counter()
            if model._requires_grad[node.out]:
                p.bwd_ops[k](p.g[node.out], [vals[i] for i in node.ins], vals[node.out], p.ws[k], p.gx[k])
                for g, s in p.accum[k]:
                    np.add(g, s, out=g)
            bw[k].append(time.perf_counter() - t)
        t = time.perf_counter()
        opt.step()
        other["optimizer"].append(time.perf_counter() - t)
        other["total"].append(time.perf_counter() - t_start)
    med = statistics.median
    rows = [(n.layer.name, type(n.layer).__name__, med(f), med(b)) for n, f, b in zip(nodes, fw, bw)]
    return rows, {k: med(v) for k, v in other.items()}


def main():
    args = _parse()
    os.environ.setdefault("NUMBA_NUM_THREADS", str(args.threads))
    from edgecnn._jit import set_num_threads
    set_num_threads(args.threads)
    have_torch = False
    if not args.no_torch:
        try:
            import torch
            torch.set_num_threads(args.threads)
            have_torch = True
        except ImportError:
            print("torch not installed: edgecnn figures only", file=sys.stderr)
    results = []
    for name in args.models.split(","):
        model, opt, x, y, e_warm, e_run = bench_edgecnn(name, args.batch, args.steps)
        if have_torch:
            t_warm, t_run = bench_torch(name, args.batch, args.steps, model)
        e_runs, t_runs = [], []
        for _ in range(args.rounds):  # interleaved A B A B
            e_runs.append(e_run())
            if have_torch:
                t_runs.append(t_run())
        r = {"model": name, "batch": args.batch, "threads": args.threads, "blas_threads": args.blas_threads,
             "edgecnn_img_s": statistics.median(e_runs), "edgecnn_first_step_s": e_warm,
             "edgecnn_runs": e_runs}
        if have_torch:
            r.update(torch_img_s=statistics.median(t_runs), torch_first_step_s=t_warm, torch_runs=t_runs,
                     ratio=statistics.median(e_runs) / statistics.median(t_runs))
        results.append(r)
        line = f"{name:12s} edgecnn {r['edgecnn_img_s']:9.0f} img/s"
        if have_torch:
            line += f"   torch {r['torch_img_s']:9.0f} img/s   ratio {r['ratio']:.2f}x"
        print(line + f"   (first step {e_warm:.2f}s)", flush=True)
        if args.profile:
            rows, other = profile_step(model, opt, x, y)
            total = other["total"]
            print(f"  per-layer profile, one step = {total * 1e3:.1f} ms")
            for lname, kind, f, b in rows:
                print(f"    {lname:22s} {kind:16s} fwd {f * 1e3:8.2f} ms  bwd {b * 1e3:8.2f} ms  "
                      f"({(f + b) / total:5.1%})")
            for k in ("loss", "optimizer"):
                print(f"    {k:39s} {other[k] * 1e3:8.2f} ms            ({other[k] / total:5.1%})")
            r["profile_ms"] = {"layers": [dict(name=a, type=b, fwd=f * 1e3, bwd=g * 1e3) for a, b, f, g in rows],
                               **{k: v * 1e3 for k, v in other.items()}}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
