"""Layer search: names and paths, nested models, the default layer, --list-layers."""
from __future__ import annotations

import numpy as np
import pytest
from conftest import (
    keras,
    nested_and_flat,
)

from gradcam.explainers.explainer import Explainer
from gradcam.errors import UsageError
from gradcam.models.layers import default_layer, describe_layers, resolve_layer


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


def test_token_grid_detection():
    from gradcam.models.layers import token_grid

    assert token_grid(197) == (1, 14) and token_grid(198) == (2, 14) and token_grid(196) == (0, 14)
    assert token_grid(50) == (1, 7) and token_grid(37, extra=1) == (1, 6)
    assert token_grid(37, extra=2) is None and token_grid(1) is None and token_grid(3) is None


def test_vit_layers_listed_with_tokens_and_default():
    from conftest import build_vit

    model = build_vit()
    lines = describe_layers(model)
    default = [line for line in lines if "<- default" in line]
    assert len(default) == 1 and default[0].startswith("block2_norm1") and "input of the last attention" in default[0]
    assert any(line.startswith("tokens") and "1 extra + 6x6 grid" in line for line in lines)
    assert not any(line.startswith("class_token") for line in lines)  # 1 token: no grid
    assert default_layer(model).path == "block2_norm1"
    with pytest.raises(UsageError, match="token layer"):
        resolve_layer(model, "class_token")


def small_unet(classes: int = 3, separate_activation: bool = True, upsample_logits: bool = False):
    """A U-Net-like model: conv, pool, conv, upsample, concatenate, conv 'decoder_conv' + ReLU 'decoder_relu',
    then the head: a 1x1 conv 'logits' (softmax inside it, or a separate Activation 'seg'), optionally at half
    size and upsampled."""
    k = keras()
    inputs = k.Input((32, 32, 3))
    skip = k.layers.Conv2D(8, 3, padding="same", activation="relu", name="encoder_conv")(inputs)
    x = k.layers.MaxPooling2D(name="pool")(skip)
    x = k.layers.Conv2D(16, 3, padding="same", activation="relu", name="bottleneck")(x)
    x = k.layers.UpSampling2D(name="up")(x)
    x = k.layers.Concatenate(name="concat")([x, skip])
    x = k.layers.Conv2D(8, 3, padding="same", name="decoder_conv")(x)
    x = k.layers.ReLU(name="decoder_relu")(x)
    if upsample_logits:
        x = k.layers.AveragePooling2D(2, name="down")(x)
    if separate_activation:
        x = k.layers.Conv2D(classes, 1, name="logits")(x)
        if upsample_logits:
            x = k.layers.UpSampling2D(interpolation="bilinear", name="upsample_logits")(x)
        x = k.layers.Activation("softmax", name="seg")(x)
    else:
        x = k.layers.Conv2D(classes, 1, activation="softmax", name="seg")(x)
    return k.Model(inputs, x, name="unet")


@pytest.mark.parametrize("separate, upsample", [(True, False), (False, False), (True, True)])
def test_segmentation_default_layer_is_the_last_feature_map_before_the_head(separate, upsample):
    """Never the output layer nor the head's 1x1 conv (nor a resize between them): the decoder's last map."""
    model = small_unet(separate_activation=separate, upsample_logits=upsample)
    expected = "decoder_relu"  # with the pooling before a coarse head: pooling is never the default either
    assert default_layer(model).path == expected
    marked = [line for line in describe_layers(model) if "<- default" in line]
    assert len(marked) == 1 and marked[0].startswith(expected)
    explainer = Explainer(model)
    assert explainer.layer_name == expected and explainer.segmentation
    nested = keras().Sequential([keras().Input((32, 32, 3)), model])
    assert default_layer(nested).path == f"unet/{expected}"


def test_a_model_that_is_only_a_head_has_no_default_layer():
    k = keras()
    inputs = k.Input((16, 16, 3))
    model = k.Model(inputs, k.layers.Conv2D(2, 1, activation="softmax", name="seg")(inputs))
    with pytest.raises(UsageError, match="before its output head"):
        default_layer(model)
    assert resolve_layer(model, "seg").name == "seg"  # still explainable by name
