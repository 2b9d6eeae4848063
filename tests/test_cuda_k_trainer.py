"""``Trainer`` with device="cuda" (simulator): the whole loop, validation and test evaluation, checkpoint
and resume on the device, against the same run on the CPU.

Tiny synthetic 6x6 digits so the simulator (2-4 s a step) runs the cut run (3 steps) and the resumed
run (1 step) in well under a minute.
"""
import io

import numpy as np
import pytest

from test_cuda_sim import skip_unless_cuda

skip_unless_cuda()

from edgecnn import checkpoint as ckpt  # noqa: E402
from edgecnn import train as T  # noqa: E402

pytestmark = [pytest.mark.usefixtures("small_blocks"),
              pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")]
from test_cuda_sim import small_blocks  # noqa: E402,F401  (fixture)
from test_train import Data  # noqa: E402  (the in-memory MNIST stand-in)


def _data():
    rng = np.random.default_rng(3)
    return Data(rng.integers(0, 256, (12, 6, 6), dtype=np.uint8), rng.integers(0, 10, 12).astype(np.uint8),
                rng.integers(0, 256, (4, 6, 6), dtype=np.uint8), rng.integers(0, 10, 4).astype(np.uint8))


def _config(device):
    from edgecnn import layers as L
    from edgecnn.graph import Sequential
    model = Sequential([L.Conv2D(2, 3, use_bias=False), L.BatchNorm2D(), L.Activation("relu"), L.MaxPool2D(2),
                        L.Flatten(), L.Dropout(0.25), L.Dense(10)], input_shape=(1, 6, 6)).get_config()
    # 9 training images (3 for validation), batch 4: 2 steps an epoch
    return T.TrainConfig(model=model, epochs=2, batch_size=4, optimizer="adam", lr=1e-2, schedule="cosine",
                         augment=False, seed=5, val_fraction=0.25, device=device, eval_batch_size=4)


def _run(device, run_dir, resume=False, callbacks=()):
    stream = io.StringIO()
    t = T.Trainer(_config(device), data=_data(), run_dir=run_dir, stream=stream, callbacks=callbacks, tty=False)
    return t.run(resume=resume), stream.getvalue()


def test_cuda_run_interrupted_and_resumed_follows_the_cpu_run(tmp_path):
    cpu, _ = _run("cpu", tmp_path / "cpu")

    def stop(trainer, epoch, batch):
        if (epoch, batch) == (1, 0):
            raise KeyboardInterrupt
    with pytest.raises(T.Interrupted):
        _run("cuda", tmp_path / "gpu", callbacks=[stop])
    state = ckpt.load(ckpt.path_in(tmp_path / "gpu"))
    assert all(isinstance(a, np.ndarray) for a in state["model"].values())  # host copies
    assert all(isinstance(a, np.ndarray) for a in state["optimizer"]["state"].values())
    gpu, text = _run("cuda", tmp_path / "gpu", resume=True)
    assert "resuming from" in text
    assert gpu.device == "cuda" and gpu.model.device == "cuda" and gpu.summary()["device"] == "cuda"
    for key in ("train_loss", "val_loss"):
        np.testing.assert_allclose([r[key] for r in gpu.history], [r[key] for r in cpu.history], rtol=1e-4,
                                   err_msg=key)
    assert [r["train_acc"] for r in gpu.history] == [r["train_acc"] for r in cpu.history]
    assert gpu.test_accuracy == cpu.test_accuracy
    np.testing.assert_allclose(gpu.test_loss, cpu.test_loss, rtol=1e-4)
    got, want = gpu.model.state_dict(), cpu.model.state_dict()
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-5, atol=1e-5, err_msg=k)
