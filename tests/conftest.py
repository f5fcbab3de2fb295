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


def assert_same_outputs(first, second) -> list[str]:
    """Both output folders hold the same PNG and .npy files, pixel for pixel (PNGs compared as RGBA);
    returns their paths."""
    def outputs(folder):
        return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.suffix in (".png", ".npy"))

    names = outputs(first)
    assert names == outputs(second)
    for name in names:
        if name.endswith(".png"):
            # as RGBA: an RGB PNG (fpng) equals an RGBA one (matplotlib) whose alpha is opaque everywhere
            np.testing.assert_array_equal(np.asarray(Image.open(first / name).convert("RGBA")),
                                          np.asarray(Image.open(second / name).convert("RGBA")))
        else:
            np.testing.assert_array_equal(np.load(first / name), np.load(second / name))
    return names


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
    activations and the input of the softmax Dense head ``head_name``; the logit is formed by hand;
    ``method`` maps NumPy (activations, gradients) to maps (see reference.py).

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
    return np.asarray(method(activations.numpy(), gradients.numpy())), activations.numpy(), gradients.numpy()


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


_VIT_LAYERS: dict = {}


def vit_layers():
    """The custom layer a small ViT needs (class token and position embeddings), registered once so
    that a saved .keras ViT loads (with safe_mode) in the same process."""
    if not _VIT_LAYERS:
        k = keras()

        @k.saving.register_keras_serializable(package="gradcam_tests")
        class ClassTokenAndPosition(k.layers.Layer):
            """(B, T, C) patches -> (B, T + 1, C): a learnt class token first, plus learnt positions."""

            def build(self, input_shape):
                tokens, dim = input_shape[1], input_shape[2]
                self.token = self.add_weight(shape=(1, 1, dim), initializer="zeros", name="class_token")
                self.position = self.add_weight(shape=(1, tokens + 1, dim),
                                                initializer=k.initializers.RandomNormal(stddev=0.02), name="position")

            def call(self, patches):
                ops = k.ops
                token = ops.broadcast_to(self.token, (ops.shape(patches)[0], 1, ops.shape(patches)[2]))
                return ops.concatenate([token, patches], axis=1) + self.position

        _VIT_LAYERS["ClassTokenAndPosition"] = ClassTokenAndPosition
    return _VIT_LAYERS


def build_vit(size: int = 48, patch: int = 8, dim: int = 32, blocks: int = 2, classes: int = 2, seed: int = 0):
    """A small Vision Transformer: patch embedding, class token, ``blocks`` pre-norm transformer
    blocks, final LayerNorm, class-token head. Tokens: 1 + (size / patch)^2."""
    k = keras()
    k.utils.set_random_seed(seed)
    grid = size // patch
    inputs = k.Input((size, size, 3))
    x = k.layers.Rescaling(1 / 255.0)(inputs)
    x = k.layers.Conv2D(dim, patch, strides=patch, name="patches")(x)
    x = k.layers.Reshape((grid * grid, dim), name="patch_tokens")(x)
    x = vit_layers()["ClassTokenAndPosition"](name="tokens")(x)
    for i in range(1, blocks + 1):
        h = k.layers.LayerNormalization(epsilon=1e-6, name=f"block{i}_norm1")(x)
        h = k.layers.MultiHeadAttention(num_heads=2, key_dim=dim // 2, name=f"block{i}_attention")(h, h)
        x = k.layers.Add(name=f"block{i}_add1")([x, h])
        h = k.layers.LayerNormalization(epsilon=1e-6, name=f"block{i}_norm2")(x)
        h = k.layers.Dense(2 * dim, activation="gelu", name=f"block{i}_mlp1")(h)
        h = k.layers.Dense(dim, name=f"block{i}_mlp2")(h)
        x = k.layers.Add(name=f"block{i}_add2")([x, h])
    x = k.layers.LayerNormalization(epsilon=1e-6, name="final_norm")(x)
    x = k.layers.Cropping1D((0, grid * grid), name="class_token")(x)
    x = k.layers.Flatten()(x)
    return k.Model(inputs, k.layers.Dense(classes, activation="softmax", name="head")(x), name="vit")


SIZE, OBJECT = 48, 10


def make_images(n: int, rng: np.random.Generator):
    """Noisy grey images, each with one bright square (class 0) or cross (class 1) at a random place.

    Returns (images float32 (n, 48, 48, 3) in 0-255, labels (n,), object centres (n, 2) as (row, col)).
    """
    images = rng.uniform(0, 60, (n, SIZE, SIZE, 1)).astype(np.float32)
    labels = rng.integers(0, 2, n)
    centres = rng.integers(OBJECT // 2, SIZE - OBJECT // 2, (n, 2))
    for image, label, (r, c) in zip(images, labels, centres):
        top, left = r - OBJECT // 2, c - OBJECT // 2
        if label == 0:
            image[top : top + OBJECT, left : left + OBJECT] = 230
        else:
            image[r - 1 : r + 1, left : left + OBJECT] = 230
            image[top : top + OBJECT, c - 1 : c + 1] = 230
    return np.repeat(images, 3, axis=3), labels, centres


def presence_images(n: int, rng: np.random.Generator):
    """Class 1: a bright square or cross at a random place (as make_images); class 0: noise only.

    Returns (images float32 (n, 48, 48, 3), labels (n,), object centres (n, 2))."""
    images, _, centres = make_images(n, rng)
    labels = rng.integers(0, 2, n)
    images[labels == 0] = np.repeat(rng.uniform(0, 60, (int((labels == 0).sum()), SIZE, SIZE, 1)), 3, axis=3)
    return images.astype(np.float32), labels, centres


@pytest.fixture(scope="session")
def trained_vit():
    """A small ViT (class token, two blocks) trained for a few seconds to tell shapes from noise."""
    k = keras()
    rng = np.random.default_rng(7)
    train_x, train_y, _ = presence_images(1500, rng)
    test_x, test_y, centres = presence_images(120, rng)
    model = build_vit(seed=7)
    model.compile(optimizer=k.optimizers.Adam(2e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(train_x, train_y, epochs=8, batch_size=32, verbose=0)
    accuracy = model.evaluate(test_x, test_y, verbose=0)[1]
    assert accuracy >= 0.9, f"the ViT did not learn the task (accuracy {accuracy:.2f})"
    positive = test_y == 1
    return model, test_x[positive], centres[positive]


def brightness_model(size: int = 32):
    """A classifier of brightness: 'conv' (1x1, the mean of R, G, B) -> GAP -> Dense softmax with logits
    (+d/2, -d/2), d = 0.1 (b - 120), b the mean brightness. Class 0 ("bright") for b > 120.

    Deleting pixels (to black) darkens the image, so class 0's deletion curve falls to 0 once about
    half of a bright photo is deleted (AUC about 0.5) while its insertion curve, which starts from the
    blurred photo, stays near 1: the two scores cannot be mistaken for each other."""
    k = keras()
    inputs = k.Input((size, size, 3))
    conv = k.layers.Conv2D(1, 1, name="conv")
    x = k.layers.GlobalAveragePooling2D()(conv(inputs))
    dense = k.layers.Dense(2, activation="softmax", name="predictions")
    model = k.Model(inputs, dense(x), name="brightness")
    conv.set_weights([np.full((1, 1, 3, 1), 1 / 3, np.float32), np.zeros(1, np.float32)])
    dense.set_weights([np.array([[0.05, -0.05]], np.float32), np.array([-6.0, 6.0], np.float32)])
    return model


@pytest.fixture(scope="session")
def brightness_model_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("brightness") / "brightness.keras"
    brightness_model().save(path)
    return path


def bright_photo(path, size: int = 32, seed: int = 0):
    """A bright, uneven photo (values 200-255) at the brightness model's input size."""
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(200, 256, (size, size, 3), dtype=np.uint8)).save(path)
    return path


def dicom_file(path, pixels: np.ndarray, photometric: str = "MONOCHROME2", lut=None, bits_stored: int = 16,
               **tags) -> None:
    """A single-frame greyscale DICOM file (explicit VR little endian) holding ``pixels`` (uint16 or
    int16). ``lut`` = (descriptor, data, descriptor VR, data VR) makes a one-item VOI LUT Sequence; a tag
    given as (VR, value) is written with that VR (a US value for signed pixels)."""
    from pydicom.datadict import tag_for_keyword
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"  # CT image storage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    dataset = Dataset()
    dataset.file_meta = meta
    dataset.Rows, dataset.Columns = pixels.shape
    dataset.SamplesPerPixel, dataset.PhotometricInterpretation = 1, photometric
    dataset.BitsAllocated, dataset.BitsStored, dataset.HighBit = 16, bits_stored, bits_stored - 1
    dataset.PixelRepresentation = int(pixels.dtype == np.int16)
    for key, value in tags.items():
        if isinstance(value, tuple):
            dataset.add_new(tag_for_keyword(key), *value)
        else:
            setattr(dataset, key, value)
    if lut is not None:
        descriptor, data, descriptor_vr, data_vr = lut
        item = Dataset()
        item.add_new(0x00283002, descriptor_vr, list(descriptor))
        item.add_new(0x00283006, data_vr, data)
        dataset.VOILUTSequence = [item]
    dataset.PixelData = np.ascontiguousarray(pixels).tobytes()
    dataset.save_as(path, enforce_file_format=True)
