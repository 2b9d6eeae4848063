"""The executor on the device (simulator): ``model.to("cuda")`` trains like the CPU.

Two tiny models (a Sequential conv -> batch norm -> ReLU -> max pool -> dropout -> flatten -> dense, and
a DAG with Add and Concatenate skip connections) are trained a few steps from the same initial weights
on the CPU and on the device, where parameters, activations, gradients and optimizer state stay on the
device and only batches go in and the loss comes out. The loss curves agree within rtol 1e-4 (measured
agreement is about 1e-7: the kernels differ only in summation order) and the final weights within 1e-5.
The device run allocates nothing and passes no host array to a kernel after its first step. Steps cost
about 2-4 s each in the simulator, so every run is three steps and shared between the tests.
"""
import numpy as np
import pytest

from test_cuda_sim import skip_unless_cuda

skip_unless_cuda()

from edgecnn import layers as L  # noqa: E402
from edgecnn.graph import Input, Model, Sequential  # noqa: E402
from edgecnn.kernels._common import is_device_array  # noqa: E402
from edgecnn.optim import SGD, Adam  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
F = np.float32
STEPS = 3
LOSS_RTOL = 1e-4   # float32 kernels with different summation orders; measured ~1e-7
WEIGHT_TOL = 1e-5


def _sequential():
    # no conv bias before batch norm: its gradient is zero up to rounding, which Adam would amplify
    return Sequential([L.Conv2D(2, 3, padding=1, use_bias=False), L.BatchNorm2D(), L.Activation("relu"),
                       L.MaxPool2D(2), L.Dropout(0.25), L.Flatten(), L.Dense(3)], input_shape=(1, 4, 4),
                      seed=1)


def _dag():
    x = Input((1, 4, 4))
    a = L.Conv2D(2, 3, padding="same", activation="relu")(x)
    b = L.Conv2D(2, 1, use_bias=False)(a)
    s = L.Add(activation="relu")([a, b])          # residual: a fans out to b, Add and Concatenate
    c = L.Concatenate()([s, a, x])                # (5, 4, 4); x needs no gradient there
    f = L.Flatten()(L.AvgPool2D(2)(c))
    return Model(x, L.Dense(3)(f), seed=2)


def _batch():
    rng = np.random.default_rng(0)
    return rng.standard_normal((4, 1, 4, 4)).astype(F), rng.integers(0, 3, 4).astype(np.int32)


class _Counter:
    """Counts device allocations and host arrays handed to kernels (hidden transfers)."""

    def __init__(self, monkeypatch):
        from numba import cuda
        from numba.cuda.simulator import kernel
        self.n = {"device_array": 0, "to_device": 0, "host array to a kernel": 0}
        for mod, name in ((cuda, "device_array"), (cuda, "to_device"), (kernel, "wrap_arg")):
            monkeypatch.setattr(mod, name, self._wrap(getattr(mod, name), name))

    def _wrap(self, fn, name):
        key = "host array to a kernel" if name == "wrap_arg" else name

        def counted(*a, **k):
            self.n[key] += 1
            return fn(*a, **k)
        return counted


def _ids(model, batch):
    p = model.plan(batch)
    return [id(a) for a in p.buffers()] + [id(a) for prm in model.parameters() for a in (prm.value, prm.grad)]


def _train(make, device, opt, steps=STEPS, counter=None, **kw):
    """(model, optimizer, losses, [buffer ids after each step], (counts in step 1, counts after))."""
    from edgecnn.kernels.cuda import _launch
    x, y = _batch()
    m = make().to(device)
    o = opt(m.parameters(), **kw)
    losses, ids, counts = [], [], None
    with _launch.shrunk(block=32, tile=4, reduce=8):
        for step in range(steps):
            if step == 1 and counter is not None:  # the first step plans and allocates; later ones must not
                counts = (dict(counter.n), counter.n)
                counter.n.update((k, 0) for k in counter.n)
            loss, logits = m.train_step(x, y)
            assert isinstance(loss, float)
            assert is_device_array(logits) == (device == "cuda")
            o.step()
            losses.append(loss)
            ids.append(_ids(m, len(x)))
    return m, o, losses, ids, counts


@pytest.fixture(scope="module")
def seq_runs():
    mp = pytest.MonkeyPatch()
    try:
        cpu = _train(_sequential, "cpu", Adam, lr=1e-2)
        gpu = _train(_sequential, "cuda", Adam, lr=1e-2, counter=_Counter(mp))
        counts = (gpu[4][0], dict(gpu[4][1]))
    finally:
        mp.undo()
    return cpu, gpu, counts


def _assert_follows(cpu, gpu):
    _, _, cpu_losses, _, _ = cpu
    m, _, gpu_losses, _, _ = gpu
    assert len(set(cpu_losses)) == len(cpu_losses), "the run must move"
    np.testing.assert_allclose(gpu_losses, cpu_losses, rtol=LOSS_RTOL)
    got, want = m.state_dict(), cpu[0].state_dict()
    assert set(got) == set(want)
    for k in want:
        assert isinstance(got[k], np.ndarray) and got[k].dtype == F
        np.testing.assert_allclose(got[k], want[k], rtol=WEIGHT_TOL, atol=WEIGHT_TOL, err_msg=k)


def test_sequential_adam_follows_cpu_loss_curve(seq_runs):
    cpu, gpu, _ = seq_runs
    assert gpu[0].device == "cuda" and gpu[1].device == "cuda"
    assert all(is_device_array(a) for d in gpu[1].state.values() for a in d.values())
    _assert_follows(cpu, gpu)


def test_device_steps_allocate_nothing_and_reuse_buffers(seq_runs):
    _, gpu, counts = seq_runs
    ids = gpu[3]
    assert ids[1] == ids[0] and ids[2] == ids[0], "a step replaced a planned buffer or a parameter array"
    first, later = counts
    assert first["device_array"] > 0, f"the counter must see the first step's planning: {first}"
    assert later == {"device_array": 0, "to_device": 0, "host array to a kernel": 0}, later


def test_state_dict_round_trip_device_host_device(seq_runs):
    _, gpu, _ = seq_runs
    m, opt = gpu[0], gpu[1]
    sd, osd = m.state_dict(), opt.state_dict()
    assert all(isinstance(a, np.ndarray) for a in sd.values())
    assert all(isinstance(a, np.ndarray) for a in osd["state"].values())
    fresh = _sequential().to("cuda")
    fresh.load_state_dict(sd)
    got = fresh.state_dict()
    for k in sd:
        np.testing.assert_array_equal(got[k], sd[k], err_msg=k)
    opt2 = Adam(fresh.parameters(), lr=1e-2)
    opt2.load_state_dict(osd)
    assert opt2.step_count == opt.step_count
    for k, a in opt2.state_dict()["state"].items():
        np.testing.assert_array_equal(a, osd["state"][k], err_msg=k)
    # and to the host: predict (host result) agrees with the same weights on the CPU
    from edgecnn.kernels.cuda import _launch
    x, _ = _batch()
    with _launch.shrunk(block=32, tile=4, reduce=8):
        on_dev = fresh.predict(x)
    assert isinstance(on_dev, np.ndarray)
    on_cpu = fresh.to("cpu").predict(x)
    np.testing.assert_allclose(on_dev, on_cpu, rtol=1e-5, atol=1e-5)
    for k in sd:
        np.testing.assert_array_equal(fresh.state_dict()[k], sd[k], err_msg=k)


def test_dag_with_add_and_concatenate_follows_cpu():
    cpu = _train(_dag, "cpu", Adam, lr=1e-2)
    gpu = _train(_dag, "cuda", Adam, lr=1e-2)
    _assert_follows(cpu, gpu)


def test_sgd_momentum_follows_cpu_and_optimizer_follows_model_to():
    cpu = _train(_sequential, "cpu", SGD, lr=0.1, momentum=0.9)
    # the optimizer is made while the model is on the CPU, then the model moves: its state must follow
    from edgecnn.kernels.cuda import _launch
    x, y = _batch()
    m = _sequential()
    opt = SGD(m.parameters(), lr=0.1, momentum=0.9)
    m.to("cuda")
    losses = []
    with _launch.shrunk(block=32, tile=4, reduce=8):
        for _ in range(STEPS):
            loss, _ = m.train_step(x, y)
            opt.step()
            losses.append(loss)
    assert opt.device == "cuda"
    assert all(is_device_array(a) for d in opt.state.values() for a in d.values())
    _assert_follows(cpu, (m, opt, losses, None, None))
