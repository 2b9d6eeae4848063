"""Kernel benchmarks: conv2d forward/backward and 2x2 max pooling, edgecnn vs PyTorch CPU.

    python benchmarks/kernels.py [--threads 2] [--repeats 15] [--quick] [--json PATH]

For every shape: edgecnn and (when importable) PyTorch CPU with the same thread count, timed in
interleaved rounds in the same process; medians; ratio = edgecnn time / torch time (below 1 means
edgecnn is faster). Also the NumPy float32 2048x2048 matmul (the machine's practical peak) and
the first-call (JIT compile or cache load) time, reported apart from steady state.
edgecnn is called with preallocated outputs, as the graph executor calls it; PyTorch allocates
its results as it normally does. Results: table on stdout, JSON in benchmarks/results/kernels.json.
"""
import argparse
import json
import os
import pathlib
import platform
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

# (label, (C, H, W), C_out, kernel, padding), batch 64.
CONV_SHAPES = [
    ("(1,28,28)->32 3x3", (1, 28, 28), 32, 3, 0),
    ("(32,26,26)->64 3x3", (32, 26, 26), 64, 3, 0),
    ("(1,28,28)->6 5x5 p2", (1, 28, 28), 6, 5, 2),
    ("(6,14,14)->16 5x5", (6, 14, 14), 16, 5, 0),
    ("(16,32,32)->32 3x3 p1", (16, 32, 32), 32, 3, 1),
    ("(64,16,16)->64 3x3 p1", (64, 16, 16), 64, 3, 1),
]
POOL_SHAPE = (64, 64, 24, 24)
BATCH = 64


def _parse(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, default=2, help="threads for Numba, OpenBLAS and PyTorch")
    p.add_argument("--repeats", type=int, default=15, help="interleaved rounds per figure (median)")
    p.add_argument("--quick", action="store_true", help="5 rounds, fewer warm-ups (a smoke run)")
    p.add_argument("--no-torch", action="store_true", help="skip PyTorch even when installed")
    p.add_argument("--json", default=str(HERE / "results" / "kernels.json"), help="where to write JSON")
    return p.parse_args(argv)


def _gemm_peak(np, interleaved, repeats):
    a = np.random.default_rng(0).standard_normal((2048, 2048)).astype(np.float32)
    b, c = a.copy(), np.empty_like(a)
    t = interleaved({"matmul": lambda: np.matmul(a, b, out=c)}, repeats=repeats, warmup=1)["matmul"]
    return 2 * 2048 ** 3 / t["median"] / 1e9


def _torch(no_torch, threads):
    if no_torch:
        return None
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(threads)
    return torch


def _conv_case(np, K, torch, shape, C_out, k, pad):
    rng = np.random.default_rng(0)
    C, H, W = shape
    x = rng.standard_normal((BATCH, C, H, W)).astype(np.float32)
    w = (rng.standard_normal((C_out, C, k, k)) / np.sqrt(C * k * k)).astype(np.float32)
    b = rng.standard_normal(C_out).astype(np.float32)
    y_shape = K.conv2d_output_shape(x.shape, w.shape, padding=pad)
    gy = rng.standard_normal(y_shape).astype(np.float32)
    y, gx, gw, gb = (np.empty(s, np.float32) for s in (y_shape, x.shape, w.shape, b.shape))
    flop = 2.0 * BATCH * C_out * C * k * k * y_shape[2] * y_shape[3]
    fns = {
        "edgecnn_fwd": lambda: K.conv2d_forward(x, w, b, padding=pad, out=y),
        "edgecnn_bwd": lambda: K.conv2d_backward(gy, x, w, padding=pad, gx=gx, gw=gw, gb=gb),
    }
    if torch is not None:
        tx, tw, tb, tgy = (torch.from_numpy(a) for a in (x, w, b, gy))
        conv_bwd = torch.ops.aten.convolution_backward

        def t_fwd():
            with torch.no_grad():
                return torch.nn.functional.conv2d(tx, tw, tb, padding=pad)

        def t_bwd():
            return conv_bwd(tgy, tx, tw, [C_out], [1, 1], [pad, pad], [1, 1], False, [0, 0], 1,
                            [True, True, True])
        fns["torch_fwd"], fns["torch_bwd"] = t_fwd, t_bwd
    return fns, flop, flop * 2  # backward: input + weight gradients (bias sum not counted)


def _pool_case(np, K, torch):
    x = np.random.default_rng(1).standard_normal(POOL_SHAPE).astype(np.float32)
    y_shape = (POOL_SHAPE[0], POOL_SHAPE[1], POOL_SHAPE[2] // 2, POOL_SHAPE[3] // 2)
    y, am = np.empty(y_shape, np.float32), np.empty(y_shape, np.int32)
    gy, gx = np.ones(y_shape, np.float32), np.empty(POOL_SHAPE, np.float32)
    K.max_pool2d_forward(x, 2, out=y, argmax=am)
    fns = {"edgecnn_fwd": lambda: K.max_pool2d_forward(x, 2, out=y, argmax=am),
           "edgecnn_bwd": lambda: K.max_pool2d_backward(gy, am, POOL_SHAPE, gx=gx)}
    if torch is not None:
        tx, tgy = torch.from_numpy(x), torch.from_numpy(gy)
        _, tidx = torch.nn.functional.max_pool2d(tx, 2, return_indices=True)

        def t_fwd():
            with torch.no_grad():
                return torch.nn.functional.max_pool2d(tx, 2)

        def t_bwd():
            return torch.ops.aten.max_pool2d_with_indices_backward(tgy, tx, [2, 2], [2, 2], [0, 0], [1, 1],
                                                                   False, tidx)
        fns["torch_fwd"], fns["torch_bwd"] = t_fwd, t_bwd
    return fns


def _row(label, fns, res, first, flop_f, flop_b):
    row = {"shape": label, "first_call_s": first}
    for d, flop in (("fwd", flop_f), ("bwd", flop_b)):
        e = res[f"edgecnn_{d}"]["median"]
        row[f"edgecnn_{d}_ms"] = e * 1e3
        row[f"edgecnn_{d}_min_ms"] = res[f"edgecnn_{d}"]["min"] * 1e3
        row[f"edgecnn_{d}_gflops"] = flop / e / 1e9 if flop else None
        if f"torch_{d}" in res:
            t = res[f"torch_{d}"]["median"]
            row[f"torch_{d}_ms"] = t * 1e3
            row[f"torch_{d}_min_ms"] = res[f"torch_{d}"]["min"] * 1e3
            row[f"torch_{d}_gflops"] = flop / t / 1e9 if flop else None
            row[f"ratio_{d}"] = e / t
    return row


def _fmt(v, spec):
    return "-" if v is None else format(v, spec)


def _print_table(rows, has_torch):
    head = f"{'shape (batch 64)':24} {'first':>7}  {'fwd ms':>7} {'GF/s':>6}"
    if has_torch:
        head += f" {'torch':>7} {'GF/s':>6} {'ratio':>6}"
    head += f"  {'bwd ms':>7} {'GF/s':>6}"
    if has_torch:
        head += f" {'torch':>7} {'GF/s':>6} {'ratio':>6}"
    print(head)
    for r in rows:
        line = f"{r['shape']:24} {_fmt(r['first_call_s'], '6.2f')}s"
        for d in ("fwd", "bwd"):
            line += f"  {r[f'edgecnn_{d}_ms']:7.3f} {_fmt(r[f'edgecnn_{d}_gflops'], '6.1f')}"
            if has_torch:
                line += (f" {_fmt(r.get(f'torch_{d}_ms'), '7.3f')} {_fmt(r.get(f'torch_{d}_gflops'), '6.1f')}"
                         f" {_fmt(r.get(f'ratio_{d}'), '6.2f')}")
        print(line)


def main(argv=None):
    args = _parse(argv)
    # OpenBLAS reads its thread count once, when NumPy is first imported.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", str(args.threads))
    import numpy as np
    from _timing import first_call, interleaved
    t0 = time.perf_counter()
    import edgecnn.kernels as K
    from edgecnn._jit import set_num_threads
    import_s = time.perf_counter() - t0
    threads = set_num_threads(args.threads)
    repeats = 5 if args.quick else args.repeats
    torch = _torch(args.no_torch, threads)

    peak = _gemm_peak(np, interleaved, repeats)
    print(f"threads {threads} (Numba; OPENBLAS_NUM_THREADS={os.environ['OPENBLAS_NUM_THREADS']}); "
          f"torch {torch.__version__ if torch else 'not used'}; {repeats} interleaved rounds, medians; "
          f"load average {' '.join(f'{v:.1f}' for v in os.getloadavg())}")
    print(f"NumPy float32 matmul 2048x2048: {peak:.1f} GFLOPS (practical peak); "
          f"import edgecnn.kernels {import_s:.2f}s")
    rows = []
    for label, shape, C_out, k, pad in CONV_SHAPES:
        fns, flop_f, flop_b = _conv_case(np, K, torch, shape, C_out, k, pad)
        first = first_call(fns["edgecnn_fwd"]) + first_call(fns["edgecnn_bwd"])
        res = interleaved(fns, repeats=repeats, warmup=1 if args.quick else 3)
        rows.append(_row(label, fns, res, first, flop_f, flop_b))
    try:
        K.max_pool2d_forward, K.max_pool2d_backward  # noqa: B018
        pool_ok = True
    except AttributeError:
        pool_ok = False
        print("note: edgecnn.kernels.max_pool2d_forward/backward not importable yet; pooling row skipped")
    if pool_ok:
        t1 = time.perf_counter()
        fns = _pool_case(np, K, torch)
        first = time.perf_counter() - t1
        res = interleaved(fns, repeats=repeats, warmup=1 if args.quick else 3)
        rows.append(_row(f"maxpool2x2 {POOL_SHAPE}", fns, res, first, 0, 0))
    print()
    _print_table(rows, torch is not None)
    print("\nratio = edgecnn / torch time (< 1: edgecnn faster); first = first forward + backward call "
          "(JIT compile or cache load), not in the steady-state figures")
    out = {"threads": threads, "repeats": repeats, "batch": BATCH, "numpy_matmul_2048_gflops": peak,
           "torch": None if torch is None else torch.__version__, "python": platform.python_version(),
           "import_kernels_s": import_s, "load_average": os.getloadavg(), "rows": rows,
           "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    path = pathlib.Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
