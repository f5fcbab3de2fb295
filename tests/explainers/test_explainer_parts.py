"""The Explainer after its split into collaborators (step, targets, augment, perturbed, costs, signed): the
public surface it had as one class, its cost counts by hand, options changed after construction, and
compiled steps built once."""
from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import build_tiny_model

from gradcam.explainers.explainer import Explainer

#: the public methods and properties of the Explainer before the split (gradcam 0.4)
METHODS = ("options", "with_model", "layer_name", "class_names", "class_name", "predict", "check_class_index",
           "explain_batch", "signed_note", "features", "masked_probabilities", "ablated_scores",
           "seconds_per_image", "deletion_baseline", "map_size", "passes_per_image")
#: ... and its public attributes
ATTRIBUTES = ("classifier", "method", "eigen_smooth", "aug_smooth", "max_channels", "batch_size", "on_progress",
              "input_size", "volumetric", "channels", "ndim", "output", "model", "target", "extra_tokens", "head",
              "segmentation", "output_size", "regression", "num_classes", "perturbation", "negative_activations",
              "top_k")


@pytest.fixture(scope="module")
def model():
    return build_tiny_model(classes=4)  # last_conv: 8 channels


def test_the_public_surface_is_unchanged(model):
    explainer = Explainer(model, layer="last_conv")
    assert [name for name in METHODS if not hasattr(Explainer, name)] == []
    assert [name for name in ATTRIBUTES if name not in vars(explainer)] == []


@pytest.mark.parametrize("method, options, passes", [
    ("gradcam", {}, 1), ("gradcam", {"aug_smooth": True}, 6), ("scorecam", {}, 8 + 1),
    ("ablationcam", {"max_channels": 3}, 3 + 1), ("scorecam", {"max_channels": 20}, 8 + 1),
    ("scorecam", {"aug_smooth": True, "max_channels": 2}, (2 + 1) * 6),
])
def test_passes_per_image_by_hand(model, method, options, passes):
    assert Explainer(model, layer="last_conv", method=method, **options).passes_per_image() == passes


def test_max_channels_changed_after_construction_counts(model):
    """benchmarks/methods.py sets max_channels on a built explainer: the costs and the maps follow it."""
    images = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)
    explainer = Explainer(model, layer="last_conv", method="scorecam")
    explainer.max_channels = 2
    assert explainer.passes_per_image() == 3 and explainer.options()["max_channels"] == 2
    fresh = Explainer(model, layer="last_conv", method="scorecam", max_channels=2)
    np.testing.assert_array_equal(explainer.explain_batch(images).cams, fresh.explain_batch(images).cams)


def test_seconds_per_image_is_a_positive_time(model):
    seconds = Explainer(model, layer="last_conv", method="ablationcam", batch_size=2).seconds_per_image()
    assert math.isfinite(seconds) and seconds > 0


@pytest.mark.parametrize("method", ["scorecam", "ablationcam"])
def test_the_perturbation_steps_are_compiled_once(model, method):
    images = np.random.default_rng(1).uniform(0, 255, (3, 32, 32, 3)).astype(np.float32)
    explainer = Explainer(model, layer="last_conv", method=method, batch_size=4)
    explainer.explain_batch(images)
    step = explainer._scorecam_step if method == "scorecam" else explainer._ablation_step
    explainer.explain_batch(images[:1], 2)
    assert (explainer._scorecam_step if method == "scorecam" else explainer._ablation_step) is step
    assert step.experimental_get_tracing_count() == 1
    other = Explainer(model, layer="last_conv", method=method, batch_size=4)
    assert other._scorecam_step is None and other._ablation_step is None  # each explainer its own
