"""The heatmap means something: a CNN trained here to tell a square from a cross
points at the object, wherever it was placed."""
from __future__ import annotations

import numpy as np

from conftest import keras
from gradcam.cam import Explainer
from gradcam.heatmap import normalize, upsample

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


def test_heatmap_peak_lands_on_the_object():
    k = keras()
    k.utils.set_random_seed(7)
    rng = np.random.default_rng(7)
    train_x, train_y, _ = make_images(1200, rng)
    test_x, test_y, test_centres = make_images(60, rng)
    inputs = k.Input((SIZE, SIZE, 3))
    x = k.layers.Rescaling(1 / 255.0)(inputs)
    x = k.layers.Conv2D(16, 3, padding="same", activation="relu")(x)
    x = k.layers.MaxPooling2D(2)(x)
    x = k.layers.Conv2D(32, 3, padding="same", activation="relu", name="features")(x)
    x = k.layers.GlobalMaxPooling2D()(x)
    outputs = k.layers.Dense(2, activation="softmax")(x)
    model = k.Model(inputs, outputs)
    model.compile(optimizer=k.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(train_x, train_y, epochs=6, batch_size=32, verbose=0)
    accuracy = model.evaluate(test_x, test_y, verbose=0)[1]
    assert accuracy >= 0.9, f"the tiny model did not learn the task (accuracy {accuracy:.2f})"

    explainer = Explainer(model)  # default layer: 'features'
    assert explainer.layer_name == "features"
    result = explainer.explain_batch(test_x, test_y)
    hits = 0
    for cam, (r, c) in zip(result.cams, test_centres):
        heatmap = upsample(normalize(cam)[0], (SIZE, SIZE))
        peak_r, peak_c = np.unravel_index(np.argmax(heatmap), heatmap.shape)
        hits += abs(peak_r - r) <= OBJECT // 2 + 2 and abs(peak_c - c) <= OBJECT // 2 + 2
    assert hits >= 0.8 * len(test_x), f"peak on the object for only {hits} of {len(test_x)} images"
    # A control that can fail: a random location is on the object far less often.
    random_hits = sum(abs(rng.integers(0, SIZE) - r) <= 7 and abs(rng.integers(0, SIZE) - c) <= 7
                      for r, c in test_centres)
    assert random_hits < 0.5 * len(test_x)
