"""The CAM maths against numbers worked out by hand, and the explainer's guarantees."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import build_tiny_model, keras
from gradcam import cam
from gradcam.cam import Explainer
from gradcam.errors import UsageError

# One image, a 2x2 map, 2 channels.  A[i, j, k] and G[i, j, k]:
A = np.array([[[1.0, 0.0], [2.0, 1.0]],
              [[0.0, 3.0], [1.0, 1.0]]], dtype=np.float32)[None]
G = np.array([[[1.0, -1.0], [3.0, 1.0]],
              [[-2.0, 2.0], [2.0, 2.0]]], dtype=np.float32)[None]
# Channel 0: A = [[1, 2], [0, 1]], G = [[1, 3], [-2, 2]];  channel 1: A = [[0, 1], [3, 1]], G = [[-1, 1], [2, 2]].


def run(method, a=A, g=G):
    tf = pytest.importorskip("tensorflow")
    return method(tf.constant(a), tf.constant(g)).numpy()[0]


# Realistic scales: dy/dA is about 1 for a dense head on a small map, and about 1e-4 behind a
# global-average-pooling head (W / (h w), e.g. 0.02 / 196). Linear methods scale with it.
SCALES = [1.0, 1e-4]


@pytest.mark.parametrize("s", SCALES)
def test_gradcam_by_hand(s):
    # alpha_0 = (1 + 3 - 2 + 2) / 4 = 1,  alpha_1 = (-1 + 1 + 2 + 2) / 4 = 1
    # map = ReLU(1*A0 + 1*A1) = [[1, 3], [3, 2]]
    np.testing.assert_allclose(run(cam.gradcam_map, g=s * G), s * np.array([[1, 3], [3, 2]]), rtol=1e-6)


@pytest.mark.parametrize("s", SCALES)
def test_gradcam_relu_and_unequal_weights(s):
    g = G.copy()
    g[..., 1] *= -3  # alpha_1 = -3
    # map = ReLU(A0 - 3 A1) = ReLU([[1, -1], [-9, -2]]) = [[1, 0], [0, 0]]
    np.testing.assert_allclose(run(cam.gradcam_map, g=s * g), s * np.array([[1, 0], [0, 0]]), rtol=1e-6)


@pytest.mark.parametrize("s", SCALES)
def test_counterfactual_by_hand(s):
    g = G.copy()
    g[..., 1] *= -3  # alphas with negated gradients: -1 and +3
    # map = ReLU(-A0 + 3 A1) = ReLU([[-1, 1], [9, 2]]) = [[0, 1], [9, 2]]
    np.testing.assert_allclose(run(cam.counterfactual_map, g=s * g), s * np.array([[0, 1], [9, 2]]), rtol=1e-6)


@pytest.mark.parametrize("s", SCALES)
def test_hirescam_by_hand(s):
    # sum_k G*A: (1*1 + -1*0, 3*2 + 1*1; -2*0 + 2*3, 2*1 + 2*1) = [[1, 7], [6, 4]]
    g = G.copy()
    g[0, 0, 0, 1] = -9.0  # channel 1 at (0, 0) has A = 0: still 1; and a negative sum is cut:
    g[0, 1, 1] = [-3.0, -3.0]  # (1, 1): -3*1 - 3*1 = -6 -> ReLU -> 0
    np.testing.assert_allclose(run(cam.hirescam_map, g=s * g), s * np.array([[1, 7], [6, 0]]), rtol=1e-6)


@pytest.mark.parametrize("s", SCALES)
def test_layercam_by_hand(s):
    # sum_k ReLU(G)*A: (1, 6 + 1; 0 + 6, 2 + 2) = [[1, 7], [6, 4]] -- and with the negative kept out:
    g = G.copy()
    g[0, 0, 1, 0] = -3.0  # channel 0 at (0, 1): ReLU(-3) * 2 = 0 instead of 6
    np.testing.assert_allclose(run(cam.layercam_map, g=s * g), s * np.array([[1, 1], [6, 4]]), rtol=1e-6)


@pytest.mark.parametrize("s", SCALES)
def test_xgradcam_by_hand(s):
    # channel 0: sum A = 4, w0 = (1*1 + 2*3 + 0*-2 + 1*2)/4 = 9/4
    # channel 1: sum A = 5, w1 = (0*-1 + 1*1 + 3*2 + 1*2)/5 = 9/5
    expected = [[9 / 4 * 1 + 9 / 5 * 0, 9 / 4 * 2 + 9 / 5 * 1], [9 / 4 * 0 + 9 / 5 * 3, 9 / 4 * 1 + 9 / 5 * 1]]
    np.testing.assert_allclose(run(cam.xgradcam_map, g=s * G), s * np.array(expected), rtol=1e-6)


@pytest.mark.parametrize("s", SCALES)
def test_gradcam_plus_plus_by_hand(s):
    # alpha = g^2 / (2 g^2 + sum(A) g^3) = 1 / (2 + sum(A) g), w = sum alpha * ReLU(g)
    # channel 0 (sum A = 4), g = s * [1, 3, -2, 2]: ReLU drops -2
    w0 = s / (2 + 4 * s) + 3 * s / (2 + 12 * s) + 2 * s / (2 + 8 * s)
    # channel 1 (sum A = 5), g = s * [-1, 1, 2, 2]
    w1 = s / (2 + 5 * s) + 2 * (2 * s / (2 + 10 * s))
    if s == 1.0:
        assert (w0, w1) == pytest.approx((1 / 6 + 3 / 14 + 2 / 10, 1 / 7 + 4 / 12))
    expected = np.maximum(w0 * A[0, ..., 0] + w1 * A[0, ..., 1], 0)
    np.testing.assert_allclose(run(cam.gradcam_plus_plus_map, g=s * G), expected, rtol=1e-5)


def test_gradcam_plus_plus_zero_denominator_is_zero_not_nan():
    out = run(cam.gradcam_plus_plus_map, a=np.zeros_like(A), g=np.zeros_like(G))
    assert np.all(out == 0)


def paper_gradcam_plus_plus(a: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Grad-CAM++ exactly as the paper writes it, in float64: (h, w, K), (h, w, K) -> (h, w)."""
    a, g = a.astype(np.float64), g.astype(np.float64)
    denominator = 2 * g**2 + a.sum(axis=(0, 1)) * g**3
    alpha = np.divide(g**2, denominator, out=np.zeros_like(g), where=denominator != 0)
    weights = (alpha * np.maximum(g, 0)).sum(axis=(0, 1))
    return np.maximum((a * weights).sum(axis=-1), 0)


@settings(max_examples=60, deadline=None)
@given(log_scale=st.floats(-6, 3), seed=st.integers(0, 10_000), h=st.integers(1, 7), channels=st.integers(1, 12))
def test_gradcam_plus_plus_equals_the_paper_at_every_scale(log_scale, seed, h, channels):
    rng = np.random.default_rng(seed)
    a = np.maximum(rng.normal(0.5, 1.0, (1, h, h, channels)), 0).astype(np.float32)  # post-ReLU activations
    g = (10.0**log_scale * rng.normal(0, 1, (1, h, h, channels))).astype(np.float32)
    expected = paper_gradcam_plus_plus(a[0], g[0])
    out = run(cam.gradcam_plus_plus_map, a=a, g=g)
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-4 * expected.max() + 1e-30)


def test_gradcam_plus_plus_keeps_small_global_average_pooling_gradients():
    # Behind a GAP head over a 14x14 map, g = W / 196: W = 0.02 gives g ~ 1e-4 at every position.
    a = np.random.default_rng(4).uniform(0, 2, (1, 14, 14, 2)).astype(np.float32)
    g = np.empty_like(a)
    g[..., 0], g[..., 1] = 0.02 / 196, 0.5 / 196
    out = run(cam.gradcam_plus_plus_map, a=a, g=g)
    expected = paper_gradcam_plus_plus(a[0], g[0])
    assert expected.max() > 0
    np.testing.assert_allclose(out, expected, rtol=1e-4)


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


def test_model_and_input_are_not_mutated():
    model = build_tiny_model(seed=3)
    images = np.random.default_rng(1).uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)
    before_images = images.copy()
    before_weights = [w.copy() for w in model.get_weights()]
    before_output = model.predict(images, verbose=0)
    layer_count = len(model.layers)
    Explainer(model, method="gradcam").explain_batch(images)
    assert len(model.layers) == layer_count
    assert model.get_layer("predictions").activation.__name__ == "softmax"
    for before, after in zip(before_weights, model.get_weights()):
        np.testing.assert_array_equal(before, after)
    after_output = model.predict(images, verbose=0)
    np.testing.assert_allclose(after_output.sum(axis=1), 1.0, rtol=1e-5)  # still probabilities
    np.testing.assert_array_equal(before_output, after_output)
    np.testing.assert_array_equal(images, before_images)


def saturated_model():
    """A model whose softmax saturates: probability 1.0 exactly in float32."""
    model = build_tiny_model(seed=4)
    dense = model.get_layer("predictions")
    kernel, bias = dense.get_weights()
    dense.set_weights([kernel * 0 + 50.0 * np.array([1.0, -1.0, -1.0], np.float32), bias + np.array([100, 0, 0], np.float32)])
    return model


def test_pre_softmax_score_gives_map_where_softmax_saturates():
    tf = pytest.importorskip("tensorflow")
    model = saturated_model()
    images = np.random.default_rng(2).uniform(0, 255, (1, 32, 32, 3)).astype(np.float32)
    probabilities = model.predict(images, verbose=0)
    assert probabilities[0, 0] == 1.0  # saturated
    # the softmax output's gradient vanishes: a map from it would be all zeros
    probe = keras().Model(model.inputs, [model.get_layer("last_conv").output, model.output])
    x = tf.constant(images)
    with tf.GradientTape() as tape:
        a, p = probe(x)
        score = p[:, 0]
    assert float(tf.reduce_max(tf.abs(tape.gradient(score, a)))) == 0.0
    result = Explainer(model, layer="last_conv").explain_batch(images)
    assert result.class_index[0] == 0
    assert result.cams[0].max() > 0


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


@pytest.mark.parametrize("method", sorted(set(cam.METHODS) - {"guided-gradcam"}))
def test_every_method_on_a_model_equals_its_formula(method):
    """The explainer's wiring (pre-softmax score, layer, batch) for each method, against the method's
    function fed by an independent probe; a BatchNormalization model with a saturated softmax."""
    from conftest import batchnorm_model, independent_cams

    model = batchnorm_model(seed=7)
    dense = model.get_layer("predictions")
    dense.set_weights([w * 30 for w in dense.get_weights()])  # saturate the softmax
    images = np.random.default_rng(7).uniform(0, 255, (3, 24, 24, 3)).astype(np.float32)
    classes = np.array([0, 1, 2])
    expected, _, gradients = independent_cams(model, "relu2", "predictions", images, classes, cam.METHODS[method])
    result = Explainer(model, layer="relu2", method=method).explain_batch(images, classes)
    assert result.cams.shape == (3, 24, 24)
    assert expected.max() > 0 and np.abs(gradients).max() > 0
    np.testing.assert_allclose(result.cams, expected, rtol=1e-4, atol=1e-5 * expected.max())
