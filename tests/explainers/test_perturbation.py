"""Score-CAM and Ablation-CAM: by hand on a model whose scores are known in closed form, and Score-CAM
against tf-keras-vis."""
from __future__ import annotations

import numpy as np
import pytest
from conftest import build_tiny_model, keras

from gradcam.explainers.explainer import Explainer
from gradcam.explainers.heatmap import upsample
from gradcam.explainers.perturbation import select_channels

W = np.array([[1.0, -0.5], [0.3, 0.8]], np.float32)  # features (R, G) -> 2 classes
B = np.array([0.1, -0.2], np.float32)


def linear_model(scale: float, pool: bool = False):
    """Input 4x4x3 -> 'features' = (R, G) by a 1x1 conv [-> 2x2 average pool 'pooled'] -> GAP -> Dense softmax.

    The logits are z = scale * W^T (mean R, mean G) + B, so every score is known by hand."""
    k = keras()
    inputs = k.Input((4, 4, 3))
    conv = k.layers.Conv2D(2, 1, use_bias=False, name="features")
    x = conv(inputs)
    if pool:
        x = k.layers.AveragePooling2D(2, name="pooled")(x)
    x = k.layers.GlobalAveragePooling2D()(x)
    dense = k.layers.Dense(2, activation="softmax")
    model = k.Model(inputs, dense(x))
    conv.set_weights([np.array([[[[1, 0], [0, 1], [0, 0]]]], np.float32)])
    dense.set_weights([scale * W, B])
    return model


IMAGE = np.zeros((4, 4, 3), np.float32)
IMAGE[..., 0] = np.arange(16).reshape(4, 4) * 10.0  # R rises to the bottom right
IMAGE[..., 1] = np.array([[200, 180, 0, 0], [160, 140, 0, 0], [0, 0, 20, 0], [0, 0, 0, 10]])  # G top left


def softmax(z):
    e = np.exp(z - z.max())
    return e / e.sum()


def logits(image: np.ndarray, scale: float) -> np.ndarray:
    features = image[..., :2].reshape(-1, 2).mean(axis=0)
    return scale * features @ W + B


def minmax(values):
    return (values - values.min()) / (values.max() - values.min())


@pytest.mark.parametrize("scale", [1.0, 1e-4])
@pytest.mark.parametrize("class_index", [0, 1])
def test_scorecam_by_hand(scale, class_index):
    activations = [IMAGE[..., 0], IMAGE[..., 1]]  # A^0 = R, A^1 = G at 4x4
    weights = [softmax(logits(IMAGE * minmax(a)[..., None], scale))[class_index] for a in activations]
    expected = np.maximum(weights[0] * activations[0] + weights[1] * activations[1], 0)
    explainer = Explainer(linear_model(scale), layer="features", method="scorecam")
    cams = explainer.explain_batch(IMAGE[None], class_index).cams
    np.testing.assert_allclose(cams[0], expected, rtol=1e-5)


def test_scorecam_masks_are_upsampled_at_pixel_centres_and_scaled_after():
    scale, class_index = 1.0, 1
    pooled = [IMAGE[..., c].reshape(2, 2, 2, 2).mean(axis=(1, 3)) for c in (0, 1)]  # 'pooled' 2x2
    masks = [minmax(upsample(minmax(a), (4, 4))) for a in pooled]  # upsampling keeps [0, 1] here
    weights = [softmax(logits(IMAGE * m[..., None], scale))[class_index] for m in masks]
    expected = np.maximum(weights[0] * pooled[0] + weights[1] * pooled[1], 0)
    cams = Explainer(linear_model(scale, pool=True), layer="pooled", method="scorecam").explain_batch(
        IMAGE[None], class_index).cams
    np.testing.assert_allclose(cams[0], expected, rtol=1e-5)


@pytest.mark.parametrize("scale", [1.0, 1e-4])
@pytest.mark.parametrize("class_index", [0, 1])
def test_ablationcam_by_hand(scale, class_index):
    # zeroing channel k removes scale * W[k, c] mean(A^k) from y^c: w_k = scale W[k, c] mean(A^k) / |y^c|
    # (class 1's score is negative here: dividing by y^c itself would invert the map)
    y = logits(IMAGE, scale)[class_index]
    assert (y < 0) == (class_index == 1)
    means = IMAGE[..., :2].reshape(-1, 2).mean(axis=0)
    weights = scale * W[:, class_index] * means / abs(y)
    expected = np.maximum(weights[0] * IMAGE[..., 0] + weights[1] * IMAGE[..., 1], 0)
    explainer = Explainer(linear_model(scale), layer="features", method="ablationcam")
    cams = explainer.explain_batch(IMAGE[None], class_index).cams
    np.testing.assert_allclose(cams[0], expected, rtol=1e-4, atol=1e-6 * np.abs(expected).max())


@pytest.mark.parametrize("method", ["scorecam", "ablationcam"])
def test_batches_of_masks_and_images_give_the_same_maps(method):
    model = build_tiny_model(seed=41)
    images = np.random.default_rng(41).uniform(0, 255, (3, 32, 32, 3)).astype(np.float32)
    one = Explainer(model, method=method, batch_size=3).explain_batch(images)
    many = Explainer(model, method=method, batch_size=64).explain_batch(images)
    np.testing.assert_allclose(one.cams, many.cams, rtol=1e-4, atol=1e-6 * one.cams.max())
    alone = Explainer(model, method=method).explain_batch(images[1:2], int(one.class_index[1]))
    np.testing.assert_allclose(alone.cams[0], one.cams[1], rtol=1e-4, atol=1e-6 * one.cams.max())
    ranked = Explainer(model, method=method, top_k=2).explain_batch(images)
    np.testing.assert_allclose(ranked.ranked_cams[:, 0], one.cams, rtol=1e-4, atol=1e-6 * one.cams.max())


def test_select_channels_by_spread():
    activations = np.zeros((3, 3, 4), np.float32)
    activations[..., 1] = np.arange(9).reshape(3, 3)  # std 2.58
    activations[..., 3] = np.arange(9).reshape(3, 3) * 0.1  # std 0.258
    activations[0, 0, 2] = 5.0  # std 1.57
    np.testing.assert_array_equal(select_channels(activations, 2), [1, 2])
    np.testing.assert_array_equal(select_channels(activations, None), [0, 1, 2, 3])


# tf-keras-vis (the oracle) calls the model with a tuple of inputs, which Keras 3 warns about
@pytest.mark.filterwarnings("ignore:The structure of `inputs` doesn't match the expected structure:UserWarning")
@pytest.mark.parametrize("max_channels", [None, 3])
def test_scorecam_equals_tf_keras_vis(max_channels):
    from tf_keras_vis.scorecam import (
        Scorecam,  # in the test extra: an independent implementation
    )
    from tf_keras_vis.utils.model_modifiers import ReplaceToLinear
    from tf_keras_vis.utils.scores import CategoricalScore

    model = build_tiny_model(seed=42)
    images = np.random.default_rng(42).uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)
    classes = [0, 2]
    ours = Explainer(model, layer="last_conv", method="scorecam", max_channels=max_channels).explain_batch(
        images, classes).cams
    # tf-keras-vis on a clone with the softmax replaced by a linear activation, as its docs advise;
    # 'last_conv' is at the input's size, so both upsample nothing and the masks are the same
    scorecam = Scorecam(model, model_modifier=ReplaceToLinear(), clone=True)
    for i, c in enumerate(classes):
        theirs = scorecam(CategoricalScore([c]), images[i : i + 1], penultimate_layer="last_conv",
                          max_N=max_channels or -1, expand_cam=False, normalize_cam=False)
        theirs = np.asarray(theirs)[0]
        assert theirs.max() > 0
        np.testing.assert_allclose(ours[i], theirs, rtol=1e-3, atol=1e-5 * theirs.max())


@pytest.mark.parametrize("method", ["scorecam", "ablationcam", "eigencam"])
def test_nested_model_equals_unnested(method):
    from conftest import nested_and_flat

    nested, flat = nested_and_flat()
    images = np.random.default_rng(44).uniform(0, 255, (2, 24, 24, 3)).astype(np.float32)
    a = Explainer(nested, layer="base/c2", method=method).explain_batch(images, 1)
    b = Explainer(flat, layer="c2", method=method).explain_batch(images, 1)
    assert a.cams.max() > 0
    np.testing.assert_allclose(a.cams, b.cams, rtol=1e-4, atol=1e-6 * a.cams.max())


def test_sanity_check_runs_the_same_method_and_options():
    from gradcam.metrics.sanity import cascading_randomization

    model = build_tiny_model(seed=45)
    images = np.random.default_rng(45).uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)
    explainer = Explainer(model, method="scorecam", max_channels=4)
    made = []

    def factory(m):
        made.append(explainer.with_model(explainer.classifier.__class__(m, "copy", (32, 32))))
        return made[-1]

    original, steps = cascading_randomization(factory, model, images, np.array([0, 1]))
    assert all(e.method == "scorecam" and e.max_channels == 4 for e in made)
    np.testing.assert_allclose(original, explainer.explain_batch(images, [0, 1]).cams, rtol=1e-5)
    assert np.isfinite([s.rank_correlation for s in steps]).all()
