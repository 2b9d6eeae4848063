"""The model zoo: the course model, LeNet-5, and the fast default (how the default was chosen: README,
"Model zoo").

``build(name, seed=0) -> Model``; ``names()`` lists them. All take (1, 28, 28) inputs and output 10
logits (no softmax: the loss is softmax cross-entropy on logits).
"""
from .graph import Input, Model, Sequential
from .layers import BatchNorm2D, Conv2D, Dense, Dropout, Flatten, MaxPool2D

INPUT_SHAPE = (1, 28, 28)


def keras_mnist(seed=0):
    """The Keras MNIST example: 1,199,882 parameters (320, 18,496, 1,179,776, 1,290)."""
    return Sequential([
        Conv2D(32, 3, activation="relu"),
        Conv2D(64, 3, activation="relu"),
        MaxPool2D(2),
        Dropout(0.25),
        Flatten(),
        Dense(128, activation="relu"),
        Dropout(0.5),
        Dense(10),
    ], input_shape=INPUT_SHAPE, name="keras-mnist", seed=seed)


def lenet5(seed=0):
    """LeNet-5 with ReLU and max pooling: 61,706 parameters."""
    return Sequential([
        Conv2D(6, 5, padding=2, activation="relu"),
        MaxPool2D(2),
        Conv2D(16, 5, activation="relu"),
        MaxPool2D(2),
        Flatten(),
        Dense(120, activation="relu"),
        Dense(84, activation="relu"),
        Dense(10),
    ], input_shape=INPUT_SHAPE, name="lenet5", seed=seed)


def _conv_bn(x, filters):
    x = Conv2D(filters, 3, padding=1, use_bias=False)(x)  # the bias is redundant before batch norm
    return BatchNorm2D(activation="relu")(x)


def default(seed=0):
    """The fast default (61,378 parameters, 4.2 M multiply-adds per image forward): three 3x3
    conv-BN-ReLU blocks of 24, 48, 96 channels, each followed by 2x2 max pooling, then one dense layer
    on the flattened 96x3x3 features. Chosen by measurement: README, "Model zoo"."""
    x = inp = Input(INPUT_SHAPE)
    x = MaxPool2D(2)(_conv_bn(x, 24))   # 24x14x14
    x = MaxPool2D(2)(_conv_bn(x, 48))   # 48x7x7
    x = MaxPool2D(2)(_conv_bn(x, 96))   # 96x3x3
    y = Dense(10)(Flatten()(x))
    return Model(inp, y, name="default", seed=seed)


_ZOO = {"default": default, "keras-mnist": keras_mnist, "lenet5": lenet5}


def names():
    return list(_ZOO)


def build(name, seed=0):
    """A fresh model from the zoo, parameters initialised from ``seed``."""
    try:
        fn = _ZOO[name]
    except (KeyError, TypeError):
        raise ValueError(f"models.build: name must be one of {', '.join(_ZOO)}, got {name!r}") from None
    return fn(seed=seed)
