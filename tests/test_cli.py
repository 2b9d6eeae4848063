"""`edgecnn train / eval / summary / predict` through click's CliRunner, and once as a real subprocess."""
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from edgecnn_cli.main import main


@pytest.fixture(scope="module")
def trained(mnist_dir, tmp_path_factory):
    """One quick real run of `edgecnn train` shared by the tests below (lenet5, 1,200 images, 1 epoch)."""
    d = tmp_path_factory.mktemp("cli")
    out = d / "m.ecnn"
    r = CliRunner().invoke(main, ["train", "--model", "lenet5", "--epochs", "1", "--limit", "1200",
                                  "--batch-size", "64", "--data-dir", str(mnist_dir), "--output", str(out),
                                  "--val-fraction", "0.1", "--threads", "2"])
    assert r.exit_code == 0, r.output + repr(r.exception)
    return d, out, r.output


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_train_writes_model_log_and_reports(trained):
    d, out, text = trained
    assert out.exists()
    assert (d / "m.run" / "train_log.jsonl").read_text().count("\n") == 1
    assert (d / "m.run" / "checkpoint.ecnn-ckpt").exists()
    assert "test accuracy" in text and "confusion matrix" in text and "JIT warm-up" in text
    assert f"saved {out}" in text


def test_train_resume_after_finishing_extends_epochs(trained, mnist_dir):
    d, out, _ = trained
    r = invoke("train", "--resume", "--output", d / "m.ecnn", "--epochs", "2", "--data-dir", mnist_dir)
    assert r.exit_code == 0, r.output
    assert "resuming" in r.output
    assert (d / "m.run" / "train_log.jsonl").read_text().count("\n") == 2


def test_train_option_errors_are_one_clear_line(tmp_path):
    r = invoke("train", "--resume", "--output", tmp_path / "none.ecnn")
    assert r.exit_code == 1 and "no checkpoint" in r.output and "Traceback" not in r.output
    r = invoke("train", "--model", "nope", "--output", tmp_path / "x.ecnn", "--data-dir", tmp_path)
    assert r.exit_code != 0 and "Traceback" not in r.output
    r = invoke("train", "--model", tmp_path / "missing.json", "--limit", "100", "--data-dir", tmp_path)
    assert r.exit_code != 0 and "Traceback" not in r.output


def test_train_ctrl_c_before_the_first_batch_is_one_line_and_exit_130(tmp_path, mnist_dir, monkeypatch):
    from edgecnn import train as T

    def interrupted_warm_up(self):
        raise KeyboardInterrupt
    monkeypatch.setattr(T.Trainer, "_warm_up", interrupted_warm_up)
    r = invoke("train", "--model", "lenet5", "--epochs", "1", "--limit", "200", "--data-dir", mnist_dir,
               "--output", tmp_path / "m.ecnn")
    assert r.exit_code == 130, r.output
    assert "interrupted before training started (during JIT warm-up): nothing was trained" in r.output
    assert "Aborted" not in r.output and "Traceback" not in r.output
    assert not (tmp_path / "m.ecnn").exists()


def _gpu_usable():
    from edgecnn.kernels.cuda import _device
    return _device.is_available()


def test_train_device_cuda_without_gpu_is_one_clear_line(tmp_path):
    if _gpu_usable():
        pytest.skip("a CUDA GPU (or the simulator) is usable here")
    r = invoke("train", "--device", "cuda", "--output", tmp_path / "x.ecnn", "--data-dir", tmp_path)
    assert r.exit_code == 1 and "Traceback" not in r.output
    lines = r.output.strip().splitlines()
    assert len(lines) == 1, r.output
    assert "--device cuda" in lines[0] and "no usable CUDA GPU" in lines[0]
    assert "edgecnn[cuda]" in lines[0] and "--device cpu" in lines[0]  # the fix
    assert not (tmp_path / "x.run").exists()  # failed before any work


def test_live_and_filter_device_cuda_without_gpu_are_one_clear_line(tmp_path):
    if _gpu_usable():
        pytest.skip("a CUDA GPU (or the simulator) is usable here")
    import cv2
    img = tmp_path / "in.png"
    cv2.imwrite(str(img), np.full((8, 9), 200, np.uint8))
    runs = {"live": invoke("live", str(tmp_path), "--device", "cuda", "--headless", "--max-frames", "1"),
            "filter": invoke("filter", str(img), "--filter", "sobel_x", "--device", "cuda", "--out",
                             tmp_path / "out.png")}
    for what, r in runs.items():
        assert r.exit_code == 1 and "Traceback" not in r.output, (what, r.output)
        lines = [ln for ln in r.output.strip().splitlines() if ln.startswith("Error")]
        assert len(lines) == 1 and "--device cuda" in lines[0] and "no usable CUDA GPU" in lines[0], r.output
        assert "edgecnn[cuda]" in lines[0] and "--device cpu" in lines[0], r.output
    assert not (tmp_path / "out.png").exists()


def test_filter_device_auto_equals_cpu(tmp_path):
    import cv2
    rng = np.random.default_rng(0)
    img = tmp_path / "in.png"
    cv2.imwrite(str(img), rng.integers(0, 256, (12, 10, 3), dtype=np.uint8))
    for device in ("cpu", "auto"):
        r = invoke("filter", str(img), "-f", "gray", "-f", "sobel_x", "--device", device,
                   "--out", tmp_path / f"{device}.png")
        assert r.exit_code == 0, r.output
    np.testing.assert_array_equal(cv2.imread(str(tmp_path / "auto.png")), cv2.imread(str(tmp_path / "cpu.png")))


def test_train_device_auto_names_its_choice_in_the_header(tmp_path):
    # a bad --model fails right after the header: enough to see what auto chose, without training
    r = invoke("train", "--device", "auto", "--model", "nope", "--output", tmp_path / "x.ecnn",
               "--data-dir", tmp_path)
    want = "on cuda (auto: a CUDA GPU is usable)" if _gpu_usable() else "on cpu (auto: no usable CUDA GPU)"
    assert want in r.output and "Traceback" not in r.output


def test_train_resume_refuses_changed_settings(trained):
    d, out, _ = trained
    r = invoke("train", "--resume", "--output", out, "--lr", "0.5")
    assert r.exit_code == 2 and "--lr cannot be changed" in r.output


def test_eval_reports_and_saves_mistakes(trained, mnist_dir):
    import cv2
    d, out, _ = trained
    grid = d / "mistakes.png"
    r = invoke("eval", out, "--data-dir", mnist_dir, "--mistakes", grid, "--count", "12")
    assert r.exit_code == 0, r.output
    assert "accuracy" in r.output and "precision" in r.output and "recall" in r.output
    assert "confusion matrix" in r.output
    img = cv2.imread(str(grid))
    assert img is not None and img.shape[1] == 6 * 84


def test_summary_of_file_and_zoo(trained):
    d, out, _ = trained
    r = invoke("summary", out)
    assert r.exit_code == 0, r.output
    assert "61,706" in r.output and "test accuracy" in r.output
    r = invoke("summary", "keras-mnist")
    assert r.exit_code == 0 and "1,199,882" in r.output
    r = invoke("summary", "not-a-model")
    assert r.exit_code == 1 and "unknown model" in r.output


def test_predict_real_digits_and_unreadable_files(trained, mnist_dir, tmp_path):
    import cv2

    from edgecnn.data import load_mnist
    d, out, _ = trained
    data = load_mnist(mnist_dir, download=False)
    paths = []
    for i in range(8):  # dark ink on a light 80x60 page, as a photo of paper would be
        page = np.full((80, 60), 240, np.uint8)
        page[20:48, 16:44] = 240 - (data.test_images[i].astype(np.int32) * 220 // 255)
        p = tmp_path / f"digit{i}.png"
        cv2.imwrite(str(p), page)
        paths.append(p)
    r = invoke("predict", out, *paths)
    assert r.exit_code == 0, r.output
    lines = r.output.strip().splitlines()
    assert len(lines) == 8
    got = [int(line.split(": ")[1].split(" ")[0]) for line in lines]
    # The pasted page comes back (almost) as the original 28x28 digit, so the CLI must agree with the
    # model on the original MNIST images (whatever this quickly trained model's accuracy is).
    import edgecnn
    want, _ = edgecnn.load(out).predict_classes(data.test_images[:8])
    assert sum(g == w for g, w in zip(got, want)) >= 7, (got, want)
    bad = tmp_path / "notes.txt"
    bad.write_text("hello")
    r = invoke("predict", out, paths[0], bad, tmp_path / "missing.png")
    assert r.exit_code == 1
    assert "notes.txt (not an image" in r.output and "missing.png (no such file)" in r.output
    assert "Traceback" not in r.output


def test_corrupt_model_file_is_a_one_line_error(tmp_path):
    bad = tmp_path / "bad.ecnn"
    bad.write_bytes(b"garbage" * 10)
    for cmd in (["eval", bad], ["summary", bad], ["predict", bad, bad]):
        r = invoke(*cmd)
        assert r.exit_code == 1 and str(bad) in r.output and "Traceback" not in r.output, r.output


def test_real_subprocess(trained, tmp_path):
    d, out, _ = trained
    r = subprocess.run([sys.executable, "-m", "edgecnn", "summary", str(out)], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    assert "Total" in r.stdout or "total" in r.stdout
    r = subprocess.run([sys.executable, "-m", "edgecnn", "eval", str(tmp_path / "nope.ecnn")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.strip().startswith("Error:") and "nope.ecnn" in r.stderr and len(r.stderr.strip().splitlines()) == 1
