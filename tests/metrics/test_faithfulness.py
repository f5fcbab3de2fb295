"""Deletion, insertion (RISE's protocol) and average drop, on a model whose answer is known by hand."""
from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import (
    keras,
    write_photo,
)

from gradcam.explainers.explainer import Explainer
from gradcam.cli import main
from gradcam.metrics.faithfulness import (
    _auc,
    blurred,
    faithfulness_scores,
    pixel_masks,
    zero_pixel,
)


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


def quadrant_probability(image: np.ndarray) -> float:
    """p(class 1) of quadrant_model, worked out from its formula."""
    return float(sigmoid(2 * (image[:8, :8].mean() * 2 / 255 - 1)))


def test_deletion_insertion_and_drop_by_hand():
    model = quadrant_model()
    explainer = Explainer(model, layer="features")
    white = np.full((16, 16, 3), 255, np.float32)
    assert explainer.predict(white[None])[0, 1] == pytest.approx(P_WHITE, rel=1e-5)
    good = np.zeros((16, 16), np.float32)
    good[:8, :8] = 1  # the region the model reads
    bad = np.zeros((16, 16), np.float32)
    bad[8:, 8:] = 1  # a region it ignores
    start = quadrant_probability(blurred(white))  # insertion starts from the blurred image

    right = faithfulness_scores(explainer.predict, white, good, 1, steps=4)
    np.testing.assert_allclose(right.deletion_curve, [P_WHITE] + [P_BLACK] * 4, rtol=1e-5)
    np.testing.assert_allclose(right.insertion_curve, [start] + [P_WHITE] * 4, rtol=1e-5)
    assert right.average_drop == pytest.approx(0.0, abs=1e-4)

    # Removing the ignored quadrant first, then rows 0-3 (half the top-left), then rows 4-7.
    wrong = faithfulness_scores(explainer.predict, white, bad, 1, steps=4)
    np.testing.assert_allclose(wrong.deletion_curve, [P_WHITE, P_WHITE, P_HALF, P_BLACK, P_BLACK], rtol=1e-5)
    half = blurred(white)
    half[:4, :8] = 255  # rows 0-3 of the quadrant revealed over the blur
    np.testing.assert_allclose(wrong.insertion_curve, [start, start, quadrant_probability(half), P_WHITE, P_WHITE],
                               rtol=1e-5)
    assert wrong.average_drop == pytest.approx((P_WHITE - P_BLACK) / P_WHITE * 100, rel=1e-4)
    assert right.deletion_auc < wrong.deletion_auc and right.insertion_auc > wrong.insertion_auc
    assert right.deletion_auc == pytest.approx(_auc(np.array([P_WHITE] + [P_BLACK] * 4)), rel=1e-5)


def test_deletion_sets_pixels_to_the_model_space_zero():
    model = quadrant_model()
    explainer = Explainer(model, layer="features")
    white = np.full((16, 16, 3), 255, np.float32)
    good = np.zeros((16, 16), np.float32)
    good[:8, :8] = 1
    grey = np.full(3, 127.5, np.float32)  # the model reads 127.5 as m = 127.5: p = sigmoid(0) = 1/2
    scores = faithfulness_scores(explainer.predict, white, good, 1, steps=2, zero=grey)
    np.testing.assert_allclose(scores.deletion_curve, [P_WHITE, P_HALF, P_HALF], rtol=1e-5)
    # average drop keeps zero + (image - zero) * heatmap: the quadrant stays white, so no drop
    assert scores.average_drop == pytest.approx(0.0, abs=1e-4)
    half = faithfulness_scores(explainer.predict, white, good * 0.5, 1, steps=2, zero=grey)
    kept = quadrant_probability(np.full((16, 16, 3), 127.5 + 127.5 * 0.5))  # m = 191.25
    assert half.average_drop == pytest.approx((P_WHITE - kept) / P_WHITE * 100, rel=1e-4)


def rise_gkern(klen: int = 11, nsig: float = 5.0) -> np.ndarray:
    """RISE's 2-D kernel as its authors build it: a Gaussian filter of an impulse on a klen x klen grid."""
    from scipy import ndimage

    impulse = np.zeros((klen, klen))
    impulse[klen // 2, klen // 2] = 1
    return ndimage.gaussian_filter(impulse, nsig)


def test_insertion_start_is_rises_blur_padded_with_model_zero():
    from scipy import signal

    image = np.random.default_rng(4).uniform(0, 255, (40, 33, 3)).astype(np.float32)
    zero = np.array([123.68, 116.779, 103.939], np.float32)
    kernel = rise_gkern()
    assert kernel.shape == (11, 11) and kernel.sum() == pytest.approx(1.0)
    # RISE convolves the model input (image - zero, in model space) with zero padding
    expected = np.stack([signal.convolve2d(image[..., c] - zero[c], kernel, mode="same", boundary="fill")
                         for c in range(3)], axis=-1) + zero
    np.testing.assert_allclose(blurred(image, zero), expected, rtol=1e-5, atol=1e-3)


def test_rise_protocol_with_224_steps_at_224_px():
    heatmap = np.random.default_rng(5).uniform(0, 1, (224, 224)).astype(np.float32)
    masks = pixel_masks(heatmap, 224)
    counts = masks.reshape(225, -1).sum(axis=1)
    np.testing.assert_array_equal(np.diff(counts), 224)  # 224 pixels a step, as RISE


@pytest.mark.parametrize("family, expected", [
    ("vgg19", [123.68, 116.779, 103.939]), ("resnet", [123.68, 116.779, 103.939]),
    ("mobilenet_v2", [127.5, 127.5, 127.5]), ("densenet", [0.485 * 255, 0.456 * 255, 0.406 * 255]),
    ("none", [0.0, 0.0, 0.0])])
def test_zero_pixel_of_each_preprocessing(family, expected):
    from gradcam.models.loading import preprocess_function

    preprocess = preprocess_function(family)
    value = zero_pixel(preprocess)
    np.testing.assert_allclose(value, expected, atol=1e-3)
    np.testing.assert_allclose(np.asarray(preprocess(np.tile(value, (1, 2, 2, 1)))), 0.0, atol=1e-3)


def test_cli_evaluate(tmp_path, brightness_model_file, capsys):
    """On a brightness classifier and bright photos, deletion (to black) loses class 0 about halfway
    (AUC ~ 0.5) and insertion (from the blurred photo) keeps it (AUC ~ 1): swapped scores would fail."""
    from conftest import bright_photo

    photos = [bright_photo(tmp_path / f"p{i}.png", seed=i) for i in range(2)]
    out = tmp_path / "o"
    assert main(["evaluate", "--model", str(brightness_model_file), *map(str, photos), "-o", str(out),
                 "--plot", "--steps", "8"]) == 0
    from gradcam.outputs.manifest import input_records, read_records

    records = input_records(read_records(out / "manifest.jsonl"))
    assert len(records) == 2
    for record in records:
        assert record["class_index"] == 0 and record["probability"] > 0.99
        assert 0.3 < record["deletion_auc"] < 0.7 and record["insertion_auc"] > 0.9
        assert 0 <= record["average_drop"] <= 100
        assert (out / record["curves"]).stat().st_size > 1000
    means = np.mean([r["deletion_auc"] for r in records])
    assert f"score means over the output folder: deletion auc {means:.3f}" in capsys.readouterr().out

