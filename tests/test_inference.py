"""The small-batch inference fast path (edgecnn.inference) against Model.predict, the general executor."""
import numpy as np
import pytest

from edgecnn import io as eio
from edgecnn import layers as L
from edgecnn import models
from edgecnn.data import Normalization
from edgecnn.graph import Input, Model, Sequential
from edgecnn.inference import compile_plan

RTOL = 1e-5  # of the logits' scale (the largest |logit| of the reference)


def randomize(model, seed=0):
    """Random weights and biases, and batch norms with non-trivial running statistics."""
    rng = np.random.default_rng(seed)
    for lay in model.layers:
        if isinstance(lay, L.BatchNorm2D):
            c = lay.params[0].value.shape[0]
            lay.params[0].value[:] = rng.uniform(0.5, 1.5, c)   # gamma
            lay.params[1].value[:] = rng.normal(0, 0.3, c)      # beta
            lay.params[2].value[:] = rng.normal(0, 0.5, c)      # running mean
            lay.params[3].value[:] = rng.uniform(0.2, 3.0, c)   # running variance
        elif lay.params:
            for p in lay.params:
                p.value[:] = rng.normal(0, 1.0 / np.sqrt(p.value[0].size if p.value.ndim > 1 else 10),
                                        p.value.shape)
    return model


def batch(n, shape=(1, 28, 28), seed=1):
    return np.random.default_rng(seed).normal(size=(n,) + shape).astype(np.float32)


def assert_close(got, ref):
    assert got.shape == ref.shape and got.dtype == np.float32
    scale = float(np.abs(ref).max())
    assert scale > 0
    err = float(np.abs(got - ref).max())
    assert err <= RTOL * scale, f"max error {err} > {RTOL} x {scale}"


@pytest.mark.parametrize("name", ["default", "lenet5", "keras-mnist"])
def test_zoo_models_match_model_predict(name):
    model = randomize(models.build(name, seed=3), seed=4)
    plan = compile_plan(model, max_batch=8)
    assert plan.fallback is None, plan.fallback
    for n in (1, 3, 4, 17):  # 17: beyond max_batch, in chunks of 8
        x = batch(n, seed=n)
        assert_close(plan.predict(x), model.predict(x))


def test_batch_norm_is_folded_into_the_conv():
    model = randomize(models.build("default", seed=0), seed=1)
    plan = compile_plan(model)
    assert [type(s).__name__ for s in plan.steps] == ["_ConvStep"] * 3 + ["_DenseStep"]
    assert all(s.bn is not None and s.pool2 for s in plan.steps[:3])


def test_other_covered_settings_match():
    # strides, "same"/"full" padding, dilation, leaky_relu, an Activation layer, general max pooling,
    # a conv without bias, a dense followed by batch norm, dropout, max_batch 1
    model = Sequential([
        L.Conv2D(5, 3, padding="same", activation="leaky_relu"),
        L.MaxPool2D(3, strides=2, padding=1),
        L.Conv2D(7, 3, strides=2, padding="full", dilation=2, use_bias=False),
        L.BatchNorm2D(),
        L.Activation("relu"),
        L.Conv2D(6, (2, 3), strides=(1, 2)),
        L.Dropout(0.3),
        L.Flatten(),
        L.Dense(12),
        L.BatchNorm2D(activation="relu"),
        L.Dense(4),
    ], input_shape=(2, 17, 15), seed=2)
    randomize(model, seed=5)
    for max_batch in (1, 4):
        plan = compile_plan(model, max_batch=max_batch)
        assert plan.fallback is None, plan.fallback
        for n in (1, 3, 5):
            x = batch(n, (2, 17, 15), seed=n)
            assert_close(plan.predict(x), model.predict(x))


@pytest.fixture
def every_step_split(monkeypatch):
    """Every conv (2x2 or no pool) and dense step runs over 2 threads of the filter pool, whatever the
    machine has and however small the step; yields the list of steps that ran split."""
    from edgecnn import inference as I
    monkeypatch.setattr(I, "PARALLEL_MIN_MACS", 0)
    monkeypatch.setattr(I._spin_pool, "thread_count", lambda: 2)
    ran, call = [], I._Split.__call__

    def spy(self, src, out):
        done = call(self, src, out)
        ran.append(done and self.kernel.py_func.__name__)
        return done
    monkeypatch.setattr(I._Split, "__call__", spy)
    return ran


@pytest.mark.parametrize("name", ["default", "lenet5", "keras-mnist"])
def test_steps_split_over_threads_match_model_predict(name, every_step_split):
    model = randomize(models.build(name, seed=3), seed=5)
    plan = compile_plan(model, max_batch=8)
    for n in (1, 3, 8):  # 3: rows that do not divide into the chunks evenly
        x = batch(n, seed=10 + n)
        assert_close(plan.predict(x), model.predict(x))
    convs = sum(isinstance(lay, L.Conv2D) for lay in model.layers)
    dense = sum(isinstance(lay, L.Dense) for lay in model.layers)
    assert every_step_split.count("conv_rows_part") == 3 * convs
    assert every_step_split.count("dense_rows_part") == 3 * dense


def test_split_steps_without_pool_odd_rows_and_folded_dense(every_step_split):
    # a conv without a pool, a 2x2 pool over an odd number of rows (the last row unused), a general
    # pool (runs on one thread), a dense with a batch norm folded in
    model = Sequential([
        L.Conv2D(6, 3, activation="relu"),               # 13x11: no pool after it
        L.Conv2D(8, 3, padding=1, activation="leaky_relu", use_bias=False),
        L.MaxPool2D(2),                                   # 13 rows -> 6
        L.Conv2D(5, 2, activation="relu"),
        L.MaxPool2D(3, strides=1),                        # a general pool: not split
        L.Flatten(),
        L.Dense(19),
        L.BatchNorm2D(activation="relu"),
        L.Dense(3),
    ], input_shape=(2, 15, 13), seed=1)
    randomize(model, seed=6)
    plan = compile_plan(model, max_batch=4)
    for n in (1, 2, 5):
        x = batch(n, (2, 15, 13), seed=n)
        assert_close(plan.predict(x), model.predict(x))
    runs = 1 + 1 + 2  # n = 5 runs as 4 + 1 (max_batch 4)
    assert every_step_split.count("conv_rows_part") == 2 * runs
    assert every_step_split.count("dense_rows_part") == 2 * runs
    assert plan.steps[2].split is False and plan.steps[2].fused is False  # the general pool's conv


@pytest.mark.parametrize("split", [False, True])
def test_one_channel_first_convs_in_the_fused_step(split, request):
    # a first layer of one channel (the inner patch loop of one is skipped): a non-square kernel with
    # padding, a strided one; on the calling thread and split
    if split:
        request.getfixturevalue("every_step_split")
    for first in (L.Conv2D(4, (2, 3), padding=1, activation="relu"), L.Conv2D(3, 3, strides=2)):
        model = Sequential([first, L.MaxPool2D(2), L.Flatten(), L.Dense(5)], input_shape=(1, 11, 9), seed=3)
        randomize(model, seed=4)
        plan = compile_plan(model, max_batch=4)
        for n in (1, 4, 6):
            x = batch(n, (1, 11, 9), seed=n)
            assert_close(plan.predict(x), model.predict(x))
        assert plan.steps[0].fused


def test_without_openblas_sgemm_convs_take_numpys_matmul(monkeypatch):
    # NumPy on MKL or Accelerate: no cblas_sgemm address to call from compiled code
    from edgecnn import inference as I
    monkeypatch.setattr(I, "numpy_sgemm", lambda: (0, 0))
    model = randomize(models.build("default", seed=3), seed=8)
    plan = compile_plan(model)
    for n in (1, 5):
        x = batch(n, seed=n)
        assert_close(plan.predict(x), model.predict(x))
    assert all(s.fused is False for s in plan.steps[:3])


def test_pooling_after_a_decreasing_activation():
    # leaky_relu with a negative slope is not monotone: the pool must see the activated values
    model = Sequential([L.Conv2D(3, 3, padding=1), L.Activation("leaky_relu", alpha=-0.5), L.MaxPool2D(2),
                        L.Flatten(), L.Dense(5)], input_shape=(1, 12, 12), seed=0)
    randomize(model, seed=3)
    plan = compile_plan(model)
    assert plan.fallback is None and not plan.steps[0].pool2
    x = batch(3, (1, 12, 12))
    assert_close(plan.predict(x), model.predict(x))


def test_dag_falls_back_to_model_predict():
    x = inp = Input((1, 28, 28))
    a = L.Conv2D(4, 3, padding=1, activation="relu")(x)
    b = L.Conv2D(4, 3, padding=1)(a)
    y = L.Dense(10)(L.Flatten()(L.MaxPool2D(2)(L.Add(activation="relu")([a, b]))))
    model = randomize(Model(inp, y, seed=1), seed=2)
    plan = compile_plan(model)
    assert plan.fallback is not None and "DAG" in plan.fallback
    for n in (1, 4, 17):
        x = batch(n, seed=n)
        np.testing.assert_array_equal(plan.predict(x), model.predict(x))


@pytest.mark.parametrize("layers", [
    [L.Conv2D(4, 3), L.GlobalAvgPool2D(), L.Dense(10)],                 # an uncovered layer
    [L.Conv2D(4, 3, activation="tanh"), L.Flatten(), L.Dense(10)],       # an uncovered activation
    [L.DepthwiseConv2D(3), L.Flatten(), L.Dense(10)],                    # groups
    [L.Flatten(), L.Dense(10, activation="softmax")],
])
def test_uncovered_layers_fall_back(layers):
    model = randomize(Sequential(layers, input_shape=(1, 28, 28), seed=0))
    plan = compile_plan(model)
    assert plan.fallback is not None
    x = batch(3)
    np.testing.assert_array_equal(plan.predict(x), model.predict(x))


def test_plan_follows_load_state_dict():
    model = randomize(models.build("default", seed=0), seed=1)
    plan = compile_plan(model)
    x = batch(4)
    before = plan.predict(x)
    other = randomize(models.build("default", seed=0), seed=7)
    model.load_state_dict(other.state_dict())
    after = plan.predict(x)
    ref = model.predict(x)
    assert_close(after, ref)
    assert np.abs(after - before).max() > 100 * RTOL * np.abs(ref).max()
    # a parameter array replaced (as Model.to does) is noticed too
    conv = model.layers[0]
    conv.params[0].value = conv.params[0].value * np.float32(2)
    assert_close(plan.predict(x), model.predict(x))


def test_plan_reads_dense_weights_in_place_and_sees_their_changes():
    model = randomize(models.build("keras-mnist", seed=0), seed=2)
    plan = compile_plan(model)
    dense = [lay for lay in model.layers if isinstance(lay, L.Dense)]
    assert [s.w is d.params[0].value for s, d in zip(plan.steps[2:], dense)] == [True, True]  # not copied
    x = batch(3)
    before = plan.predict(x)
    dense[0].params[0].value[5:9] *= np.float32(-3)  # in place, as an optimizer step writes
    after = plan.predict(x)
    assert_close(after, model.predict(x))
    assert np.abs(after - before).max() > 100 * RTOL * np.abs(after).max()


@pytest.mark.parametrize("n", [1, 2, 3, 8, 9])
@pytest.mark.parametrize("act", ["linear", "relu", "leaky_relu"])
def test_dense_rows_matches_float64(n, act):
    from edgecnn.inference import _ACTS, dense_rows
    rng = np.random.default_rng(n)
    U, F = 13, 37  # not multiples of the kernel's 8 rows (4 x 2 images)
    x, w = rng.normal(size=(n, F)).astype(np.float32), rng.normal(size=(U, F)).astype(np.float32)
    b = rng.normal(size=U).astype(np.float32)
    z = np.full((n, U), np.nan, np.float32)
    dense_rows(x, w, b, _ACTS[None if act == "linear" else act], np.float32(0.1), z)
    ref = x.astype(np.float64) @ w.T.astype(np.float64) + b
    ref = {"linear": ref, "relu": np.maximum(ref, 0), "leaky_relu": np.where(ref > 0, ref, 0.1 * ref)}[act]
    np.testing.assert_allclose(z, ref, rtol=1e-5, atol=1e-5)


def test_bad_inputs_name_the_shape():
    plan = compile_plan(models.build("lenet5"))
    with pytest.raises(ValueError, match=r"\(4, 28, 28\)"):
        plan.predict(np.zeros((4, 28, 28), np.float32))
    with pytest.raises(ValueError, match=r"\(2, 1, 28, 27\)"):
        plan.predict(np.zeros((2, 1, 28, 27), np.float32))
    with pytest.raises(ValueError, match=r"\(0, 1, 28, 28\)"):
        plan.predict(np.zeros((0, 1, 28, 28), np.float32))
    with pytest.raises(TypeError, match=r"float64.*\(2, 1, 28, 28\)"):
        plan.predict(np.zeros((2, 1, 28, 28)))
    with pytest.raises(TypeError, match="NumPy array"):
        plan.predict([[0.0]])
    with pytest.raises(ValueError, match="max_batch"):
        compile_plan(models.build("lenet5"), max_batch=0)


# ---------------------------------------------------------------------------------------------- Classifier
def classifier(name="default", seed=0):
    norm = Normalization("zscore", mean=0.13, std=0.31)
    model = randomize(models.build(name, seed=seed), seed=seed + 1)
    return eio.Classifier(model, {"normalization": norm}), norm


def test_classifier_uses_the_plan_for_small_batches():
    clf, norm = classifier()
    rng = np.random.default_rng(0)
    for n in (1, 4, eio.FAST_PATH_MAX_BATCH, 17):
        imgs = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        ref = clf.model.predict(norm.apply(imgs))  # the reference: the documented normalization + executor
        assert_close(clf.logits(imgs), ref)
        p = clf.predict(imgs)
        np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-5)
    assert clf._plan is not None and clf._plan.fallback is None


def test_classifier_prepare_table_equals_normalization():
    clf, norm = classifier("lenet5")
    imgs = np.random.default_rng(1).integers(0, 256, (5, 28, 28), dtype=np.uint8)
    np.testing.assert_array_equal(clf.prepare(imgs), norm.apply(imgs))
    flipped = imgs[:, ::-1]  # not contiguous
    np.testing.assert_array_equal(clf.prepare(flipped), norm.apply(np.ascontiguousarray(flipped)))
    plain = eio.Classifier(models.build("lenet5"), None)
    np.testing.assert_array_equal(plain.prepare(imgs), imgs.astype(np.float32)[:, None])
    with pytest.raises(ValueError, match=r"\(5, 27, 28\)"):
        clf.predict(imgs[:, :27])


def test_classifier_drops_the_plan_on_to_and_follows_new_weights():
    clf, norm = classifier()
    imgs = np.random.default_rng(2).integers(0, 256, (4, 28, 28), dtype=np.uint8)
    clf.predict(imgs)
    assert clf._plan is not None
    assert clf.to("cpu") is clf and clf._plan is None
    clf.predict(imgs)
    clf.model.load_state_dict(randomize(models.build("default"), seed=9).state_dict())
    assert_close(clf.logits(imgs), clf.model.predict(norm.apply(imgs)))
