"""Faithfulness scores and the sanity check, on a model whose answer is known by hand."""
from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import batchnorm_model, build_tiny_model, keras, write_photo
from gradcam.cam import Explainer
from gradcam.cli import main
from gradcam.evaluate import (
    _auc, blurred, cascading_randomization, faithfulness, pixel_masks, rank_correlation, reinitialize, zero_pixel,
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

    right = faithfulness(explainer.predict, white, good, 1, steps=4)
    np.testing.assert_allclose(right.deletion_curve, [P_WHITE] + [P_BLACK] * 4, rtol=1e-5)
    np.testing.assert_allclose(right.insertion_curve, [start] + [P_WHITE] * 4, rtol=1e-5)
    assert right.average_drop == pytest.approx(0.0, abs=1e-4)

    # Removing the ignored quadrant first, then rows 0-3 (half the top-left), then rows 4-7.
    wrong = faithfulness(explainer.predict, white, bad, 1, steps=4)
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
    scores = faithfulness(explainer.predict, white, good, 1, steps=2, zero=grey)
    np.testing.assert_allclose(scores.deletion_curve, [P_WHITE, P_HALF, P_HALF], rtol=1e-5)
    # average drop keeps zero + (image - zero) * heatmap: the quadrant stays white, so no drop
    assert scores.average_drop == pytest.approx(0.0, abs=1e-4)
    half = faithfulness(explainer.predict, white, good * 0.5, 1, steps=2, zero=grey)
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
    from gradcam.models import preprocess_function

    preprocess = preprocess_function(family)
    value = zero_pixel(preprocess)
    np.testing.assert_allclose(value, expected, atol=1e-3)
    np.testing.assert_allclose(np.asarray(preprocess(np.tile(value, (1, 2, 2, 1)))), 0.0, atol=1e-3)


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
    np.testing.assert_array_equal(gamma, 1) and np.testing.assert_array_equal(beta, 0)
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
    from gradcam.errors import HeatmapError

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

    # built to fail: a "method" whose map is the brightness of the weight-free first layer
    import gradcam.cam

    monkeypatch.setitem(gradcam.cam.METHODS, "gradcam", lambda a, g: keras().ops.mean(a, axis=-1))
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


def test_cli_evaluate(tmp_path, tiny_model_file, capsys):
    photos = [write_photo(tmp_path / f"p{i}.png", seed=i) for i in range(2)]
    out = tmp_path / "o"
    assert main(["evaluate", "--model", str(tiny_model_file), *map(str, photos), "-o", str(out),
                 "--plot", "--steps", "5"]) == 0
    records = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert len(records) == 2
    for record in records:
        assert 0 <= record["deletion_auc"] <= 1 and 0 <= record["insertion_auc"] <= 1
        assert 0 <= record["average_drop"] <= 100
        assert (out / record["curves"]).stat().st_size > 1000
    means = np.mean([r["deletion_auc"] for r in records])
    assert f"faithfulness means: deletion auc {means:.3f}" in capsys.readouterr().out
