"""Loading classifiers: every keras.applications architecture, with its default layer and preprocessing."""
from __future__ import annotations

import numpy as np
import pytest
from conftest import (
    independent_cams,
)

from gradcam.explainers.explainer import Explainer
from gradcam.models.loading import load_classifier
from gradcam.names import ARCHITECTURES

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
    from reference import reference
    from gradcam.models.loading import preprocess_function

    preprocess = preprocess_function(classifier.preprocess)
    for method in ("gradcam", "counterfactual"):  # random weights: one of the two maps is not all zero
        result = Explainer(classifier, method=method).explain_batch(images)
        assert result.cams.shape == (1, *explainer.target.output_shape[1:3])
        assert 0 <= result.class_index[0] < 1000
        expected, _, _ = independent_cams(classifier.model, explainer.layer_name, classifier.model.layers[-1].name, images,
                                          result.class_index, reference(method), preprocess)
        np.testing.assert_allclose(result.cams, expected, rtol=1e-3, atol=1e-4 * max(expected.max(), 1e-30))
        if expected.max() > 0:
            break
    assert expected.max() > 0
