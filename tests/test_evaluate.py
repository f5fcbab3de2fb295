"""Faithfulness scores and the sanity check, on a model whose answer is known by hand."""
from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import build_tiny_model, keras, write_photo
from gradcam.cam import Explainer
from gradcam.cli import main
from gradcam.evaluate import _auc, cascading_randomization, faithfulness, pixel_masks, rank_correlation


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def quadrant_model():
    """p(class 1) = sigmoid(2 (m * 2/255 - 1)), m = mean brightness of the top-left 8x8 of a 16x16 image.

    (logits z1 = m * 2/255 - 1 and z0 = -z1, so the softmax is that sigmoid.)
    """
    k = keras()
    inputs = k.Input((16, 16, 3))
    conv = k.layers.Conv2D(1, 1, name="features")
    x = conv(inputs)
    x = k.layers.Cropping2D(((0, 8), (0, 8)))(x)
    x = k.layers.GlobalAveragePooling2D()(x)
    dense = k.layers.Dense(2, activation="softmax")
    model = k.Model(inputs, dense(x))
    conv.set_weights([np.full((1, 1, 3, 1), 1 / 3, np.float32), np.zeros(1, np.float32)])
    dense.set_weights([np.array([[-2 / 255, 2 / 255]], np.float32), np.array([1.0, -1.0], np.float32)])
    return model


P_WHITE, P_HALF, P_BLACK = sigmoid(2.0), 0.5, sigmoid(-2.0)


def test_auc_and_masks_by_hand():
    assert _auc(np.array([1.0, 0.0])) == pytest.approx(0.5)
    assert _auc(np.array([1.0, 1.0, 0.0, 0.0])) == pytest.approx((1 + 0.5 + 0) / 3)
    masks = pixel_masks(np.array([[0.1, 0.9], [0.5, 0.5]]), steps=2)
    np.testing.assert_array_equal(masks, [[[0, 0], [0, 0]], [[0, 1], [1, 0]], [[1, 1], [1, 1]]])


def test_deletion_insertion_and_drop_by_hand():
    model = quadrant_model()
    explainer = Explainer(model, layer="features")
    white = np.full((16, 16, 3), 255, np.float32)
    assert explainer.predict(white[None])[0, 1] == pytest.approx(P_WHITE, rel=1e-5)
    good = np.zeros((16, 16), np.float32)
    good[:8, :8] = 1  # the region the model reads
    bad = np.zeros((16, 16), np.float32)
    bad[8:, 8:] = 1  # a region it ignores

    right = faithfulness(explainer.predict, white, good, 1, steps=4, baseline="black")
    np.testing.assert_allclose(right.deletion_curve, [P_WHITE] + [P_BLACK] * 4, rtol=1e-5)
    np.testing.assert_allclose(right.insertion_curve, [P_BLACK] + [P_WHITE] * 4, rtol=1e-5)
    assert right.average_drop == pytest.approx(0.0, abs=1e-4)

    # Removing the ignored quadrant first, then rows 0-3 (half the top-left), then rows 4-7.
    wrong = faithfulness(explainer.predict, white, bad, 1, steps=4, baseline="black")
    np.testing.assert_allclose(wrong.deletion_curve, [P_WHITE, P_WHITE, P_HALF, P_BLACK, P_BLACK], rtol=1e-5)
    np.testing.assert_allclose(wrong.insertion_curve, [P_BLACK, P_BLACK, P_HALF, P_WHITE, P_WHITE], rtol=1e-5)
    assert wrong.average_drop == pytest.approx((P_WHITE - P_BLACK) / P_WHITE * 100, rel=1e-4)
    assert right.deletion_auc < wrong.deletion_auc and right.insertion_auc > wrong.insertion_auc
    assert right.deletion_auc == pytest.approx(_auc(np.array([P_WHITE] + [P_BLACK] * 4)), rel=1e-5)


def test_blur_baseline_starts_from_the_blurred_image():
    model = quadrant_model()
    explainer = Explainer(model, layer="features")
    image = np.zeros((16, 16, 3), np.float32)
    image[:8, :8] = 255
    scores = faithfulness(explainer.predict, image, np.ones((16, 16), np.float32), 1, steps=2, baseline="blur")
    assert P_BLACK < scores.insertion_curve[0] < P_WHITE  # blurred: the quadrant's light spreads out
    assert scores.insertion_curve[-1] == pytest.approx(P_WHITE, rel=1e-5)


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


def test_cli_evaluate_and_sanity(tmp_path, tiny_model_file, capsys):
    photos = [write_photo(tmp_path / f"p{i}.png", seed=i) for i in range(2)]
    out = tmp_path / "o"
    assert main(["evaluate", "--model", str(tiny_model_file), *map(str, photos), "-o", str(out),
                 "--plot", "--steps", "5"]) == 0
    records = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    for record in records:
        assert 0 <= record["deletion_auc"] <= 1 and 0 <= record["insertion_auc"] <= 1
        assert 0 <= record["average_drop"] <= 100
        assert (out / record["curves"]).is_file()
    assert "faithfulness means: deletion auc" in capsys.readouterr().out
    rc = main(["sanity", "--model", str(tiny_model_file), *map(str, photos), "-o", str(out)])
    printed = capsys.readouterr().out
    report = json.loads((out / "sanity.json").read_text())
    assert [s["layer"] for s in report["steps"]] == ["predictions", "last_conv", "conv1"]
    assert ("PASS" in printed) == report["passed"] and rc == (0 if report["passed"] else 1)
