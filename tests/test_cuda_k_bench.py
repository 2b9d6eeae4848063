"""``benchmarks/cuda.py --smoke`` (simulator): every GPU measurement path runs once with tiny shapes and
writes a row per benchmark case with positive times. This checks the benchmark code, not speed."""
import importlib.util
import json
import pathlib
import sys

import pytest

from test_cuda_sim import skip_unless_cuda

skip_unless_cuda()

pytestmark = [pytest.mark.usefixtures("small_blocks"),
              pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")]
from test_cuda_sim import small_blocks  # noqa: E402,F401  (fixture)

BENCH = pathlib.Path(__file__).resolve().parent.parent / "benchmarks"


@pytest.fixture
def bench_cuda():
    """benchmarks/cuda.py as a module (it puts benchmarks/ on sys.path; undone afterwards)."""
    path, mods = list(sys.path), set(sys.modules)
    spec = importlib.util.spec_from_file_location("edgecnn_bench_cuda", BENCH / "cuda.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    try:
        yield mod
    finally:
        sys.path[:] = path
        for name in set(sys.modules) - mods:
            if getattr(sys.modules[name], "__file__", None) and str(BENCH) in str(sys.modules[name].__file__):
                del sys.modules[name]


def test_smoke_run_writes_a_row_per_case(bench_cuda, tmp_path, capsys):
    out = tmp_path / "cuda.json"
    assert bench_cuda.main(["--smoke", "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    m = res["measured"]
    assert res["smoke"] is True and "skipped" not in res, res.get("skipped")
    import filters as filters_bench  # the CPU benchmarks: the cases to cover
    import kernels as kernels_bench
    assert set(m) == {"kernels", "train", "filters", "inference"}

    # one conv shape (the first of benchmarks/kernels.py, shrunk), max pool, dense
    assert [r["kernel"].split()[0] for r in m["kernels"]] == ["conv", "maxpool2x2", "dense"]
    assert kernels_bench.CONV_SHAPES[0][0] in m["kernels"][0]["kernel"]
    for r in m["kernels"]:
        assert r["edgecnn_fwd_s"] > 0 and r["edgecnn_bwd_s"] > 0, r
        assert r["torch_fwd_s"] is None  # no PyTorch in a smoke run

    (t,) = m["train"]
    assert t["edgecnn_img_s"] > 0 and t["edgecnn_step_s"] > 0 and t["edgecnn_first_step_s"] > 0, t
    assert t["batch"] == 2 and t["torch_img_s"] is None

    n_cases = len(filters_bench.cases(_Any(), _Any(), *_frames()))
    assert len(m["filters"]) == n_cases and n_cases >= 30
    assert len({r["filter"] for r in m["filters"]}) == n_cases
    for r in m["filters"]:
        assert r["edgecnn_us"] > 0 and r["opencv_cpu_us"] > 0 and r["opencv_cuda_us"] is None, r

    assert [r["batch"] for r in m["inference"]] == [1, 4]
    for r in m["inference"]:
        assert r["edgecnn_cuda_ms"] > 0 and r["edgecnn_cpu_ms"] > 0 and r["cuda_img_s"] > 0, r

    assert {e["model"] for e in res["estimate"]} == set(bench_cuda.ZOO)  # the roofline is still there
    printed = capsys.readouterr().out
    for head in ("kernel (device arrays)", "training on the device", "filter (8x8", "inference, host uint8",
                 "Roofline estimate"):
        assert head in printed


class _Any:
    """Accepts any attribute and call (counts filters_bench.cases() without running a filter)."""

    def __getattr__(self, name):
        return _Any()

    def __call__(self, *a, **k):
        return _Any()


def _frames():
    import numpy as np
    g = np.zeros((8, 8), np.uint8)
    c = np.zeros((8, 8, 3), np.uint8)
    return g, g.astype(np.float32), c, c.astype(np.float32)
