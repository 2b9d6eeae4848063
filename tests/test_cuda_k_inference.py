"""Inference on the device (simulator): ``load(path, device="cuda")`` / ``Classifier.to("cuda")`` and
``edgecnn live --device cuda`` give the CPU's probabilities and detections. A tiny model keeps the
simulator (a Python thread per GPU thread) to seconds."""
import json

import numpy as np
import pytest

from test_cuda_sim import skip_unless_cuda

skip_unless_cuda()

import livevideo  # noqa: E402
from edgecnn import io as eio  # noqa: E402
from edgecnn.data import Normalization  # noqa: E402

pytestmark = pytest.mark.usefixtures("small_blocks")
from test_cuda_sim import small_blocks  # noqa: E402,F401  (fixture)


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    from edgecnn import layers as L
    from edgecnn.graph import Sequential
    # no convolution: the simulator takes seconds per conv launch; conv on the device is covered by
    # test_cuda_k_conv.py and test_cuda_k_executor.py
    model = Sequential([L.MaxPool2D(4), L.Flatten(), L.Dense(16, activation="relu"), L.Dense(10)],
                       input_shape=(1, 28, 28), seed=4)
    path = tmp_path_factory.mktemp("m") / "tiny.ecnn"
    eio.save(path, model, {"normalization": Normalization("zscore", mean=33.3, std=78.6), "filters": None})
    return path


def test_classifier_on_cuda_predicts_what_the_cpu_predicts(model_file):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (3, 28, 28), dtype=np.uint8)
    cpu = eio.load(model_file)
    want = cpu.predict(images)
    gpu = eio.load(model_file, device="cuda")
    assert gpu.device == "cuda" and cpu.device == "cpu" and "on cuda" in repr(gpu)
    got = gpu.predict(images, batch_size=2)  # two batches: a full and a partial one
    assert isinstance(got, np.ndarray) and got.dtype == np.float32 and got.shape == (3, 10)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    for name, w in cpu.model.state_dict().items():  # weights came back to the host unchanged
        np.testing.assert_array_equal(gpu.model.state_dict()[name], w)
    np.testing.assert_allclose(cpu.to("cuda").predict(images[:1]), want[:1], rtol=1e-5, atol=1e-6)
    assert cpu.to("cpu").device == "cpu"


def test_live_on_cuda_detects_what_the_cpu_detects(model_file, mnist_dir, tmp_path):
    from edgecnn import live as L
    frames, _ = livevideo.make_frames(mnist_dir, n_frames=2, scene_len=2, seed=3)
    livevideo.write_folder(tmp_path / "frames", frames)
    runs = {}
    for device in ("cpu", "cuda"):
        out = tmp_path / f"{device}.jsonl"
        logs = []
        summary = L.run(L.LiveOptions(source=str(tmp_path / "frames"), model=str(model_file), headless=True,
                                      output=str(out), min_confidence=0.0, device=device), log=logs.append)
        assert summary["ok"] and summary["frames"] == 2, (summary, logs)
        assert ("live: inference on cuda" in logs) == (device == "cuda")
        runs[device] = [json.loads(line) for line in out.read_text().splitlines()]
    assert sum(len(r["detections"]) for r in runs["cpu"]) >= 6  # the frames hold 6 digits each
    for c, g in zip(runs["cpu"], runs["cuda"]):
        assert [d["box"] for d in g["detections"]] == [d["box"] for d in c["detections"]]
        assert [d["label"] for d in g["detections"]] == [d["label"] for d in c["detections"]]
        np.testing.assert_allclose([d["confidence"] for d in g["detections"]],
                                   [d["confidence"] for d in c["detections"]], rtol=1e-5, atol=1e-6)
