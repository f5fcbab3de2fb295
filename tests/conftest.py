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
