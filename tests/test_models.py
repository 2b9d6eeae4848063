"""The model zoo: architectures, parameter counts, a short learning check."""
import numpy as np
import pytest

from edgecnn import models
from edgecnn.optim import Adam


def test_names():
    assert models.names() == ["default", "keras-mnist", "lenet5"]
    with pytest.raises(ValueError, match="name must be one of"):
        models.build("resnet50")


@pytest.mark.parametrize("name,total", [("keras-mnist", 1_199_882), ("lenet5", 61_706)])
def test_seed_model_parameter_counts(name, total):
    m = models.build(name)
    assert m.count_params() == (total, 0)
    assert m.input_shape == (1, 28, 28) and m.output_shape == (10,)


def test_default_architecture():
    m = models.build("default")
    assert m.count_params() == (61_042, 336)  # 336 = BN running statistics
    kinds = [type(lay).__name__ for lay in m.layers]
    assert kinds == ["Conv2D", "BatchNorm2D", "MaxPool2D"] * 3 + ["Flatten", "Dense"]
    assert [lay.filters for lay in m.layers if kinds[m.layers.index(lay)] == "Conv2D"] == [24, 48, 96]


def test_keras_mnist_layer_counts():
    m = models.build("keras-mnist")
    per_layer = [sum(p.value.size for p in lay.params) for lay in m.layers]
    assert [c for c in per_layer if c] == [320, 18_496, 1_179_776, 1_290]
    assert [type(lay).__name__ for lay in m.layers] == ["Conv2D", "Conv2D", "MaxPool2D", "Dropout", "Flatten",
                                                       "Dense", "Dropout", "Dense"]


def test_lenet5_layer_counts():
    m = models.build("lenet5")
    per_layer = [sum(p.value.size for p in lay.params) for lay in m.layers]
    assert [c for c in per_layer if c] == [156, 2_416, 48_120, 10_164, 850]


@pytest.mark.parametrize("name", models.names())
def test_forward_shape_and_seeding(name):
    a, b = models.build(name, seed=1), models.build(name, seed=1)
    x = np.random.default_rng(0).standard_normal((2, 1, 28, 28)).astype(np.float32)
    ya = a.forward(x).copy()
    assert ya.shape == (2, 10) and ya.dtype == np.float32 and np.all(np.isfinite(ya))
    np.testing.assert_array_equal(ya, b.forward(x))


def test_default_model_learns_a_tiny_problem():
    # 16 fixed random images with random labels: a working network memorises them in a few dozen steps
    m = models.build("default", seed=0)
    opt = Adam(m.parameters(), lr=3e-3)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((16, 1, 28, 28)).astype(np.float32)
    y = rng.integers(0, 10, 16).astype(np.int32)
    first = m.train_step(x, y)[0]
    opt.step()
    for _ in range(25):
        loss, _ = m.train_step(x, y)
        opt.step()
    assert loss < 0.5 * first, (first, loss)
    acc = (m.predict(x).argmax(1) == y).mean()
    assert acc > 0.8
