"""The CAM maths against numbers worked out by hand, and the explainer's guarantees."""
from __future__ import annotations

import numpy as np
import pytest

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


def test_gradcam_by_hand():
    # alpha_0 = (1 + 3 - 2 + 2) / 4 = 1,  alpha_1 = (-1 + 1 + 2 + 2) / 4 = 1
    # map = ReLU(1*A0 + 1*A1) = [[1, 3], [3, 2]]
    np.testing.assert_allclose(run(cam.gradcam_map), [[1, 3], [3, 2]], rtol=1e-6)


def test_gradcam_relu_and_unequal_weights():
    g = G.copy()
    g[..., 1] *= -3  # alpha_1 = -3
    # map = ReLU(A0 - 3 A1) = ReLU([[1, -1], [-9, -2]]) = [[1, 0], [0, 0]]
    np.testing.assert_allclose(run(cam.gradcam_map, g=g), [[1, 0], [0, 0]], rtol=1e-6)


def test_counterfactual_by_hand():
    g = G.copy()
    g[..., 1] *= -3  # alphas with negated gradients: -1 and +3
    # map = ReLU(-A0 + 3 A1) = ReLU([[-1, 1], [9, 2]]) = [[0, 1], [9, 2]]
    np.testing.assert_allclose(run(cam.counterfactual_map, g=g), [[0, 1], [9, 2]], rtol=1e-6)


def test_hirescam_by_hand():
    # sum_k G*A: (1*1 + -1*0, 3*2 + 1*1; -2*0 + 2*3, 2*1 + 2*1) = [[1, 7], [6, 4]]
    np.testing.assert_allclose(run(cam.hirescam_map), [[1, 7], [6, 4]], rtol=1e-6)


def test_layercam_by_hand():
    # sum_k ReLU(G)*A: (1, 6 + 1; 0 + 6, 2 + 2) = [[1, 7], [6, 4]] -- and with the negative kept out:
    g = G.copy()
    g[0, 0, 1, 0] = -3.0  # channel 0 at (0, 1): ReLU(-3) * 2 = 0 instead of 6
    np.testing.assert_allclose(run(cam.layercam_map, g=g), [[1, 1], [6, 4]], rtol=1e-6)


def test_xgradcam_by_hand():
    # channel 0: sum A = 4, w0 = (1*1 + 2*3 + 0*-2 + 1*2)/4 = 9/4
    # channel 1: sum A = 5, w1 = (0*-1 + 1*1 + 3*2 + 1*2)/5 = 9/5
    w0, w1 = 9 / 4, 9 / 5
    expected = np.maximum(w0 * A[0, ..., 0] + w1 * A[0, ..., 1], 0)
    np.testing.assert_allclose(run(cam.xgradcam_map), expected, rtol=1e-6)


def test_gradcam_plus_plus_by_hand():
    a0, a1 = A[0, ..., 0], A[0, ..., 1]
    g0, g1 = G[0, ..., 0], G[0, ..., 1]

    def weight(a, g):
        # alpha = g^2 / (2 g^2 + sum(A) g^3), w = sum alpha * ReLU(g)
        alpha = g**2 / (2 * g**2 + a.sum() * g**3)
        return float((alpha * np.maximum(g, 0)).sum())

    # channel 0 (sum A = 4): g=1 -> 1/6, g=3 -> 9/126, g=-2 -> ReLU kills, g=2 -> 4/40
    w0 = 1 / 6 * 1 + 9 / 126 * 3 + 4 / 40 * 2
    assert weight(a0, g0) == pytest.approx(w0)
    expected = np.maximum(weight(a0, g0) * a0 + weight(a1, g1) * a1, 0)
    np.testing.assert_allclose(run(cam.gradcam_plus_plus_map), expected, rtol=1e-5)


def test_gradcam_plus_plus_zero_denominator_is_zero_not_nan():
    out = run(cam.gradcam_plus_plus_map, a=np.zeros_like(A), g=np.zeros_like(G))
    assert np.all(out == 0)


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
    model = build_tiny_model(seed=5)
    model.trainable = False
    result = Explainer(model).explain_batch(np.full((1, 32, 32, 3), 100, np.float32), 1)
    assert result.cams.shape == (1, 16, 16) or result.cams.shape == (1, 32, 32)
    assert np.isfinite(result.cams).all()


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


@pytest.mark.parametrize("method", sorted(cam.METHODS))
def test_every_method_runs_on_a_model(tiny_model, method):
    result = Explainer(tiny_model, method=method).explain_batch(np.full((2, 32, 32, 3), 50, np.float32))
    assert result.cams.shape == (2, 32, 32)
    assert np.isfinite(result.cams).all() and (result.cams >= 0).all()
