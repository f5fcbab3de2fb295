"""The model-randomisation sanity check: initializers, BatchNormalization, PASS, FAIL, and no verdict on NaN."""
from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import (
    batchnorm_model,
    build_tiny_model,
    keras,
    write_photo,
)

from gradcam.cam import Explainer
from gradcam.cli import main
from gradcam.errors import HeatmapError
from gradcam.sanity import cascading_randomization, rank_correlation, reinitialize


def test_rank_correlation_by_hand():
    assert rank_correlation(np.array([1, 2, 3]), np.array([10, 20, 30])) == pytest.approx(1.0)
    assert rank_correlation(np.array([1, 2, 3]), np.array([3, 2, 1])) == pytest.approx(-1.0)
    assert rank_correlation(np.zeros(3), np.array([1, 2, 3])) == 0.0


def test_cascading_randomization_changes_maps_and_not_the_model():
    model = build_tiny_model(seed=12)
    before = [w.copy() for w in model.get_weights()]
    images = np.random.default_rng(8).uniform(0, 255, (3, 32, 32, 3)).astype(np.float32)
    classes = np.array([0, 1, 2])
    original, steps = cascading_randomization(lambda m: Explainer(m, layer="last_conv"), model, images, classes)
    assert [s.layer for s in steps] == ["predictions", "last_conv", "conv1"]
    assert all(-1 <= s.rank_correlation <= 1 for s in steps)
    assert steps[0].rank_correlation < 0.99  # the score head really was re-initialised
    assert steps[-1].rank_correlation < 0.5
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(original, Explainer(model, layer="last_conv").explain_batch(images, classes).cams)


def test_reinitialize_uses_the_layers_own_initializers_seeded():
    model = batchnorm_model()
    bn = model.get_layer("bn1")
    reinitialize(bn, seed=3)
    gamma, beta, mean, variance = bn.get_weights()
    # batchnorm_model set trained-like values: gamma in 0.5-1.5, beta ~ N(0, 0.1), mean ~ N(20, 30) ...
    np.testing.assert_array_equal(gamma, 1)  # ... which the layer's own initializers put back
    np.testing.assert_array_equal(beta, 0)
    np.testing.assert_array_equal(mean, 0)
    np.testing.assert_array_equal(variance, 1)
    conv = model.get_layer("conv1")
    reinitialize(conv, seed=3)
    kernel, bias = conv.get_weights()
    limit = np.sqrt(6 / (3 * 3 * 3 + 3 * 3 * 6))  # Glorot-uniform, Conv2D's default
    assert np.abs(kernel).max() <= limit and kernel.std() > limit / 4
    np.testing.assert_array_equal(bias, 0)
    reinitialize(conv, seed=3)
    np.testing.assert_array_equal(conv.get_weights()[0], kernel)  # seeded: the same draw again
    reinitialize(conv, seed=4)
    assert not np.array_equal(conv.get_weights()[0], kernel)


def test_batchnorm_model_gives_finite_correlations():
    model = batchnorm_model()
    images = np.random.default_rng(9).uniform(0, 255, (3, 24, 24, 3)).astype(np.float32)
    classes = np.array([0, 1, 2])
    _, steps = cascading_randomization(lambda m: Explainer(m, layer="relu2"), model, images, classes)
    assert [s.layer for s in steps] == ["predictions", "bn2", "conv2", "bn1", "conv1"]
    correlations = [s.rank_correlation for s in steps]
    assert np.isfinite(correlations).all(), correlations


def test_non_finite_map_ends_the_check_without_a_verdict():

    k = keras()
    inputs = k.Input((16, 16, 3))
    conv = k.layers.Conv2D(4, 3, padding="same", activation="relu", name="features",
                           kernel_initializer=k.initializers.Constant(1e37))  # randomised: overflows
    x = k.layers.GlobalAveragePooling2D()(conv(inputs))
    model = k.Model(inputs, k.layers.Dense(2, activation="softmax")(x))
    conv.set_weights([np.full((3, 3, 3, 4), 0.01, np.float32), np.zeros(4, np.float32)])
    images = np.full((2, 16, 16, 3), 200, np.float32)
    with pytest.raises(HeatmapError, match="not finite once the layers down to features"):
        cascading_randomization(lambda m: Explainer(m, layer="features"), model, images, np.array([0, 1]))


def pixel_model_file(folder):
    """A model whose first layer, 'pixels', has no weights: a map of it can ignore every weight."""
    k = keras()
    inputs = k.Input((16, 16, 3))
    x = k.layers.Activation("relu", name="pixels")(inputs)
    x = k.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv")(x)
    x = k.layers.GlobalAveragePooling2D()(x)
    path = folder / "pixels.keras"
    k.Model(inputs, k.layers.Dense(2, activation="softmax")(x)).save(path)
    return path


def test_cli_sanity_pass_fail_and_exit_codes(tmp_path, tiny_model_file, capsys, monkeypatch):
    photos = [write_photo(tmp_path / f"p{i}.png", seed=i) for i in range(3)]
    out = tmp_path / "o"
    # built to pass: Grad-CAM of a real layer depends on the weights
    assert main(["sanity", "--model", str(tiny_model_file), *map(str, photos), "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    report = json.loads((out / "sanity.json").read_text())
    assert report["passed"] is True and "PASS:" in printed and "FAIL" not in printed
    assert [s["layer"] for s in report["steps"]] == ["predictions", "last_conv", "conv1"]
    assert report["steps"][-1]["rank_correlation"] < 0.5
    assert report["first_below"] in [s["layer"] for s in report["steps"]]

    # built to fail: a "method" whose map is the brightness of the weight-free first layer
    from gradcam import methods

    monkeypatch.setitem(methods.WEIGHTED, "gradcam", lambda a, g: a)  # the sum of the pixels: no weight
    model = pixel_model_file(tmp_path)
    assert main(["sanity", "--model", str(model), "--layer", "pixels", *map(str, photos), "-o", str(out)]) == 1
    printed = capsys.readouterr().out
    report = json.loads((out / "sanity.json").read_text())
    assert report["passed"] is False and "FAIL:" in printed and "PASS" not in printed
    assert all(s["rank_correlation"] == pytest.approx(1.0) for s in report["steps"])


def test_cli_sanity_non_finite_is_an_error(tmp_path, capsys):
    k = keras()
    inputs = k.Input((16, 16, 3))
    conv = k.layers.Conv2D(4, 3, padding="same", activation="relu", name="features",
                           kernel_initializer=k.initializers.Constant(1e37))
    model = k.Model(inputs, k.layers.Dense(2, activation="softmax")(k.layers.GlobalAveragePooling2D()(conv(inputs))))
    conv.set_weights([np.full((3, 3, 3, 4), 0.01, np.float32), np.zeros(4, np.float32)])
    path = tmp_path / "overflow.keras"
    model.save(path)
    photo = write_photo(tmp_path / "p.png")
    assert main(["sanity", "--model", str(path), str(photo), "-o", str(tmp_path / "o")]) == 1
    captured = capsys.readouterr()
    assert "error: sanity check stopped: the heatmap is not finite" in captured.err
    assert "PASS" not in captured.out and "FAIL" not in captured.out and "Traceback" not in captured.err


def test_rank_correlation_of_a_constant_map_is_zero_and_constant_is_detected():
    from gradcam.sanity import is_constant

    assert is_constant(np.zeros((2, 2))) and is_constant(np.full((3, 3), 0.7))
    assert not is_constant(np.array([[0.0, 1e-6]]))


def test_constant_original_maps_are_left_out_and_alone_give_no_verdict():
    """An image whose original map is constant (correlation undefined) must not count as 'changed':
    today's verdict would be PASS from correlations set to 0."""
    from gradcam.sanity import SanityReport

    model = build_tiny_model(seed=12)
    images = np.random.default_rng(8).uniform(0, 255, (3, 32, 32, 3)).astype(np.float32)
    images[1] = 0.0  # the tiny model's ReLU convolutions give a constant map for a black image ...
    classes = np.array([0, 1, 2])
    factory = lambda m: Explainer(m, layer="last_conv")  # noqa: E731
    original, steps = cascading_randomization(factory, model, images, classes)
    constant = [i for i in range(3) if np.ptp(original[i]) == 0]
    assert constant == [1]  # ... as checked here
    for step in steps:  # only images 0 and 2 are compared
        assert len(step.per_image) == 2
    # all images constant: no verdict, whatever the steps say
    black = np.zeros((2, 32, 32, 3), np.float32)
    original, steps = cascading_randomization(factory, model, black, np.array([0, 1]))
    report = SanityReport("last_conv", "gradcam", ["a", "b"], [0, 1], steps, [], ["a", "b"])
    assert report.passed is None and report.first_below is None
    assert any(line.startswith("NO VERDICT") for line in report.lines())
    assert report.as_dict()["passed"] is None


def test_report_names_the_first_step_below_the_threshold_and_counts_constant_maps():
    from gradcam.sanity import SanityReport, SanityStep

    steps = [SanityStep("head", 0.9, [0.9]), SanityStep("conv3", 0.4, [0.4], 1), SanityStep("conv2", 0.6, [0.6]),
             SanityStep("conv1", 0.1, [0.1], 2)]
    report = SanityReport("conv3", "gradcam", ["x"], [0], steps, [])
    assert report.passed is True and report.first_below.layer == "conv3"
    text = "\n".join(report.lines())
    assert "first below 0.5 once the layers down to conv3" in text
    assert "(2 map(s) became constant)" in text and "(1 map(s) became constant)" in text
    assert report.as_dict()["first_below"] == "conv3"


def test_cli_sanity_exits_1_when_an_input_failed(tmp_path, tiny_model_file, capsys):
    photos = [write_photo(tmp_path / f"p{i}.png", seed=i) for i in range(2)]
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    code = main(["sanity", "--model", str(tiny_model_file), *map(str, photos), str(bad), "-o", str(tmp_path / "o")])
    captured = capsys.readouterr()
    assert "PASS:" in captured.out and f"failed: {bad}" in captured.err
    assert code == 1
