"""The Explainer: one compiled step per batch, checked by hand, against independent gradients, and for meaning."""
from __future__ import annotations

import numpy as np
import pytest
from conftest import (
    OBJECT,
    SIZE,
    batchnorm_model,
    build_tiny_model,
    independent_cams,
    keras,
    make_images,
)

from reference import REFERENCE, reference

from gradcam.explainers import methods
from gradcam.explainers.explainer import Explainer, SignedActivationsWarning
from gradcam.errors import UsageError
from gradcam.explainers.heatmap import normalize, upsample


def linear_model():
    """Input 2x2x3 -> 1x1 conv reading channel 0 (2 channels, A = [2x, -x + 1]) -> GAP -> Dense(2, softmax) with known weights.

    y_c = sum_k W[k, c] mean(A^k) + b_c, so dy_c/dA^k_ij = W[k, c] / 4 and
    alpha_k = W[k, c] / 4: the Grad-CAM map is ReLU(sum_k W[k, c] / 4 * A^k).
    """
    k = keras()
    inputs = k.Input((2, 2, 3))
    conv = k.layers.Conv2D(2, 1, name="features")
    x = conv(inputs)
    x = k.layers.GlobalAveragePooling2D()(x)
    dense = k.layers.Dense(2, activation="softmax", name="predictions")
    outputs = dense(x)
    model = k.Model(inputs, outputs)
    conv.set_weights([np.array([[[[2.0, -1.0], [0, 0], [0, 0]]]], np.float32), np.array([0.0, 1.0], np.float32)])
    dense.set_weights([np.array([[1.0, -1.0], [2.0, 0.5]], np.float32), np.zeros(2, np.float32)])
    return model


def test_explainer_end_to_end_by_hand():
    model = linear_model()
    explainer = Explainer(model, layer="features")
    x = np.array([[1.0, 2.0], [0.0, 3.0]], np.float32)
    images = np.repeat(x[None, :, :, None], 3, axis=3)  # the conv reads channel 0 only
    A0, A1 = 2 * x, -x + 1
    for class_index, (w0, w1) in enumerate([(1.0, 2.0), (-1.0, 0.5)]):
        result = explainer.explain_batch(images, class_index)
        expected = np.maximum(w0 / 4 * A0 + w1 / 4 * A1, 0)
        np.testing.assert_allclose(result.cams[0], expected, rtol=1e-5, atol=1e-6)
    # top-1: y0 = mean(A0) + 2 mean(A1) = 3 + 2*(-0.5) = 2;  y1 = -3 + 0.5*(-0.5) = -3.25  -> class 0
    top = explainer.explain_batch(images)
    assert top.class_index[0] == 0
    assert top.probability[0] == pytest.approx(1 / (1 + np.exp(-3.25 - 2)), rel=1e-5)


def test_batched_equals_one_by_one(tiny_model):
    explainer = Explainer(tiny_model)
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (5, 32, 32, 3)).astype(np.float32)
    batch = explainer.explain_batch(images)
    for i in range(5):
        alone = explainer.explain_batch(images[i : i + 1])
        assert alone.class_index[0] == batch.class_index[i]
        np.testing.assert_allclose(alone.cams[0], batch.cams[i], rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(alone.probability[0], batch.probability[i], rtol=1e-5)
    # per-image classes in one batch
    mixed = explainer.explain_batch(images[:3], [0, 1, 2])
    assert list(mixed.class_index) == [0, 1, 2]
    np.testing.assert_allclose(mixed.cams[1], explainer.explain_batch(images[1:2], 1).cams[0], rtol=1e-4, atol=1e-6)


def test_one_trace_for_every_batch_size(tiny_model):
    explainer = Explainer(tiny_model)
    for n in (4, 4, 3, 1, 4):
        explainer.explain_batch(np.zeros((n, 32, 32, 3), np.float32))
    assert explainer._step.experimental_get_tracing_count() == 1


def test_frozen_model_still_explained():
    images = np.random.default_rng(5).uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)
    trainable = Explainer(build_tiny_model(seed=5)).explain_batch(images, 1)
    model = build_tiny_model(seed=5)
    model.trainable = False
    frozen = Explainer(model).explain_batch(images, 1)
    assert frozen.cams.shape == (2, 32, 32)  # last_conv: 32 x 32 before the pooling
    assert trainable.cams.max() > 0
    np.testing.assert_allclose(frozen.cams, trainable.cams, rtol=1e-5, atol=1e-7)


def test_binary_sigmoid_class_zero_is_negated_class_one():
    model = build_tiny_model(classes=1, activation="sigmoid", seed=6)
    images = np.random.default_rng(3).uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)
    explainer = Explainer(model, layer="last_conv")
    assert explainer.num_classes == 2 and explainer.head.kind == "pre-sigmoid"
    positive = explainer.explain_batch(images, 1)
    negative = explainer.explain_batch(images, 0)
    counter = Explainer(model, layer="last_conv", method="counterfactual").explain_batch(images, 1)
    np.testing.assert_allclose(negative.cams, counter.cams, rtol=1e-5, atol=1e-7)
    p = model.predict(images, verbose=0)[:, 0]
    np.testing.assert_allclose(positive.probability, p, rtol=1e-5)
    np.testing.assert_allclose(negative.probability, 1 - p, rtol=1e-5)


def test_class_index_out_of_range(tiny_model):
    explainer = Explainer(tiny_model)
    with pytest.raises(UsageError, match="out of range"):
        explainer.explain_batch(np.zeros((1, 32, 32, 3), np.float32), 3)


def test_class_index_with_top_k_is_refused(tiny_model):
    with pytest.raises(UsageError, match="exclude each other"):
        Explainer(tiny_model, top_k=2).explain_batch(np.zeros((1, 32, 32, 3), np.float32), 1)


def test_the_references_cover_every_gradient_method():
    from gradcam.names import METHOD_NAMES

    assert set(REFERENCE) == set(METHOD_NAMES) - set(methods.PERTURBATION_METHODS) - {methods.GUIDED_METHOD}


@pytest.mark.parametrize("method", sorted(REFERENCE))
def test_every_method_on_a_model_equals_its_formula(method):
    """The explainer's wiring (pre-softmax score, layer, batch) for each method, against the method's
    function fed by an independent probe; a BatchNormalization model with a saturated softmax."""

    model = batchnorm_model(seed=7)
    dense = model.get_layer("predictions")
    dense.set_weights([w * 30 for w in dense.get_weights()])  # saturate the softmax
    images = np.random.default_rng(7).uniform(0, 255, (3, 24, 24, 3)).astype(np.float32)
    classes = np.array([0, 1, 2])
    expected, _, gradients = independent_cams(model, "relu2", "predictions", images, classes, reference(method))
    result = Explainer(model, layer="relu2", method=method).explain_batch(images, classes)
    assert result.cams.shape == (3, 24, 24)
    assert expected.max() > 0 and np.abs(gradients).max() > 0
    np.testing.assert_allclose(result.cams, expected, rtol=1e-4, atol=1e-5 * expected.max())


def test_top_k_equals_each_class_alone(tiny_model):
    images = np.random.default_rng(6).uniform(0, 255, (3, 32, 32, 3)).astype(np.float32)
    ranked = Explainer(tiny_model, top_k=3).explain_batch(images)
    single = Explainer(tiny_model)
    assert ranked.ranked_cams.shape == (3, 3, 32, 32)
    order = np.argsort(-ranked.probabilities, axis=1)
    np.testing.assert_array_equal(ranked.ranked_class_index, order)
    assert np.all(np.diff(ranked.ranked_probability, axis=1) <= 0)
    for k in range(3):
        alone = single.explain_batch(images, ranked.ranked_class_index[:, k])
        np.testing.assert_allclose(ranked.ranked_cams[:, k], alone.cams, rtol=1e-4, atol=1e-6)


def test_top_k_out_of_range(tiny_model):
    with pytest.raises(UsageError, match="top-k"):
        Explainer(tiny_model, top_k=4)


def test_guided_gradcam_on_a_model_at_input_resolution():
    model = build_tiny_model(seed=8)
    before = [w.copy() for w in model.get_weights()]
    explainer = Explainer(model, method="guided-gradcam")
    images = np.random.default_rng(5).uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)
    result = explainer.explain_batch(images)
    assert result.cams.shape == (2, 32, 32) and explainer.map_size == (32, 32)
    assert np.isfinite(result.cams).all() and result.cams.max() > 0
    plain = Explainer(model).explain_batch(images)
    np.testing.assert_array_equal(result.class_index, plain.class_index)
    assert model.get_layer("last_conv").activation.__name__ == "relu"
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_guided_top_k_equals_each_class_alone(tiny_model):
    images = np.random.default_rng(9).uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)
    ranked = Explainer(tiny_model, method="guided-gradcam", top_k=2).explain_batch(images)
    single = Explainer(tiny_model, method="guided-gradcam")
    for k in range(2):
        alone = single.explain_batch(images, ranked.ranked_class_index[:, k])
        np.testing.assert_allclose(ranked.ranked_cams[:, k], alone.cams, rtol=1e-4, atol=1e-6)


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


def minmax(cams: np.ndarray) -> np.ndarray:
    """Each map (..., h, w) scaled to [0, 1] on its own (zeros when constant), float64."""
    cams = cams.astype(np.float64)
    low = cams.min(axis=(-2, -1), keepdims=True)
    high = cams.max(axis=(-2, -1), keepdims=True)
    return np.where(high > low, (cams - low) / np.where(high > low, high - low, 1), 0.0)


@pytest.mark.parametrize("method", ["gradcam", "scorecam"])
def test_aug_smooth_is_the_mean_of_the_normalised_maps_over_flips_and_brightness(method):
    """As pytorch-grad-cam: each augmentation's map scaled to [0, 1] before the mean, so the brighter
    copies do not outweigh the darker ones."""
    model = build_tiny_model(seed=43)
    images = np.random.default_rng(43).uniform(0, 250, (2, 32, 32, 3)).astype(np.float32)
    images[0, :4] = 255  # brightness 1.1 must clip at 255
    plain = Explainer(model, method=method)
    classes = plain.explain_batch(images).class_index
    maps = []
    for flip in (False, True):
        for brightness in (1.0, 1.1, 0.9):
            augmented = np.clip((images[:, :, ::-1] if flip else images) * brightness, 0, 255)
            cams = minmax(plain.explain_batch(augmented.astype(np.float32), classes).cams)
            maps.append(cams[..., ::-1] if flip else cams)
    smooth = Explainer(model, method=method, aug_smooth=True).explain_batch(images)
    np.testing.assert_array_equal(smooth.class_index, classes)  # classes found on the originals
    np.testing.assert_allclose(smooth.cams, np.mean(maps, axis=0), rtol=1e-4, atol=1e-5)
    assert not np.allclose(smooth.cams, maps[0])


def mirror_symmetric_model(seed: int = 3):
    """Convolutions whose kernels equal their left-right mirror, then global pooling: the model's
    map of a mirrored image is the mirror of its map."""
    k = keras()
    model = build_tiny_model(seed=seed)
    for name in ("conv1", "last_conv"):
        layer = model.get_layer(name)
        kernel, bias = layer.get_weights()
        layer.set_weights([(kernel + kernel[:, ::-1]) / 2, bias])
    assert isinstance(model.get_layer("gap"), k.layers.GlobalAveragePooling2D)
    return model


def test_aug_smooth_on_a_mirror_symmetric_model_brings_flipped_maps_back():
    model = mirror_symmetric_model()
    images = np.random.default_rng(8).uniform(0, 200, (2, 32, 32, 3)).astype(np.float32)
    mirrored = np.ascontiguousarray(images[:, :, ::-1])
    plain = Explainer(model, layer="last_conv")
    cams = plain.explain_batch(images, 1).cams
    np.testing.assert_allclose(plain.explain_batch(mirrored, 1).cams[..., ::-1], cams, rtol=1e-4,
                               atol=1e-6 * cams.max())  # the model is symmetric
    smooth = Explainer(model, layer="last_conv", aug_smooth=True)
    smoothed = smooth.explain_batch(images, 1).cams
    np.testing.assert_allclose(smooth.explain_batch(mirrored, 1).cams[..., ::-1], smoothed, rtol=1e-4, atol=1e-5)
    # and in the flipped copies' own frame the maps would be mirrored: the flip was undone
    assert not np.allclose(smoothed, smoothed[..., ::-1], atol=1e-3)


@pytest.mark.parametrize("method", ["gradcam++", "xgradcam"])
def test_signed_layer_gives_bounded_maps_equal_to_the_reference_and_warns(method):
    """A BatchNormalization output (signed, as ConvNeXt's or a LayerNorm's): the maps equal the NumPy
    reference, which keeps the weights bounded, and the explainer warns once."""
    model = batchnorm_model(seed=9)
    images = np.random.default_rng(9).uniform(0, 255, (3, 24, 24, 3)).astype(np.float32)
    classes = np.array([0, 1, 2])
    expected, activations, _ = independent_cams(model, "bn2", "predictions", images, classes, reference(method))
    assert activations.min() < 0 < activations.max()
    explainer = Explainer(model, layer="bn2", method=method)
    with pytest.warns(SignedActivationsWarning, match="negative activations"):
        result = explainer.explain_batch(images, classes)
    assert expected.max() > 0
    np.testing.assert_allclose(result.cams, expected, rtol=1e-4, atol=1e-5 * expected.max())
    assert explainer.signed_note() is not None


def test_a_post_relu_layer_gives_no_signed_warning(recwarn):
    explainer = Explainer(batchnorm_model(seed=9), layer="relu2", method="gradcam++")
    explainer.explain_batch(np.random.default_rng(9).uniform(0, 255, (2, 24, 24, 3)).astype(np.float32))
    assert not [w for w in recwarn if issubclass(w.category, SignedActivationsWarning)]
    assert explainer.signed_note() is None


def peak_hits(cams: np.ndarray, centres: np.ndarray) -> int:
    """How many maps peak on their object (upsampled to the image, within half the object + 2 px)."""
    hits = 0
    for cam, (r, c) in zip(cams, centres):
        heatmap = upsample(normalize(cam)[0], (SIZE, SIZE))
        peak_r, peak_c = np.unravel_index(np.argmax(heatmap), heatmap.shape)
        hits += abs(peak_r - r) <= OBJECT // 2 + 2 and abs(peak_c - c) <= OBJECT // 2 + 2
    return int(hits)


@pytest.mark.parametrize("method, share", [("scorecam", 0.8), ("layercam", 0.7)])
def test_vit_token_map_points_at_the_object(trained_vit, method, share):
    model, images, centres = trained_vit
    explainer = Explainer(model, method=method)
    # default: the input of the last attention layer (block 2's first LayerNormalization), 1 class token
    assert explainer.layer_name == "block2_norm1" and explainer.extra_tokens == 1
    assert explainer.map_size == (6, 6)
    cams = explainer.explain_batch(images, 1).cams
    hits = peak_hits(cams, centres)
    assert hits >= share * len(images), f"{method}: peak on the object for only {hits} of {len(images)}"
    shuffled = peak_hits(cams, np.roll(centres, 7, axis=0))  # control: the maps against other images' objects
    assert shuffled < 0.35 * len(images), shuffled


def test_token_layer_map_equals_grad_cam_on_the_patch_grid():
    """Against an independent computation: token 1 + (r * side + c) is grid cell (r, c)."""
    import tensorflow as tf
    from conftest import build_vit

    model = build_vit(seed=3)
    images = np.random.default_rng(3).uniform(0, 255, (2, SIZE, SIZE, 3)).astype(np.float32)
    explainer = Explainer(model, layer="block1_add2")
    assert explainer.extra_tokens == 1 and explainer.map_size == (6, 6)
    result = explainer.explain_batch(images, 1)
    probe = keras().Model(model.inputs, [model.get_layer("block1_add2").output, model.get_layer("head").input])
    kernel, bias = model.get_layer("head").get_weights()
    with tf.GradientTape() as tape:
        tokens, features = probe(tf.constant(images))
        score = (tf.matmul(features, kernel) + bias)[:, 1]
    gradients = tape.gradient(score, tokens).numpy()[:, 1:].reshape(2, 6, 6, -1)
    activations = tokens.numpy()[:, 1:].reshape(2, 6, 6, -1)
    expected = np.maximum((activations * gradients.mean(axis=(1, 2), keepdims=True)).sum(-1), 0)
    assert expected.max() > 0
    np.testing.assert_allclose(result.cams, expected, rtol=1e-4, atol=1e-5 * expected.max())
