"""Tiny models and image files built by the tests themselves (nothing is downloaded)."""
from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import pytest
from PIL import Image


def keras():
    from gradcam._tf import import_tf

    return import_tf()[1]


def build_tiny_model(size: int = 32, classes: int = 3, activation: str = "softmax", seed: int = 0):
    """Input(size, size, 3) -> conv -> conv 'last_conv' -> pool -> global pool -> Dense(classes)."""
    k = keras()
    k.utils.set_random_seed(seed)
    inputs = k.Input((size, size, 3))
    x = k.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv1")(inputs)
    x = k.layers.Conv2D(8, 3, padding="same", activation="relu", name="last_conv")(x)
    x = k.layers.MaxPooling2D(2, name="pool")(x)
    x = k.layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = k.layers.Dense(classes, activation=activation, name="predictions")(x)
    return k.Model(inputs, outputs, name="tiny")


def batchnorm_model(seed: int = 0):
    """conv -> BatchNormalization -> separate ReLU, twice -> GAP -> Dense softmax, with trained-like
    statistics: moving variances small and skewed, as after training (many would be negative if
    drawn from a normal of their own mean and standard deviation)."""
    k = keras()
    k.utils.set_random_seed(seed)
    inputs = k.Input((24, 24, 3))
    x = inputs
    for i in (1, 2):
        x = k.layers.Conv2D(6, 3, padding="same", name=f"conv{i}")(x)
        x = k.layers.BatchNormalization(name=f"bn{i}")(x)
        x = k.layers.Activation("relu", name=f"relu{i}")(x)
    x = k.layers.GlobalAveragePooling2D()(x)
    model = k.Model(inputs, k.layers.Dense(3, activation="softmax", name="predictions")(x))
    rng = np.random.default_rng(seed)
    for i in (1, 2):
        bn = model.get_layer(f"bn{i}")
        gamma, beta, _, _ = bn.get_weights()
        bn.set_weights([rng.uniform(0.5, 1.5, gamma.shape).astype(np.float32), rng.normal(0, 0.1, beta.shape).astype(np.float32),
                        rng.normal(20, 30, gamma.shape).astype(np.float32), rng.exponential(0.5, gamma.shape).astype(np.float32) ** 3])
    return model


@pytest.fixture(scope="session")
def tiny_model():
    return build_tiny_model()


@pytest.fixture(scope="session")
def tiny_model_file(tmp_path_factory):
    """The tiny model saved as .keras, with a labels file beside it."""
    folder = tmp_path_factory.mktemp("model")
    path = folder / "tiny.keras"
    build_tiny_model(seed=1).save(path)
    (folder / "labels.txt").write_text("apple\nbanana\ncherry\n", encoding="utf-8")
    return path


def write_photo(path, size=(40, 30), mode="RGB", seed=0, **save_args):
    """Write a random image of ``size`` (width, height) and ``mode``; returns the path."""
    rng = np.random.default_rng(seed)
    array = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    image = Image.fromarray(array)
    if mode != "RGB":
        image = image.convert(mode)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, **save_args)
    return path


def independent_cams(model, layer_name: str, head_name: str, images, class_index, method, preprocess=None):
    """A class activation map computed without gradcam's explainer: a probe model gives the layer's
    activations and the input of the softmax Dense head ``head_name``; the logit is formed by hand.

    Returns (cams (B, h, w) as NumPy, activations, gradients)."""
    import tensorflow as tf

    k = keras()
    head = model.get_layer(head_name)
    probe = k.Model(model.inputs, [model.get_layer(layer_name).output, head.input])
    kernel, bias = head.get_weights()
    x = tf.constant(images if preprocess is None else preprocess(np.array(images)))
    with tf.GradientTape() as tape:
        activations, features = probe(x, training=False)
        logits = tf.matmul(features, kernel) + bias
        score = tf.gather(logits, tf.constant(class_index, tf.int32), axis=1, batch_dims=1)
    gradients = tape.gradient(score, activations)
    return method(activations, gradients).numpy(), activations.numpy(), gradients.numpy()


def nested_and_flat(seed=11):
    """The same layers as Sequential([base, Flatten, Dense]) and as one flat functional model."""
    k = keras()
    k.utils.set_random_seed(seed)
    base_in = k.Input((24, 24, 3))
    x = k.layers.Conv2D(4, 3, activation="relu", name="c1")(base_in)
    x = k.layers.Conv2D(6, 3, activation="relu", name="c2")(x)
    x = k.layers.MaxPooling2D(2, name="p")(x)
    base = k.Model(base_in, x, name="base")
    nested = k.Sequential([k.Input((24, 24, 3)), base, k.layers.Flatten(name="flat"),
                           k.layers.Dense(3, activation="softmax", name="head")])
    inputs = k.Input((24, 24, 3))
    y = inputs
    for layer in (base.get_layer("c1"), base.get_layer("c2"), base.get_layer("p"),
                  nested.get_layer("flat"), nested.get_layer("head")):
        y = layer(y)
    flat = k.Model(inputs, y)
    return nested, flat
