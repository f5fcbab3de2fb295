"""Guided backpropagation through the ReLU family: ReLU6 (a ReLU(6.) layer, Activation('relu6'), a conv's
built-in relu6) gated like ReLU, against a guided ReLU6 written here; a model with nothing to guide refused
in one line; MobileNetV2 and EfficientNet-Lite0 (ReLU6 networks) gated."""
from __future__ import annotations

import numpy as np
import pytest
from conftest import keras

from gradcam.explainers.explainer import Explainer
from gradcam.errors import UsageError
from gradcam.explainers.methods import guided_gradcam_map


def relu6_model(seed: int = 8):
    """conv -> ReLU(6.) -> conv -> Activation('relu6') -> conv(relu6 inside) 'last_conv' -> GAP -> softmax."""
    k = keras()
    k.utils.set_random_seed(seed)
    inputs = k.Input((16, 16, 3))
    x = k.layers.Rescaling(1 / 32.0, offset=-4.0)(inputs)
    x = k.layers.ReLU(6.0, name="relu6_layer")(k.layers.Conv2D(6, 3, padding="same", name="conv1")(x))
    x = k.layers.Activation("relu6", name="relu6_activation")(k.layers.Conv2D(6, 3, padding="same", name="conv2")(x))
    x = k.layers.Conv2D(8, 3, padding="same", activation="relu6", name="last_conv")(x)
    x = k.layers.GlobalAveragePooling2D()(x)
    model = k.Model(inputs, k.layers.Dense(3, activation="softmax", name="predictions")(x))
    for name in ("conv1", "conv2", "last_conv"):  # larger kernels: many inputs of the ReLU6s above 6
        kernel, bias = model.get_layer(name).get_weights()
        model.get_layer(name).set_weights([kernel * 4.0, bias])
    return model


def guided_gradient_by_hand(model, images, classes, pre_activations: list | None = None):
    """d z_c / d x through guided ReLU6s (backward: dy where 0 < x < 6 and dy > 0), from the weights."""
    tf = pytest.importorskip("tensorflow")

    @tf.custom_gradient
    def guided_relu6(x):
        if pre_activations is not None:
            pre_activations.append(x.numpy())

        def grad(dy):
            return tf.where((x > 0) & (x < 6) & (dy > 0), dy, tf.zeros_like(dy))

        return tf.clip_by_value(x, 0.0, 6.0), grad

    def conv(h, name):
        kernel, bias = model.get_layer(name).get_weights()
        return tf.nn.conv2d(h, kernel, 1, "SAME") + bias

    w, b = model.get_layer("predictions").get_weights()
    x = tf.constant(images)
    with tf.GradientTape() as tape:
        tape.watch(x)
        h = x / 32.0 - 4.0
        for name in ("conv1", "conv2", "last_conv"):
            h = guided_relu6(conv(h, name))
        logits = tf.matmul(tf.reduce_mean(h, axis=(1, 2)), w) + b
        score = tf.reduce_sum(tf.gather(logits, classes, axis=1, batch_dims=1))
    return tape.gradient(score, x)


def test_relu6_is_guided_like_relu():
    tf = pytest.importorskip("tensorflow")
    model = relu6_model()
    images = np.random.default_rng(8).uniform(0, 255, (3, 16, 16, 3)).astype(np.float32)
    classes = np.array([0, 1, 2], np.int32)
    seen: list = []
    guided = guided_gradient_by_hand(model, images, tf.constant(classes), seen)
    values = np.concatenate([v.ravel() for v in seen])
    # the three regions of ReLU6 all occur: below 0, inside (0, 6), above the cap
    assert min((values < 0).mean(), ((values > 0) & (values < 6)).mean(), (values > 6).mean()) > 0.05
    cams = Explainer(model, layer="last_conv").explain_batch(images, classes).cams
    expected = guided_gradcam_map(guided, tf.constant(cams)).numpy()
    explainer = Explainer(model, layer="last_conv", method="guided-gradcam")
    result = explainer.explain_batch(images, classes)
    assert expected.max() > 0
    np.testing.assert_allclose(result.cams, expected, rtol=1e-4, atol=1e-5 * expected.max())
    assert gates(explainer) == 3


def gates(explainer) -> int:
    return sum(type(layer).__name__ == "GuidedGate" for layer in explainer._guided.layers)


@pytest.mark.parametrize("activation", ["tanh", "swish", "leaky"])
def test_a_model_without_relus_has_nothing_to_guide(activation):
    """Guided backpropagation is defined for ReLUs: leaky and smooth activations are not gated, and a model
    with none of the ReLU family is refused in one line rather than explained with plain gradients."""
    k = keras()
    inputs = k.Input((16, 16, 3))
    x = k.layers.Conv2D(4, 3, padding="same", activation=None if activation == "leaky" else activation)(inputs)
    if activation == "leaky":
        x = k.layers.ReLU(negative_slope=0.1)(k.layers.LeakyReLU(0.2)(x))
    x = k.layers.GlobalAveragePooling2D()(x)
    model = k.Model(inputs, k.layers.Dense(2, activation="softmax")(x))
    with pytest.raises(UsageError, match="no ReLU or ReLU6 activation, so guided backpropagation has nothing to "
                                         "guide") as caught:
        Explainer(model, method="guided-gradcam")
    assert "\n" not in str(caught.value)


def test_relu6_networks_are_gated():
    """MobileNetV2 and the built-in EfficientNet-Lite0 use ReLU6 layers only: each of them is gated."""
    from gradcam.models.efficientnet_lite import build_model

    k = keras()
    for model in (k.applications.MobileNetV2(weights=None, input_shape=(96, 96, 3)), build_model()):
        relus = sum(isinstance(layer, k.layers.ReLU) for layer in model.layers)
        explainer = Explainer(model, method="guided-gradcam")
        assert relus > 10 and gates(explainer) == relus, (model.name, relus, gates(explainer))
