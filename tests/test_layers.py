"""Layer search: names and paths, nested models, the default layer, --list-layers."""
from __future__ import annotations

import numpy as np
import pytest
from conftest import (
    keras,
    nested_and_flat,
)

from gradcam.cam import Explainer
from gradcam.errors import UsageError
from gradcam.layers import default_layer, describe_layers, resolve_layer


def test_unknown_layer_suggests_close_names(tiny_model):
    with pytest.raises(UsageError, match="last_conv"):
        resolve_layer(tiny_model, "last_cnv")


def test_non_spatial_layer_is_refused_with_the_list(tiny_model):
    with pytest.raises(UsageError, match="convolutional.*conv1, last_conv, pool"):
        resolve_layer(tiny_model, "gap")


def test_default_layer_is_never_pooling(tiny_model):
    assert default_layer(tiny_model).name == "last_conv"


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
