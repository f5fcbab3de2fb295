"""Max-sensitivity: the noise, the formula on explain functions whose change is known by hand, Quantus'
MaxSensitivity fed the same noise, and real tiny Keras models through explainer_heatmaps (a Grad-CAM that
cannot move scores 0; a ReLU network's scores what explaining each copy alone gives)."""
from __future__ import annotations

import numpy as np
import pytest
from conftest import build_tiny_model, keras

from gradcam.errors import HeatmapError, UsageError
from gradcam.explainers.explainer import Explainer
from gradcam.explainers.heatmap import heatmap_at
from gradcam.metrics.robustness import (
    DEFAULT_RADIUS,
    DEFAULT_SAMPLES,
    explainer_heatmaps,
    max_sensitivity,
    noisy_copies,
)


def test_noisy_copies_are_bounded_uniform_and_seeded():
    image = np.random.default_rng(0).uniform(0, 255, (20, 30, 3)).astype(np.float32)
    kept = image.copy()
    copies = noisy_copies(image, 10.0, 50, seed=4)
    assert copies.dtype == np.float32 and copies.shape == (50, 20, 30, 3)
    noise = copies.astype(np.float64) - image
    assert np.abs(noise).max() <= 10.0 + 1e-4  # float32 rounding of pixels up to 265
    assert np.abs(noise).max() > 9.9 and abs(noise.mean()) < 0.1  # 90000 draws: mean's sd 0.02
    assert abs(noise.var() - 100.0 / 3) < 1.0  # var of U(-r, r) = r^2 / 3
    assert not np.array_equal(noise[0], noise[1])
    np.testing.assert_array_equal(copies, noisy_copies(image, 10.0, 50, seed=4))
    assert not np.array_equal(copies, noisy_copies(image, 10.0, 50, seed=5))
    np.testing.assert_array_equal(noisy_copies(image, 0.0, 3, seed=1), np.repeat(image[None], 3, axis=0))
    np.testing.assert_array_equal(image, kept)


def test_formula_by_hand_on_maps_that_ignore_the_image():
    """map(x) = (3, 4), norm 5. The copies' maps: (3, 4): 0; (0, 0): 5/5; (6, 8): 5/5; (3, 14): 10/5 = 2."""
    reference = np.array([[3.0, 4.0]])
    calls = []

    def explain(images, class_index):
        calls.append((images.shape, class_index))
        return np.array([[[3.0, 4.0]], [[0.0, 0.0]], [[6.0, 8.0]], [[3.0, 14.0]]])

    image = np.zeros((1, 2, 3), np.float32)
    assert max_sensitivity(explain, image, reference, 5, samples=4) == pytest.approx(2.0, abs=1e-12)
    assert calls == [((4, 1, 2, 3), 5)]  # one batch of every copy, for the class asked


def test_linear_map_of_the_noise_by_hand():
    """map(x) = the mean of the three channels: map(x') - map(x) is the channels' mean noise, so the score is
    max_s ||mean_c noise_s|| / ||map(x)||, the noise redrawn here from the documented generator and seed
    with loops over samples."""
    image = np.full((6, 5, 3), 100.0, np.float32)
    image[2:4, 1:3] = 40.0
    reference = image.mean(axis=2)
    radius, samples, seed = 8.0, 7, 11

    def explain(images, class_index):
        return images.astype(np.float64).mean(axis=3)

    noise = np.random.default_rng(seed).uniform(-radius, radius, (samples, 6, 5, 3))
    norm = np.sqrt((reference.astype(np.float64) ** 2).sum())
    expected = 0.0
    for s in range(samples):
        moved = (image.astype(np.float64) + noise[s]).astype(np.float32).astype(np.float64).mean(axis=2)
        expected = max(expected, float(np.sqrt(((moved - reference) ** 2).sum()) / norm))
    assert expected > 0
    assert max_sensitivity(explain, image, reference, 0, radius, samples, seed) == pytest.approx(expected, rel=1e-9)
    # no noise, no change; and a map that cannot move scores 0 whatever the noise
    assert max_sensitivity(explain, image, reference, 0, 0.0, samples, seed) == 0.0
    assert max_sensitivity(lambda images, c: np.repeat(reference[None], len(images), 0), image, reference, 0) == 0.0


def smooth_explain(images, class_index):
    """A nonlinear map of the image, min-max normalised per image (as the tool's heatmaps are)."""
    images = images.astype(np.float64)
    raw = np.tanh(images[..., 0] / 80.0) * (1 + np.sin(images[..., 1] / 30.0)) + class_index * images[..., 2] / 255
    low, high = raw.min(axis=(1, 2), keepdims=True), raw.max(axis=(1, 2), keepdims=True)
    return (raw - low) / (high - low)


def test_against_quantus_with_the_same_noise():
    """Quantus' MaxSensitivity (defaults: difference, Frobenius norms, no normalisation, no abs) with its
    perturbation function replaced by one handing out this module's noise, copy by copy."""
    quantus = pytest.importorskip("quantus")
    rng = np.random.default_rng(7)
    image = rng.uniform(0, 255, (12, 10, 3)).astype(np.float32)
    class_index, samples, seed, radius = 1, 9, 3, DEFAULT_RADIUS
    reference = smooth_explain(image[None], class_index)[0]
    copies = noisy_copies(image, radius, samples, seed)
    handed = iter(copies)

    def perturb(arr, indices, **kwargs):  # Quantus holds images channel first, (1, 3 H W) flattened
        return next(handed).transpose(2, 0, 1).reshape(arr.shape).astype(arr.dtype)

    def explain_func(model, inputs, targets, **kwargs):
        return smooth_explain(np.asarray(inputs), int(targets[0]))

    k = keras()
    model = k.Sequential([k.Input((12, 10, 3)), k.layers.Flatten(), k.layers.Dense(2)])
    metric = quantus.MaxSensitivity(nr_samples=samples, perturb_func=perturb, disable_warnings=True)
    theirs = metric(model=model, x_batch=image[None], y_batch=np.array([class_index]), a_batch=reference[None].copy(),
                    explain_func=explain_func)
    ours = max_sensitivity(smooth_explain, image, reference, class_index, radius, samples, seed)
    assert ours > 0.01
    assert ours == pytest.approx(float(theirs[0]), rel=1e-6)


def test_bad_arguments_are_refused():
    image = np.zeros((4, 4, 3), np.float32)
    heatmap = np.eye(4)

    def explain(images, class_index):
        return np.repeat(heatmap[None], len(images), 0)

    with pytest.raises(HeatmapError, match="zero everywhere"):
        max_sensitivity(explain, image, np.zeros((4, 4)), 0)
    with pytest.raises(HeatmapError, match="size"):
        max_sensitivity(explain, image, np.eye(3), 0)
    with pytest.raises(HeatmapError):
        max_sensitivity(lambda images, c: np.zeros((1, 4, 4)), image, heatmap, 0, samples=2)
    with pytest.raises(HeatmapError):
        max_sensitivity(lambda images, c: np.full((2, 4, 4), np.nan), image, heatmap, 0, samples=2)
    for samples in (0, -1, 1.5, True):
        with pytest.raises(UsageError):
            max_sensitivity(explain, image, heatmap, 0, samples=samples)
    for radius in (-1.0, float("nan"), float("inf"), "5"):
        with pytest.raises(UsageError):
            max_sensitivity(explain, image, heatmap, 0, radius=radius)


def fixed_layer_model():
    """A 16x16 model whose explained layer cannot see the photo: a 1x1 conv of zero kernel and biases (1, 2),
    zero-padded by 2 ('features', 20x20: a ring of zeros around a constant), while the photo reaches the
    three linear scores only through a side path (its mean colour). Every Grad-CAM weight is a Dense weight
    over 400, the same for every photo (chosen so that sum_k w_k b_k > 0 for every class: the map is not
    blank), so the map is the same for every photo."""
    k = keras()
    k.utils.set_random_seed(3)
    inputs = k.Input((16, 16, 3))
    constant = k.layers.Conv2D(2, 1, name="constant")(inputs)
    features = k.layers.ZeroPadding2D(2, name="features")(constant)
    pooled = k.layers.Concatenate()([k.layers.GlobalAveragePooling2D()(features),
                                     k.layers.GlobalAveragePooling2D()(inputs)])
    model = k.Model(inputs, k.layers.Dense(3, name="scores")(pooled))
    model.get_layer("constant").set_weights([np.zeros((1, 1, 3, 2), np.float32), np.array([1.0, 2.0], np.float32)])
    kernel = np.array([[1.0, -1.0, 0.5], [0.5, 2.0, 1.0], [0.01, 0.02, -0.01], [0.0, 0.01, 0.02], [-0.02, 0.0, 0.01]])
    model.get_layer("scores").set_weights([kernel.astype(np.float32), np.zeros(3, np.float32)])
    return model


def test_a_gradcam_that_cannot_move_scores_zero():
    explainer = Explainer(fixed_layer_model(), layer="features")
    explain = explainer_heatmaps(explainer)
    image = np.random.default_rng(0).uniform(0, 255, (16, 16, 3)).astype(np.float32)
    for class_index in (0, 2):
        reference = explain(image[None], class_index)[0]
        assert reference.max() == pytest.approx(1.0, abs=1e-6) and reference.min() == 0.0  # not a blank map
        score = max_sensitivity(explain, image, reference, class_index, radius=40.0, samples=4)
        assert score == pytest.approx(0.0, abs=1e-6)


def test_a_relu_network_against_each_copy_explained_alone():
    """The tiny ReLU CNN, explained for a class that is not its top class: > 0, and the value that explaining
    every noisy copy on its own (batch of one, the class given each time) and taking the norms gives."""
    explainer = Explainer(build_tiny_model(), layer="last_conv")
    image = np.random.default_rng(1).uniform(0, 255, (32, 32, 3)).astype(np.float32)
    kept = image.copy()
    top = int(np.argmax(explainer.predict(image[None])[0]))
    class_index = (top + 1) % 3
    explain = explainer_heatmaps(explainer)
    reference = explain(image[None], class_index)[0]
    assert reference.dtype == np.float32 and reference.shape == (32, 32)
    score = max_sensitivity(explain, image, reference, class_index, seed=9)
    ratios = []
    for copy in noisy_copies(image, DEFAULT_RADIUS, DEFAULT_SAMPLES, 9):
        cam = explainer.explain_batch(copy[None], class_index).cams[0]
        moved = heatmap_at(cam, (32, 32))[0].astype(np.float64)
        ratios.append(np.linalg.norm(moved - reference) / np.linalg.norm(reference.astype(np.float64)))
    assert score > 1e-3
    assert score == pytest.approx(max(ratios), rel=1e-4, abs=1e-6)
    assert max_sensitivity(explain, image, reference, class_index, seed=9) == score  # reproducible
    # a bigger radius moves the map further (same seed: the same noise, scaled)
    assert max_sensitivity(explain, image, reference, class_index, radius=4 * DEFAULT_RADIUS, seed=9) > score
    np.testing.assert_array_equal(image, kept)
