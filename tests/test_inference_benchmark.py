"""benchmarks/inference.py runs end to end (edgecnn only: PyTorch and onnxruntime are not test
dependencies), and its onnxruntime graph reproduces edgecnn's logits where onnxruntime is installed."""
import importlib.util
import json
import pathlib

import numpy as np
import pytest

from edgecnn import models

BENCH = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "inference.py"


def load_bench():
    spec = importlib.util.spec_from_file_location("bench_inference", BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_inference_benchmark_runs_and_writes_json(tmp_path, capsys):
    bench = load_bench()
    out = tmp_path / "inference.json"
    assert bench.main(["--repeats", "1", "--models", "lenet5", "--with", "", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [r["model"] for r in rows] == ["lenet5"]
    assert rows[0]["fallback"] is None
    assert rows[0]["bs1_us"]["edgecnn_plan"] > 0 and rows[0]["bs256_img_s"]["edgecnn"] > 0
    assert "lenet5" in capsys.readouterr().out


@pytest.mark.parametrize("name", ["default", "keras-mnist"])
def test_onnx_graph_reproduces_edgecnn(name):
    ort = pytest.importorskip("onnxruntime")
    onnx = pytest.importorskip("onnx")
    bench = load_bench()
    model = models.build(name, seed=1)
    rng = np.random.default_rng(2)
    for p in model.parameters():  # batch norms' running statistics away from (0, 1) too
        p.value[:] = rng.uniform(0.5, 1.5, p.value.shape) if "running_var" in p.name else \
            rng.normal(0, 0.2, p.value.shape)
    x = np.random.default_rng(0).random((3, 1, 28, 28), dtype=np.float32)
    sess = bench._ort_session(ort, bench.onnx_model(onnx, model), 1)
    got, want = sess.run(None, {"x": x})[0], model.predict(x)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


@pytest.mark.parametrize("argv, says", [(["--models", "resnet"], "--models must name zoo models"),
                                        (["--models", ","], "--models must name zoo models"),
                                        (["--threads", "0"], "--threads must be 1..")])
def test_bad_options_are_one_line_naming_the_option(argv, says, tmp_path):
    with pytest.raises(SystemExit, match=says):
        load_bench().main(argv + ["--with", "", "--json", str(tmp_path / "x.json")])
    assert not (tmp_path / "x.json").exists()
