"""Graph surgery: pre-softmax score heads, nested models, guided backpropagation; the caller's model untouched."""
from __future__ import annotations

import numpy as np
import pytest
from conftest import build_tiny_model, keras, nested_and_flat

from gradcam.explainers.explainer import Explainer
from gradcam.models.graph import find_score_head
from gradcam.models.guided import guided_gate
from gradcam.explainers.methods import guided_gradcam_map


def test_guided_gate_after_relu_is_the_guided_relu_by_hand():
    tf = pytest.importorskip("tensorflow")
    x = tf.constant([-1.0, 2.0, 3.0, 0.5])
    upstream = tf.constant([5.0, -4.0, 2.0, 1.0])
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = guided_gate(tf.nn.relu(x))
    # forward is ReLU; backward passes only where x > 0 and the upstream gradient > 0
    np.testing.assert_allclose(y.numpy(), [0, 2, 3, 0.5])
    np.testing.assert_allclose(tape.gradient(y, x, output_gradients=upstream).numpy(), [0, 0, 2, 1])


def _independent_guided_logit_gradient(model, images, class_index):
    """d z_c / d x through guided ReLUs, written with raw TensorFlow ops from the tiny model's weights."""
    tf = pytest.importorskip("tensorflow")

    @tf.custom_gradient
    def my_guided_relu(x):
        def grad(dy):
            return tf.where((x > 0) & (dy > 0), dy, tf.zeros_like(dy))
        return tf.maximum(x, 0.0), grad

    k1, b1 = model.get_layer("conv1").get_weights()
    k2, b2 = model.get_layer("last_conv").get_weights()
    w, b = model.get_layer("predictions").get_weights()
    x = tf.constant(images)
    with tf.GradientTape() as tape:
        tape.watch(x)
        h = my_guided_relu(tf.nn.conv2d(x, k1, 1, "SAME") + b1)
        h = my_guided_relu(tf.nn.conv2d(h, k2, 1, "SAME") + b2)
        h = tf.reduce_mean(tf.nn.max_pool2d(h, 2, 2, "VALID"), axis=(1, 2))
        logits = tf.matmul(h, w) + b
        score = tf.reduce_sum(tf.gather(logits, class_index, axis=1, batch_dims=1))
    return tape.gradient(score, x)


def test_guided_gradient_is_of_the_logit_not_the_softmax():
    tf = pytest.importorskip("tensorflow")
    model = build_tiny_model(seed=21)
    dense = model.get_layer("predictions")
    kernel, bias = dense.get_weights()
    dense.set_weights([kernel * 40.0, bias])  # confident: the softmax saturates
    images = np.random.default_rng(21).uniform(0, 255, (3, 32, 32, 3)).astype(np.float32)
    probabilities = model.predict(images, verbose=0)
    assert probabilities.max(axis=1).min() > 0.999
    classes = probabilities.argmax(axis=1).astype(np.int32)
    guided = _independent_guided_logit_gradient(model, images, tf.constant(classes))
    cams = Explainer(model, layer="last_conv").explain_batch(images, classes).cams
    expected = guided_gradcam_map(guided, tf.constant(cams)).numpy()
    result = Explainer(model, layer="last_conv", method="guided-gradcam").explain_batch(images, classes)
    assert expected.max() > 0
    np.testing.assert_allclose(result.cams, expected, rtol=1e-4, atol=1e-5 * expected.max())


def test_nested_model_equals_unnested():
    nested, flat = nested_and_flat()
    images = np.random.default_rng(0).uniform(0, 255, (3, 24, 24, 3)).astype(np.float32)
    by_path = Explainer(nested, layer="base/c2").explain_batch(images)
    by_name = Explainer(nested, layer="c2").explain_batch(images)
    reference = Explainer(flat, layer="c2").explain_batch(images)
    assert by_path.cams.max() > 0
    np.testing.assert_allclose(by_path.cams, reference.cams, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(by_name.cams, reference.cams, rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(by_path.class_index, reference.class_index)
    assert Explainer(nested).layer_name == "base/c2"
    assert nested.get_layer("head").activation.__name__ == "softmax"


@pytest.mark.parametrize(
    "last, kind",
    [("softmax", "pre-softmax"), ("sigmoid", "pre-sigmoid"), ("linear", "logits")],
)
def test_score_head_kinds(last, kind):
    assert find_score_head(build_tiny_model(activation=last)).kind == kind


def test_separate_softmax_layer_uses_its_input():
    k = keras()
    inputs = k.Input((16, 16, 3))
    x = k.layers.Conv2D(4, 3, name="conv")(inputs)
    x = k.layers.GlobalAveragePooling2D()(x)
    logits = k.layers.Dense(3, name="logits")(x)
    model = k.Model(inputs, k.layers.Softmax()(logits))
    images = np.random.default_rng(4).uniform(0, 255, (2, 16, 16, 3)).astype(np.float32)
    separate = Explainer(model, layer="conv").explain_batch(images, 2)
    plain = Explainer(k.Model(inputs, logits), layer="conv").explain_batch(images, 2)
    np.testing.assert_allclose(separate.cams, plain.cams, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(separate.probabilities, model.predict(images, verbose=0), rtol=1e-5)


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


@pytest.mark.parametrize("method", ["gradcam", "guided-gradcam", "ablationcam"])
def test_an_explainer_follows_later_changes_of_the_models_weights(method):
    """Fine-tuning in a notebook after an explainer was built: the explainer must explain the model as
    it is now (its score head and guided ReLUs share the caller's variables), equal to a fresh one's."""
    from conftest import independent_cams

    from gradcam.explainers.methods import gradcam_map

    model = build_tiny_model(seed=5)
    images = np.random.default_rng(5).uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)
    explainer = Explainer(model, layer="last_conv", method=method, batch_size=4)
    before = explainer.explain_batch(images, 1)
    for layer, source in zip(model.layers, build_tiny_model(seed=6).layers):  # "fine-tuned" weights
        for variable, value in zip(layer.weights, source.get_weights()):
            variable.assign(value * 3.0)
    after = explainer.explain_batch(images, 1)
    fresh = Explainer(model, layer="last_conv", method=method, batch_size=4).explain_batch(images, 1)
    np.testing.assert_allclose(after.probabilities, model.predict(images, verbose=0), rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(after.cams, fresh.cams, rtol=1e-4, atol=1e-6 * fresh.cams.max())
    assert not np.allclose(before.probabilities, after.probabilities, rtol=1e-3)
    if method == "gradcam":  # against an independent computation as well
        expected, _, _ = independent_cams(model, "last_conv", "predictions", images, [1, 1], gradcam_map)
        np.testing.assert_allclose(after.cams, expected, rtol=1e-4, atol=1e-6 * expected.max())
