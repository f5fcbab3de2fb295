"""Models with several outputs (--model-output NAME) and regression heads (one linear unit, explained as its
value): a two-headed CNN trained in the test whose evidence lies where its object is, against an
independent computation of the value's gradient."""
from __future__ import annotations

import numpy as np
import pytest
from conftest import keras

from gradcam.explainers.explainer import Explainer
from gradcam.cli import main
from gradcam.errors import UsageError

SIZE, SQUARE = 32, 8


def square_images(n: int, rng: np.random.Generator):
    """Dark noise with one bright square of random brightness at a random place.

    Returns images float32 (n, 32, 32, 3) 0-255, the side (0 left, 1 right) of the square's centre,
    its brightness (the regression target, 0-1), and the centres (row, col)."""
    images = rng.uniform(0, 40, (n, SIZE, SIZE, 1)).astype(np.float32)
    centres = rng.integers(SQUARE // 2, SIZE - SQUARE // 2, (n, 2))
    brightness = rng.uniform(0.3, 1.0, n).astype(np.float32)
    for image, (r, c), level in zip(images, centres, brightness):
        image[r - SQUARE // 2 : r + SQUARE // 2, c - SQUARE // 2 : c + SQUARE // 2] = 60 + 195 * level
    side = (centres[:, 1] >= SIZE // 2).astype(np.int64)
    return np.repeat(images, 3, axis=3), side, brightness, centres


@pytest.fixture(scope="module")
def two_heads():
    """images -> conv trunk -> 'side' (softmax, left/right half) and 'brightness' (one linear unit)."""
    k = keras()
    k.utils.set_random_seed(3)
    rng = np.random.default_rng(3)
    x_train, side, level, _ = square_images(1200, rng)
    inputs = k.Input((SIZE, SIZE, 3))
    x = k.layers.Rescaling(1 / 255.0)(inputs)
    x = k.layers.Conv2D(16, 3, padding="same", activation="relu", name="conv1")(x)
    x = k.layers.Conv2D(16, 3, padding="same", activation="relu", name="features")(x)
    pooled = k.layers.GlobalMaxPooling2D()(x)
    flat = k.layers.Flatten()(k.layers.AveragePooling2D(4)(x))
    side_out = k.layers.Dense(2, activation="softmax", name="side")(flat)
    level_out = k.layers.Dense(1, name="brightness")(pooled)
    model = k.Model(inputs, [side_out, level_out], name="two_heads")
    model.compile(optimizer=k.optimizers.Adam(3e-3), loss=["sparse_categorical_crossentropy", "mse"])
    model.fit(x_train, [side, level], epochs=12, batch_size=32, verbose=0)
    x_test, side_test, level_test, centres = square_images(60, rng)
    side_p, level_p = model.predict(x_test, verbose=0)
    assert (side_p.argmax(axis=1) == side_test).mean() > 0.9, "the side head did not learn"
    assert np.abs(level_p[:, 0] - level_test).mean() < 0.1, "the brightness head did not learn"
    return model, x_test, centres


def peak_on_square(cams: np.ndarray, centres: np.ndarray) -> float:
    """Fraction of maps (at the input size) whose peak lies within the square (2 px of slack)."""
    hits = 0
    for cam, (r, c) in zip(cams, centres):
        y, x = np.unravel_index(np.argmax(cam), cam.shape)
        hits += abs(y - r) <= SQUARE // 2 + 2 and abs(x - c) <= SQUARE // 2 + 2
    return hits / len(cams)


def test_several_outputs_need_a_name(two_heads):
    model, _, _ = two_heads
    with pytest.raises(UsageError, match=r"2 outputs \(side, brightness\): choose one with --model-output NAME"):
        Explainer(model)
    with pytest.raises(UsageError, match="no output named 'size'; its outputs: side, brightness"):
        Explainer(model, output="size")


def test_the_regression_head_is_explained_as_its_value(two_heads):
    tf = pytest.importorskip("tensorflow")
    model, images, centres = two_heads
    explainer = Explainer(model, output="brightness")
    assert explainer.head.kind == "value" and explainer.layer_name == "features" and explainer.num_classes == 1
    result = explainer.explain_batch(images)
    np.testing.assert_allclose(result.probability, model.predict(images, verbose=0)[1][:, 0], rtol=1e-4, atol=1e-5)
    assert np.all(result.class_index == 0) and explainer.class_name(0) == "value"
    # independently: d value / d features by a probe of the caller's model, Grad-CAM by hand
    probe = keras().Model(model.inputs, [model.get_layer("features").output, model.outputs[1]])
    with tf.GradientTape() as tape:
        features, value = probe(tf.constant(images), training=False)
        total = tf.reduce_sum(value)
    gradients = tape.gradient(total, features).numpy()
    weights = gradients.mean(axis=(1, 2))
    expected = np.maximum(np.einsum("bhwk,bk->bhw", features.numpy(), weights), 0)
    np.testing.assert_allclose(result.cams, expected, rtol=1e-4, atol=1e-5 * expected.max())
    assert peak_on_square(result.cams, centres) >= 0.8  # the evidence for the brightness is the square


def test_the_classification_head_of_the_same_model(two_heads):
    model, images, centres = two_heads
    explainer = Explainer(model, output="side")
    assert explainer.head.kind == "pre-softmax" and explainer.num_classes == 2
    result = explainer.explain_batch(images)
    np.testing.assert_allclose(result.probabilities, model.predict(images, verbose=0)[0], rtol=1e-4, atol=1e-6)


def test_cli_output_option(two_heads, tmp_path, capsys):
    model, images, _ = two_heads
    path = tmp_path / "two.keras"
    model.save(path)
    from PIL import Image

    photo = tmp_path / "p.png"
    Image.fromarray(images[0].astype(np.uint8)).save(photo)
    out = tmp_path / "out"
    assert main(["--model", str(path), str(photo), "-o", str(out), "--model-output", "brightness"]) == 0
    printed = capsys.readouterr().out
    assert "scores value" in printed and "value (0)" in printed
    assert main(["--model", str(path), str(photo), "-o", str(tmp_path / "o2")]) == 2
    assert "choose one with --model-output NAME" in capsys.readouterr().err
