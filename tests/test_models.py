"""Layer search, default layers, nested models, score heads."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import build_tiny_model, keras
from gradcam.cam import Explainer
from gradcam.errors import UsageError
from gradcam.models import (
    ARCHITECTURES, default_layer, describe_layers, find_score_head, imagenet_class_names, load_classifier,
    resolve_layer,
)

EXPECTED_DEFAULTS = {
    "vgg19": "block5_conv4",
    "resnet50": "conv5_block3_out",
    "mobilenetv2": "out_relu",
    "xception": "block14_sepconv2_act",
}


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_every_architecture_builds_and_explains(name):
    classifier = load_classifier(name, weights="random")
    explainer = Explainer(classifier)
    assert "pool" not in type(explainer.target.layer).__name__.lower()
    if name in EXPECTED_DEFAULTS:
        assert explainer.layer_name == EXPECTED_DEFAULTS[name]
    h, w = classifier.input_size
    images = np.random.default_rng(1).uniform(0, 255, (1, h, w, 3)).astype(np.float32)
    assert explainer.head.kind == "pre-softmax"
    from conftest import independent_cams
    from gradcam import cam
    from gradcam.models import preprocess_function

    preprocess = preprocess_function(classifier.preprocess)
    for method in ("gradcam", "counterfactual"):  # random weights: one of the two maps is not all zero
        result = Explainer(classifier, method=method).explain_batch(images)
        assert result.cams.shape == (1, *explainer.target.output_shape[1:3])
        assert 0 <= result.class_index[0] < 1000
        expected, _, _ = independent_cams(classifier.model, explainer.layer_name, classifier.model.layers[-1].name, images,
                                          result.class_index, cam.METHODS[method], preprocess)
        np.testing.assert_allclose(result.cams, expected, rtol=1e-3, atol=1e-4 * max(expected.max(), 1e-30))
        if expected.max() > 0:
            break
    assert expected.max() > 0


def test_imagenet_names_ship_with_the_package():
    names = imagenet_class_names()
    assert len(names) == 1000 and names[281] == "tabby" and names[0] == "tench"


def test_unknown_layer_suggests_close_names(tiny_model):
    with pytest.raises(UsageError, match="last_conv"):
        resolve_layer(tiny_model, "last_cnv")


def test_non_spatial_layer_is_refused_with_the_list(tiny_model):
    with pytest.raises(UsageError, match="convolutional.*conv1, last_conv, pool"):
        resolve_layer(tiny_model, "gap")


def test_default_layer_is_never_pooling(tiny_model):
    assert default_layer(tiny_model).name == "last_conv"


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


def test_list_layers_shows_nesting_and_default():
    nested, _ = nested_and_flat()
    lines = describe_layers(nested)
    assert lines[0].startswith("base/") and "nested model" in lines[0]
    assert any(line.startswith("  base/c2") and "<- default" in line for line in lines)


def test_nested_vgg19_inner_layer_explained():
    k = keras()
    base = k.applications.VGG19(weights=None, include_top=False, input_shape=(64, 64, 3))
    model = k.Sequential([k.Input((64, 64, 3)), base, k.layers.Flatten(), k.layers.Dense(2, activation="softmax")])
    explainer = Explainer(model, layer="block5_conv4")
    assert explainer.layer_name == "vgg19/block5_conv4"
    assert explainer.explain_batch(np.full((2, 64, 64, 3), 90, np.float32)).cams.shape == (2, 4, 4)


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
