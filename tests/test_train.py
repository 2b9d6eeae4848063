"""The training loop: determinism, exact resume, Ctrl-C, NaN stop, early stopping, logs, real accuracy."""
import dataclasses
import io
import json
import os
import signal

import numpy as np
import pytest

from edgecnn import checkpoint as ckpt
from edgecnn import train as T

# A tiny model that still has every kind of state: conv weights, batch-norm running statistics, dropout.
TINY = None


def tiny_config():
    global TINY
    if TINY is None:
        from edgecnn import layers as L
        from edgecnn.graph import Sequential
        TINY = Sequential([L.Conv2D(4, 3, strides=2, use_bias=False), L.BatchNorm2D(), L.Activation("relu"),
                           L.MaxPool2D(2), L.Flatten(), L.Dropout(0.25), L.Dense(10)],
                          input_shape=(1, 28, 28)).get_config()
    return TINY


@dataclasses.dataclass
class Data:
    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray


@pytest.fixture(scope="module")
def mnist(mnist_dir):
    from edgecnn.data import load_mnist
    return load_mnist(mnist_dir, download=False)


@pytest.fixture(scope="module")
def small(mnist):
    return Data(mnist.train_images[:640], mnist.train_labels[:640], mnist.test_images[:200],
                mnist.test_labels[:200])


def config(**kw):
    base = dict(model=tiny_config(), epochs=2, batch_size=64, optimizer="adam", lr=3e-3, schedule="cosine",
                warmup=0.5, augment=True, seed=7, val_fraction=0.1, threads=2)
    base.update(kw)
    return T.TrainConfig(**base)


def run(data, run_dir, callbacks=(), resume=False, **kw):
    stream = io.StringIO()
    trainer = T.Trainer(config(**kw), data=data, run_dir=run_dir, stream=stream, callbacks=callbacks, tty=False)
    result = trainer.run(resume=resume)
    return result, stream.getvalue()


def weights(model):
    return model.state_dict()


def assert_same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert np.array_equal(a[k], b[k]), k


def stop_at(epoch, batch):
    def cb(trainer, e, b):
        if (e, b) == (epoch, batch):
            raise KeyboardInterrupt
    return cb


# ------------------------------------------------------------------------------------------ determinism
def test_same_seed_and_threads_give_identical_weights(small, tmp_path):
    a, _ = run(small, tmp_path / "a")
    b, _ = run(small, tmp_path / "b")
    assert_same(weights(a.model), weights(b.model))
    assert [r["train_loss"] for r in a.history] == [r["train_loss"] for r in b.history]
    c, _ = run(small, tmp_path / "c", seed=8)
    assert any(not np.array_equal(weights(a.model)[k], weights(c.model)[k]) for k in weights(a.model))


# -------------------------------------------------------------------------------------- resume, Ctrl-C
@pytest.mark.parametrize("where", [(0, 3), (1, 0), (1, 7)])
def test_interrupted_and_resumed_run_is_bit_identical(small, tmp_path, where):
    full, _ = run(small, tmp_path / "full")
    with pytest.raises(T.Interrupted) as e:
        run(small, tmp_path / "cut", callbacks=[stop_at(*where)])
    path = ckpt.path_in(tmp_path / "cut")
    assert e.value.checkpoint == path and "--resume" in str(e.value)
    state = ckpt.load(path)
    assert state["state"]["epoch"] == where[0]
    assert state["batches"]["position"] == where[1] + 1
    resumed, text = run(small, tmp_path / "cut", resume=True)
    assert "resuming from" in text
    assert_same(weights(full.model), weights(resumed.model))
    assert [r["train_loss"] for r in full.history] == [r["train_loss"] for r in resumed.history]
    assert [r["val_loss"] for r in full.history] == [r["val_loss"] for r in resumed.history]
    assert full.test_accuracy == resumed.test_accuracy


def test_resume_can_extend_epochs_and_needs_a_checkpoint(small, tmp_path):
    run(small, tmp_path / "r", epochs=1)
    cfg, _ = T.Trainer.config_from_checkpoint(ckpt.path_in(tmp_path / "r"), epochs=2)
    assert cfg.epochs == 2 and cfg.seed == 7
    res = T.Trainer(cfg, data=small, run_dir=tmp_path / "r", stream=io.StringIO(), tty=False).run(resume=True)
    assert len(res.history) == 2
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        run(small, tmp_path / "empty", resume=True)


def test_real_sigint_stops_at_the_batch_boundary(small, tmp_path):
    def cb(trainer, e, b):
        if (e, b) == (0, 2):
            os.kill(os.getpid(), signal.SIGINT)  # the trainer's handler only sets a flag
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(T.Interrupted):
        run(small, tmp_path / "s", callbacks=[cb])
    assert signal.getsignal(signal.SIGINT) is before          # handler restored
    assert ckpt.load(ckpt.path_in(tmp_path / "s"))["batches"]["position"] == 3


def test_ctrl_c_before_training_says_nothing_was_trained(small, tmp_path, monkeypatch):
    def interrupted_warm_up(self):
        raise KeyboardInterrupt
    monkeypatch.setattr(T.Trainer, "_warm_up", interrupted_warm_up)
    with pytest.raises(T.Interrupted, match=r"before training started \(during JIT warm-up\): nothing was "
                                            r"trained") as e:
        run(small, tmp_path / "w")
    assert e.value.checkpoint is None
    assert not os.path.exists(ckpt.path_in(tmp_path / "w"))


def ctrl_c_in_evaluate(monkeypatch, when):
    """T.evaluate raises KeyboardInterrupt (Ctrl-C) on the calls where when(call number from 1, labels) is
    true; returns a function that puts the real one back."""
    real = T.evaluate
    calls = []

    def evaluate(model, x, y, *a, **k):
        calls.append(len(y))
        if when(len(calls), y):
            raise KeyboardInterrupt
        return real(model, x, y, *a, **k)
    monkeypatch.setattr(T, "evaluate", evaluate)
    return lambda: monkeypatch.setattr(T, "evaluate", real)


def test_ctrl_c_during_the_test_evaluation_keeps_the_run_and_resume_finishes_it(small, tmp_path, monkeypatch):
    full, _ = run(small, tmp_path / "full")
    restore = ctrl_c_in_evaluate(monkeypatch, lambda i, y: len(y) == len(small.test_labels))  # not validation
    with pytest.raises(T.Interrupted, match="during the test evaluation.*--resume") as e:
        run(small, tmp_path / "cut")
    assert e.value.checkpoint == ckpt.path_in(tmp_path / "cut")
    restore()
    resumed, _ = run(small, tmp_path / "cut", resume=True)
    assert resumed.test_accuracy == full.test_accuracy
    assert_same(weights(full.model), weights(resumed.model))


def test_ctrl_c_during_the_test_evaluation_after_early_stopping_does_not_promise_resume(small, tmp_path,
                                                                                       monkeypatch):
    # after early stopping the checkpoint holds the last epoch, not the restored best one: --resume
    # would train on, and the message says so instead of promising an evaluation
    real_epochs = T.Trainer._epochs
    monkeypatch.setattr(T.Trainer, "_epochs", lambda self: (real_epochs(self), "early_stopped")[1])
    ctrl_c_in_evaluate(monkeypatch, lambda i, y: len(y) == len(small.test_labels))
    with pytest.raises(T.Interrupted, match="stopped early, so --resume would train on from epoch 3; no model") as e:
        run(small, tmp_path / "early")
    assert "to evaluate and save" not in str(e.value)


def test_second_ctrl_c_during_validation_keeps_the_last_checkpoint(small, tmp_path, monkeypatch):
    # interrupted in epoch 2's validation: epoch 1's checkpoint stays, and resuming from it gives
    # the uninterrupted run's weights
    full, _ = run(small, tmp_path / "full")
    restore = ctrl_c_in_evaluate(monkeypatch, lambda i, y: i == 2)  # the second validation
    with pytest.raises(T.Interrupted, match="aborted at the end of epoch 2.*is kept: continue with --resume") as e:
        run(small, tmp_path / "cut")
    assert e.value.checkpoint == ckpt.path_in(tmp_path / "cut")
    assert ckpt.load(e.value.checkpoint)["state"]["epoch"] == 1
    restore()
    resumed, _ = run(small, tmp_path / "cut", resume=True)
    assert_same(weights(full.model), weights(resumed.model))


def test_checkpoint_and_log_contents(small, tmp_path):
    res, text = run(small, tmp_path / "l")
    lines = [json.loads(x) for x in (tmp_path / "l" / T.LOG_NAME).read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [1, 2]
    for r in lines:
        assert {"train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds", "images_per_s", "step"} <= set(r)
    state = ckpt.load(res.checkpoint)
    assert state["state"]["epoch"] == 2 and state["state"]["step"] == 2 * (576 // 64)
    assert state["optimizer"]["type"] == "Adam" and state["optimizer"]["step"] == 18
    assert_same(state["model"], weights(res.model))
    assert state["rng"] == res.model.get_rng_state()
    assert "epoch 1/2" in text and "val_acc" in text and "JIT warm-up" in text and "test loss" in text
    assert res.warmup_seconds > 0 and res.train_seconds > 0
    assert res.confusion.shape == (10, 10) and res.confusion.sum() == 200
    assert abs(np.trace(res.confusion) / 200 - res.test_accuracy) < 1e-12


# -------------------------------------------------------------------------------------- NaN, early stop
def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(small, tmp_path):
    saved = {}

    def poison(trainer, e, b):
        if (e, b) == (1, 1):
            saved["bytes"] = open(trainer.checkpoint_path, "rb").read()
            p = next(p for p in trainer.model.parameters() if p.trainable)
            p.value[...] = np.nan
    with pytest.raises(T.Diverged) as e:
        run(small, tmp_path / "n", callbacks=[poison])
    msg = str(e.value)
    assert "nan" in msg and "epoch 2" in msg and "after epoch 1" in msg and "--lr" in msg
    path = ckpt.path_in(tmp_path / "n")
    assert open(path, "rb").read() == saved["bytes"]
    state = ckpt.load(path)
    assert all(np.isfinite(v).all() for v in state["model"].values())
    assert len((tmp_path / "n" / T.LOG_NAME).read_text().splitlines()) == 1


def test_early_stopping_restores_the_best_weights(small, tmp_path, monkeypatch):
    script = iter([1.0, 0.9, 0.95, 0.97, 0.5, 0.4])
    real = T.evaluate

    def fake(model, x, labels, batch_size=500):
        if len(labels) == 64:             # validation (10% of 640): scripted losses
            return next(script), 0.5, np.zeros(len(labels), np.int64)
        return real(model, x, labels, batch_size)
    monkeypatch.setattr(T, "evaluate", fake)
    snap = {}

    def grab(trainer, e, b):
        if (e, b) == (1, 8):            # after the last step of epoch 2 (576 / 64 = 9 batches)
            snap["w"] = trainer.model.state_dict()
    res, text = run(small, tmp_path / "e", epochs=6, patience=2, callbacks=[grab])
    assert res.status == "early_stopped" and len(res.history) == 4
    assert "early stopping" in text and "epoch 2" in text
    assert_same(weights(res.model), snap["w"])
    state = ckpt.load(res.checkpoint)
    assert state["state"]["best_epoch"] == 2
    assert_same(weights(res.model), state["best_model"])


def test_config_errors_are_clear():
    with pytest.raises(ValueError, match="device must be one of"):
        T.TrainConfig(device="tpu").resolved()
    assert T.TrainConfig(device="cuda").resolved().device == "cuda"  # checked for a GPU when the run starts
    with pytest.raises(ValueError, match="optimizer must be one of"):
        T.TrainConfig(optimizer="rmsprop").resolved()
    with pytest.raises(ValueError, match="lr must be a positive number"):
        T.TrainConfig(lr=-1.0).resolved()
    with pytest.raises(ValueError, match="val_fraction"):
        T.TrainConfig(val_fraction=1.0).resolved()
    with pytest.raises(ValueError, match="unknown model 'nope'"):
        T.build_model("nope")
    c = T.TrainConfig(model="keras-mnist").resolved()
    assert c.epochs == 5 and c.optimizer == "adam" and c.lr == 1e-3


def test_too_few_images_for_a_batch(small, tmp_path):
    with pytest.raises(ValueError, match="raise --limit or lower --batch-size"):
        run(small, tmp_path / "f", limit=50)


# ---------------------------------------------------------------------------------------------- progress
def test_progress_plain_lines_when_not_a_tty():
    from edgecnn._progress import Progress
    out = io.StringIO()
    bar = Progress("epoch 1/1", 100, stream=out, tty=False)
    for i in range(1, 101):
        bar.update(i, i * 10, 0.5, 0.9)
    bar.close()
    lines = out.getvalue().splitlines()
    assert len(lines) == 3 and "\r" not in out.getvalue()
    assert "25/100" in lines[0] and "ETA" in lines[0] and "img/s" in lines[0] and "acc 0.9000" in lines[0]
    out = io.StringIO()
    bar = Progress("epoch 1/1", 10, stream=out, tty=True, interval=0)
    for i in range(1, 11):
        bar.update(i, i, 0.5, 0.9)
    bar.close()
    assert out.getvalue().count("\r") >= 10 and "\n" not in out.getvalue()


# ------------------------------------------------------------------------------------- real accuracy
def test_short_real_training_beats_chance_by_far(mnist, tmp_path):
    """lenet5, 4,000 real training images, one epoch: measured on the real 10,000-image test set."""
    stream = io.StringIO()
    cfg = T.TrainConfig(model="lenet5", epochs=1, batch_size=64, lr=2e-3, schedule="constant", limit=4000,
                        val_fraction=0.0, seed=0)
    res = T.Trainer(cfg, data=mnist, run_dir=tmp_path / "real", stream=stream, tty=False).run()
    assert res.confusion.sum() == 10000
    assert res.test_accuracy > 0.90, stream.getvalue()


def test_filter_chain_is_trained_with_and_stored_in_the_model_file(small, tmp_path):
    import edgecnn
    from edgecnn import io as eio
    from edgecnn.data import Normalization
    from edgecnn.filters import FilterChain
    res, _ = run(small, tmp_path / "f", epochs=1, filters=["gaussian"], augment=False)
    path = tmp_path / "f.ecnn"
    eio.save(path, res.model, res.preprocessing(), metadata={"training": res.summary()})
    clf = edgecnn.load(path)
    assert clf.preprocessing["filters"]["steps"][0]["name"] == "gaussian"
    imgs = small.test_images[:16]
    chain = FilterChain(["gaussian"])
    filtered = np.stack([chain.apply(im) for im in imgs])
    assert not np.array_equal(filtered, imgs)
    z = res.model.predict(Normalization().apply(filtered))
    np.testing.assert_array_equal(clf.logits(imgs), z)
    np.testing.assert_array_equal(clf.predict(imgs.astype(np.float32)), clf.predict(imgs))
