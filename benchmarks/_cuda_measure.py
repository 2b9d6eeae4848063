"""The GPU half of benchmarks/cuda.py: the CPU benchmarks' cases, run on the device.

* kernels    benchmarks/kernels.py's conv shapes and pool shape (batch 64), and keras-mnist's dense layer,
             through edgecnn.kernels.cuda on device arrays; PyTorch CUDA beside them
* train      benchmarks/train.py's models, batch and Adam: ``model.to("cuda")`` + train_step + step on
             a device-resident batch, img/s; PyTorch CUDA on the twin model from benchmarks/train.py
* filters    benchmarks/filters.py's cases on a 640x480 frame held as device arrays, through
             edgecnn.filters; OpenCV on the CPU as the reference, and cv2.cuda when OpenCV has CUDA
* inference  the default model as ``edgecnn live`` runs it: host uint8 digits -> probabilities, batch 1
             and 4, through a Classifier on the device and (reference) on the CPU

Every device call is followed by a synchronize, so the figures are wall times of finished work.
``smoke=True`` runs every path once with tiny shapes, one round, no PyTorch and no cv2.cuda, so it can
run under the CUDA simulator (which proves the code runs, not how fast).
"""
import statistics
import sys
import time

import numpy as np

import filters as filters_bench
import kernels as kernels_bench
import train as train_bench
from _timing import first_call, interleaved

F32 = np.float32
NORMALIZATION = dict(kind="zscore", mean=33.3, std=78.6)  # as benchmarks/live.py builds its classifier


class Ctx:
    def __init__(self, repeats, smoke):
        from numba import cuda
        self.cuda = cuda
        self.smoke = smoke
        self.repeats = 1 if smoke else repeats
        self.torch = None if smoke else _torch_cuda()
        self.cv2cuda = None if smoke else _cv2_cuda()

    def sync(self, fn):
        cuda = self.cuda

        def g():
            fn()
            cuda.synchronize()
        return g

    def sync_torch(self, fn):
        torch = self.torch

        def g():
            fn()
            torch.cuda.synchronize()
        return g

    def time(self, fns):
        """{name: median seconds per call}, interleaved (one call per side, no warm-up when smoking)."""
        if self.smoke:
            res = interleaved(fns, repeats=1, warmup=0, target=0.0)
        else:
            res = interleaved(fns, repeats=self.repeats)
        return {k: v["median"] for k, v in res.items()}


def _torch_cuda():
    try:
        import torch
    except ImportError:
        return None
    return torch if torch.cuda.is_available() else None


def _cv2_cuda():
    try:
        import cv2
        return cv2 if cv2.cuda.getCudaEnabledDeviceCount() > 0 else None
    except Exception:
        return None


def _fmt(v, spec):
    return "-" if v is None else format(v, spec)


# ----------------------------------------------------------------------------------------------- kernels
def _kernel_cases(smoke):
    """(batch, conv shapes, pool shape, dense (in, out)): benchmarks/kernels.py's, or shrunk copies."""
    if not smoke:
        return kernels_bench.BATCH, kernels_bench.CONV_SHAPES, kernels_bench.POOL_SHAPE, (9216, 128)
    # one shape is enough to run the code path: the simulator takes seconds per conv launch
    (label, (c, h, w), co, k, pad), = kernels_bench.CONV_SHAPES[:1]
    convs = [(f"{label} [smoke]", (min(c, 2), min(h, 5), min(w, 5)), min(co, 2), k, pad)]
    return 2, convs, (2, 2, 4, 4), (16, 4)


def bench_kernels(ctx):
    from edgecnn.kernels.cuda import conv as gconv, dense as gdense, pool as gpool
    cuda, torch = ctx.cuda, ctx.torch
    batch, convs, pool_shape, (d_in, d_out) = _kernel_cases(ctx.smoke)
    rng = np.random.default_rng(0)
    rows = []
    for label, (c, h, w), co, k, pad in convs:
        x = rng.standard_normal((batch, c, h, w)).astype(F32)
        wt = (rng.standard_normal((co, c, k, k)) / np.sqrt(c * k * k)).astype(F32)
        b = rng.standard_normal(co).astype(F32)
        dx, dw, db = cuda.to_device(x), cuda.to_device(wt), cuda.to_device(b)
        s = ((1, 1), ((pad, pad), (pad, pad)), (1, 1), 1, False)
        y = gconv.conv2d_forward(dx, dw, db, *s)
        gy = cuda.to_device(rng.standard_normal(y.shape).astype(F32))
        gx, gw, gb = gconv.conv2d_backward(gy, dx, dw, *s)
        fns = {"edgecnn_fwd": ctx.sync(lambda: gconv.conv2d_forward(dx, dw, db, *s, y)),
               "edgecnn_bwd": ctx.sync(lambda: gconv.conv2d_backward(gy, dx, dw, *s, True, True, gx, gw, gb))}
        if torch is not None:
            F = torch.nn.functional
            tx, tw, tb = (torch.tensor(a, device="cuda", requires_grad=True) for a in (x, wt, b))
            tgy = torch.tensor(gy.copy_to_host(), device="cuda")

            def t_fwd(tx=tx, tw=tw, tb=tb, pad=pad):
                with torch.no_grad():
                    return F.conv2d(tx, tw, tb, padding=pad)
            fns["torch_fwd"] = ctx.sync_torch(t_fwd)
            fns["torch_bwd"] = ctx.sync_torch(lambda: torch.autograd.grad(F.conv2d(tx, tw, tb, padding=pad),
                                                                          (tx, tw, tb), tgy))
        rows.append(_kernel_row(f"conv {label}", batch, 2.0 * y.size * c * k * k, ctx.time(fns)))

    x = cuda.to_device(rng.standard_normal(pool_shape).astype(F32))
    y, am = gpool.max_pool2d_forward(x, (2, 2), (2, 2), (0, 0))
    gx = gpool.max_pool2d_backward(y, am, pool_shape)
    fns = {"edgecnn_fwd": ctx.sync(lambda: gpool.max_pool2d_forward(x, (2, 2), (2, 2), (0, 0), y, am)),
           # the call edgecnn.kernels.max_pool2d_backward (and so the executor) makes: one thread per plane
           "edgecnn_bwd": ctx.sync(lambda: gpool.max_pool2d_backward(y, am, pool_shape, gx))}
    if torch is not None:
        F = torch.nn.functional
        tpx = torch.tensor(x.copy_to_host(), device="cuda", requires_grad=True)
        tpg = torch.ones(y.shape, device="cuda")

        def tp_fwd():
            with torch.no_grad():
                return F.max_pool2d(tpx, 2)
        fns["torch_fwd"] = ctx.sync_torch(tp_fwd)
        fns["torch_bwd"] = ctx.sync_torch(lambda: torch.autograd.grad(F.max_pool2d(tpx, 2), (tpx,), tpg))
    rows.append(_kernel_row(f"maxpool2x2 {tuple(pool_shape)}", pool_shape[0], 0.0, ctx.time(fns)))

    xd = cuda.to_device(rng.standard_normal((batch, d_in)).astype(F32))
    wd = cuda.to_device((rng.standard_normal((d_out, d_in)) / np.sqrt(d_in)).astype(F32))
    bd = cuda.to_device(np.zeros(d_out, F32))
    yd = gdense.dense_forward(xd, wd, bd)
    gyd = cuda.to_device(np.ones((batch, d_out), F32))
    outs = gdense.dense_backward(gyd, xd, wd)
    fns = {"edgecnn_fwd": ctx.sync(lambda: gdense.dense_forward(xd, wd, bd, yd)),
           "edgecnn_bwd": ctx.sync(lambda: gdense.dense_backward(gyd, xd, wd, True, True, *outs))}
    if torch is not None:
        F = torch.nn.functional
        txd = torch.tensor(xd.copy_to_host(), device="cuda", requires_grad=True)
        twd = torch.tensor(wd.copy_to_host(), device="cuda", requires_grad=True)
        tbd = torch.zeros(d_out, device="cuda", requires_grad=True)
        tgd = torch.ones((batch, d_out), device="cuda")

        def td_fwd():
            with torch.no_grad():
                return F.linear(txd, twd, tbd)
        fns["torch_fwd"] = ctx.sync_torch(td_fwd)
        fns["torch_bwd"] = ctx.sync_torch(lambda: torch.autograd.grad(F.linear(txd, twd, tbd),
                                                                      (txd, twd, tbd), tgd))
    rows.append(_kernel_row(f"dense {d_in}->{d_out}", batch, 2.0 * batch * d_in * d_out, ctx.time(fns)))

    print(f"\n{'kernel (device arrays)':36} {'batch':>5} {'fwd ms':>8} {'GF/s':>7} {'torch':>8} {'ratio':>6} "
          f"{'bwd ms':>8} {'torch':>8} {'ratio':>6}")
    for r in rows:
        gf = r["flop"] / r["edgecnn_fwd_s"] / 1e9 if r["flop"] else None
        line = f"{r['kernel']:36} {r['batch']:5d}"
        for d in ("fwd", "bwd"):
            e, t = r[f"edgecnn_{d}_s"], r[f"torch_{d}_s"]
            line += f" {e * 1e3:8.3f}" + (f" {_fmt(gf, '7.1f')}" if d == "fwd" else "")
            line += f" {_fmt(t and t * 1e3, '8.3f')} {_fmt(t and e / t, '6.2f')}"
        print(line)
    return rows


def _kernel_row(label, batch, flop, t):
    return dict(kernel=label, batch=batch, flop=flop, edgecnn_fwd_s=t["edgecnn_fwd"],
                edgecnn_bwd_s=t["edgecnn_bwd"], torch_fwd_s=t.get("torch_fwd"),
                torch_bwd_s=t.get("torch_bwd"))


# ------------------------------------------------------------------------------------------------- train
def _train_defaults():
    """benchmarks/train.py's defaults (--models, --batch, --rounds, --steps); its parser reads sys.argv."""
    saved = sys.argv
    sys.argv = [saved[0] if saved else "train.py"]
    try:
        a = train_bench._parse()
    finally:
        sys.argv = saved
    return a.models.split(","), a.batch, a.rounds, a.steps


def tiny_model(seed=0):
    """A few-hundred-parameter model with every layer kind of the zoo (the smoke run's model)."""
    from edgecnn import layers as L
    from edgecnn.graph import Sequential
    return Sequential([L.Conv2D(2, 3, padding=1, use_bias=False), L.BatchNorm2D(), L.Activation("relu"),
                       L.MaxPool2D(2), L.Dropout(0.25), L.Flatten(), L.Dense(10)], input_shape=(1, 4, 4),
                      seed=seed)


def _torch_trainer(ctx, name, model, batch, steps):
    torch = ctx.torch
    F = torch.nn.functional
    net = (train_bench.torch_model(name) or train_bench.torch_from_edgecnn(model)).cuda().train()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, *model.input_shape, generator=g).cuda()
    y = torch.randint(0, 10, (batch,), generator=g).cuda()

    def step():
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(net(x), y).backward()
        opt.step()

    def run():
        t = time.perf_counter()
        for _ in range(steps):
            step()
        torch.cuda.synchronize()
        return batch * steps / (time.perf_counter() - t)
    warm = first_call(ctx.sync_torch(step))
    return warm, run


def bench_train(ctx):
    from edgecnn import models, optim
    cuda = ctx.cuda
    if ctx.smoke:
        cases, batch, rounds, steps = [("tiny [smoke]", tiny_model)], 2, 1, 1
    else:
        names, batch, rounds, steps = _train_defaults()
        cases = [(n, lambda n=n: models.build(n)) for n in names]
    rows = []
    for name, build in cases:
        model = build().to("cuda")
        opt = optim.Adam(model.parameters(), lr=1e-3)
        rng = np.random.default_rng(0)
        x = cuda.to_device(rng.standard_normal((batch, *model.input_shape)).astype(F32))
        y = cuda.to_device(rng.integers(0, model.output_shape[-1], batch).astype(np.int32))

        def step():
            model.train_step(x, y)
            opt.step()

        def run():
            t = time.perf_counter()
            for _ in range(steps):
                step()
            cuda.synchronize()
            return batch * steps / (time.perf_counter() - t)
        warm = first_call(ctx.sync(step))
        t_warm, t_run = None, None
        if ctx.torch is not None:
            t_warm, t_run = _torch_trainer(ctx, name, model, batch, steps)
        e_runs, t_runs = [], []
        for _ in range(rounds):  # interleaved, as benchmarks/train.py does
            e_runs.append(run())
            if t_run is not None:
                t_runs.append(t_run())
        r = dict(model=name, batch=batch, steps_per_round=steps, rounds=rounds,
                 edgecnn_img_s=statistics.median(e_runs), edgecnn_first_step_s=warm, edgecnn_runs=e_runs,
                 torch_img_s=statistics.median(t_runs) if t_runs else None, torch_first_step_s=t_warm)
        r["edgecnn_step_s"] = batch / r["edgecnn_img_s"]
        r["ratio"] = r["edgecnn_img_s"] / r["torch_img_s"] if t_runs else None
        rows.append(r)
    print(f"\n{'training on the device (Adam)':30} {'batch':>5} {'img/s':>9} {'ms/step':>8} {'first s':>8} "
          f"{'torch img/s':>11} {'ratio':>6}")
    for r in rows:
        print(f"{r['model']:30} {r['batch']:5d} {r['edgecnn_img_s']:9.0f} {r['edgecnn_step_s'] * 1e3:8.2f} "
              f"{r['edgecnn_first_step_s']:8.2f} {_fmt(r['torch_img_s'], '11.0f')} "
              f"{_fmt(r['ratio'], '6.2f')}")
    return rows


# ----------------------------------------------------------------------------------------------- filters
class _DeviceFilters:
    """Stands in for edgecnn.filters in filters_bench.cases(): every host array a case names gets one
    device twin (made at its first use, kept by identity), so the cases run on device arrays."""

    def __init__(self, cuda):
        from edgecnn import filters
        self._F, self._cuda, self._dev = filters, cuda, {}

    def kernel(self, name):
        return self._F.kernel(name)

    def device(self, a):
        hit = self._dev.get(id(a))
        if hit is None:
            hit = self._dev[id(a)] = (a, self._cuda.to_device(a))  # the host array is kept alive with it
        return hit[1]

    def apply(self, image, name, out=None, **params):
        out = None if out is None else self.device(out)
        return self._F.apply(self.device(image), name, out=out, **params)


class _CvCuda:
    """Stands in for cv2 in filters_bench.cases(): the same calls through cv2.cuda, on GpuMats uploaded
    once per host array (kept by identity) and filter objects created once per configuration."""

    def __init__(self, cv2):
        self._cv2, self._cc, self._mats, self._filters = cv2, cv2.cuda, {}, {}

    def __getattr__(self, name):  # constants: BORDER_*, CV_32F, COLOR_BGR2GRAY
        return getattr(self._cv2, name)

    def sync(self):
        self._cc.Stream_Null().waitForCompletion()

    def _m(self, a):
        hit = self._mats.get(id(a))
        if hit is None:
            m = self._cv2.cuda_GpuMat()
            m.upload(a)
            hit = self._mats[id(a)] = (a, m)
        return hit[1]

    def _types(self, src, ddepth=-1):
        cv2 = self._cv2
        depth = cv2.CV_8U if src.dtype == np.uint8 else cv2.CV_32F
        cn = 1 if src.ndim == 2 else src.shape[2]
        return cv2.CV_MAKETYPE(depth, cn), cv2.CV_MAKETYPE(depth if ddepth < 0 else ddepth, cn)

    def _filter(self, key, make, src, dst):
        f = self._filters.get(key)
        if f is None:
            f = self._filters[key] = make()
        f.apply(self._m(src), self._m(dst))
        return dst

    def Sobel(self, src, ddepth, dx, dy, dst):
        st, dt = self._types(src, ddepth)
        return self._filter(("sobel", st, dt, dx, dy), lambda: self._cc.createSobelFilter(st, dt, dx, dy),
                            src, dst)

    def Scharr(self, src, ddepth, dx, dy, dst):
        st, dt = self._types(src, ddepth)
        return self._filter(("scharr", st, dt, dx, dy), lambda: self._cc.createScharrFilter(st, dt, dx, dy),
                            src, dst)

    def Laplacian(self, src, ddepth, dst, ksize=1):
        st, dt = self._types(src, ddepth)
        return self._filter(("laplacian", st, dt, ksize),
                            lambda: self._cc.createLaplacianFilter(st, dt, ksize), src, dst)

    def filter2D(self, src, ddepth, kernel, dst, borderType=None):
        st, dt = self._types(src, ddepth)
        border = self._cv2.BORDER_REFLECT_101 if borderType is None else borderType
        return self._filter(("linear", st, dt, kernel.tobytes(), border),
                            lambda: self._cc.createLinearFilter(st, dt, kernel, borderMode=border), src, dst)

    def GaussianBlur(self, src, ksize, sigma, dst):
        st, _ = self._types(src)
        return self._filter(("gauss", st, ksize, sigma),
                            lambda: self._cc.createGaussianFilter(st, st, ksize, sigma), src, dst)

    def blur(self, src, ksize, dst):
        st, _ = self._types(src)
        return self._filter(("box", st, ksize), lambda: self._cc.createBoxFilter(st, st, ksize), src, dst)

    def cvtColor(self, src, code, dst):
        self._cc.cvtColor(self._m(src), code, self._m(dst))
        return dst

    def magnitude(self, x, y, magnitude):
        self._cc.magnitude(self._m(x), self._m(y), self._m(magnitude))
        return magnitude

    def phase(self, x, y, angle):
        self._cc.phase(self._m(x), self._m(y), self._m(angle))
        return angle


def _frames(cv2, h, w):
    """A BGR uint8 frame (smooth pattern plus noise), its float32 copy and their gray versions."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:h, 0:w]
    base = (128 + 60 * np.sin(xx / 37.0) * np.cos(yy / 23.0))[..., None] + rng.normal(0, 20, (h, w, 3))
    c8 = np.clip(base, 0, 255).astype(np.uint8)
    g8 = cv2.cvtColor(c8, cv2.COLOR_BGR2GRAY)
    return g8, g8.astype(F32), c8, c8.astype(F32)


def bench_filters(ctx):
    import cv2
    h, w = (8, 8) if ctx.smoke else (480, 640)
    frames = _frames(cv2, h, w)
    dev_f = _DeviceFilters(ctx.cuda)
    cases = filters_bench.cases(cv2, dev_f, *frames)
    cvc, cv_cuda = None, [None] * len(cases)
    if ctx.cv2cuda is not None:
        cvc = _CvCuda(cv2)
        cv_cuda = [c for _, _, c in filters_bench.cases(cvc, dev_f, *frames)]
    rows = []
    for (label, ours, cv_cpu), cvg in zip(cases, cv_cuda):
        fns = {"edgecnn": ctx.sync(ours), "opencv_cpu": cv_cpu}
        note = None
        if cvg is not None:
            try:
                cvg()
                cvc.sync()
                fns["opencv_cuda"] = lambda cvg=cvg: (cvg(), cvc.sync())
            except cv2.error as e:  # a type or size cv2.cuda does not support
                note = f"cv2.cuda: {str(e).strip().splitlines()[-1][:80]}"
        t = ctx.time(fns)
        tc = t.get("opencv_cuda")
        rows.append(dict(filter=label, frame=f"{w}x{h}", edgecnn_us=t["edgecnn"] * 1e6,
                         opencv_cpu_us=t["opencv_cpu"] * 1e6, opencv_cuda_us=tc and tc * 1e6,
                         ratio_cpu=t["edgecnn"] / t["opencv_cpu"], ratio_cuda=tc and t["edgecnn"] / tc,
                         note=note))
    print(f"\n{f'filter ({w}x{h}, device arrays)':44} {'edgecnn us':>10} {'cv2 cpu':>9} {'ratio':>6} "
          f"{'cv2.cuda':>9} {'ratio':>6}")
    for r in rows:
        print(f"{r['filter']:44} {r['edgecnn_us']:10.1f} {r['opencv_cpu_us']:9.1f} {r['ratio_cpu']:6.2f} "
              f"{_fmt(r['opencv_cuda_us'], '9.1f')} {_fmt(r['ratio_cuda'], '6.2f')}")
    return rows


# --------------------------------------------------------------------------------------------- inference
def bench_inference(ctx):
    from edgecnn import models
    from edgecnn.data import Normalization
    from edgecnn.io import Classifier
    name, build = ("tiny [smoke]", tiny_model) if ctx.smoke else ("default", lambda: models.build("default"))
    norm = Normalization(NORMALIZATION["kind"], mean=NORMALIZATION["mean"], std=NORMALIZATION["std"])
    gpu = Classifier(build(), {"normalization": norm}).to("cuda")
    cpu = Classifier(build(), {"normalization": norm})
    h, w = gpu.input_shape[-2:]
    rng = np.random.default_rng(0)
    rows = []
    for batch in (1, 4):
        images = rng.integers(0, 256, (batch, h, w), dtype=np.uint8)
        first = first_call(lambda: gpu.predict(images))   # predict returns host probabilities: synchronous
        cpu.predict(images)
        t = ctx.time({"cuda": lambda: gpu.predict(images), "cpu": lambda: cpu.predict(images)})
        rows.append(dict(model=name, batch=batch, edgecnn_cuda_ms=t["cuda"] * 1e3,
                         edgecnn_cpu_ms=t["cpu"] * 1e3, cuda_img_s=batch / t["cuda"], first_call_s=first))
    print(f"\n{'inference, host uint8 -> probabilities':40} {'batch':>5} {'cuda ms':>8} {'img/s':>8} "
          f"{'cpu ms':>8}")
    for r in rows:
        print(f"{r['model']:40} {r['batch']:5d} {r['edgecnn_cuda_ms']:8.3f} {r['cuda_img_s']:8.0f} "
              f"{r['edgecnn_cpu_ms']:8.3f}")
    return rows


BENCHES = (("kernels", bench_kernels), ("train", bench_train), ("filters", bench_filters),
           ("inference", bench_inference))


def _device_name(cuda):
    from edgecnn.kernels.cuda import _device
    if _device.simulator_enabled():
        return "CUDA simulator"
    name = cuda.get_current_device().name
    return name.decode() if isinstance(name, bytes) else str(name)


def run(repeats=15, smoke=False):
    """{benchmark: [row, ...]} for every benchmark, printing a table for each."""
    ctx = Ctx(repeats, smoke)
    print(f"device: {_device_name(ctx.cuda)}; torch "
          f"{ctx.torch.__version__ if ctx.torch else 'not used'}; "
          f"cv2.cuda {'yes' if ctx.cv2cuda else 'not used'}; "
          f"{ctx.repeats} interleaved rounds, medians{'; SMOKE run: tiny shapes' if smoke else ''}")
    return {name: fn(ctx) for name, fn in BENCHES}
