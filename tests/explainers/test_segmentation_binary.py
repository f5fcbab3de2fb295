"""Sigmoid segmentation heads: one channel (the binary U-Net head: class 1 the foreground, logit > 0, class 0
the background, scored by the negated logit) and several (multi-label: each channel's pixels of p > 0.5),
against regions, probabilities and maps computed here from the model's weights."""
from __future__ import annotations

import numpy as np
import pytest
from conftest import keras
from test_segmentation import SIZE, SQUARE, scene_on_disk, square_scenes

from gradcam.explainers.explainer import Explainer
from gradcam.models.graph import ScoreHead, region_scores_and_probabilities


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


@pytest.fixture(scope="module")
def binary_segmenter():
    """Conv layers -> one sigmoid channel marking the bright square (trained here, seeded)."""
    k = keras()
    k.utils.set_random_seed(12)
    rng = np.random.default_rng(12)
    images, masks, _ = square_scenes(600, rng)
    inputs = k.Input((SIZE, SIZE, 3))
    x = k.layers.Rescaling(1 / 255.0)(inputs)
    x = k.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv1")(x)
    x = k.layers.Conv2D(8, 3, padding="same", activation="relu", name="features")(x)
    outputs = k.layers.Conv2D(1, 1, activation="sigmoid", name="segments")(x)
    model = k.Model(inputs, outputs, name="binary_segmenter")
    model.compile(optimizer=k.optimizers.Adam(1e-2), loss="binary_crossentropy")
    model.fit(images, masks[..., None].astype(np.float32), epochs=6, batch_size=32, verbose=0)
    test_images, test_masks, centres = square_scenes(12, rng)
    predicted = model.predict(test_images, verbose=0)[..., 0] > 0.5
    assert (predicted == test_masks).mean() > 0.97, "the segmenter did not learn"
    return model, test_images, test_masks, centres


def logits_by_hand(model, images):
    """(features (B, h, w, 8), logits (B, h, w)) with the 1x1 head formed here from its weights."""
    tf = pytest.importorskip("tensorflow")
    probe = keras().Model(model.inputs, model.get_layer("features").output)
    kernel, bias = model.get_layer("segments").get_weights()
    features = probe(tf.constant(images), training=False)
    return features, tf.einsum("bhwk,k->bhw", features, kernel[0, 0, :, 0]) + bias[0]


def region_cam_by_hand(model, images, region, sign):
    """Grad-CAM at 'features' of sign * (sum of the logit over ``region`` (B, h, w)), by hand."""
    tf = pytest.importorskip("tensorflow")
    probe = keras().Model(model.inputs, model.get_layer("features").output)
    kernel, bias = model.get_layer("segments").get_weights()
    with tf.GradientTape() as tape:
        activations = probe(tf.constant(images), training=False)
        logits = tf.einsum("bhwk,k->bhw", activations, kernel[0, 0, :, 0]) + bias[0]
        score = sign * tf.reduce_sum(logits * tf.constant(region, tf.float32), axis=(1, 2))
    weights = tape.gradient(score, activations).numpy().mean(axis=(1, 2))
    return np.maximum(np.einsum("bhwk,bk->bhw", activations.numpy(), weights), 0)


def peaks_on_square(cams, centres) -> int:
    hits = 0
    for cam, (r, c) in zip(cams, centres):
        row, col = np.unravel_index(np.argmax(cam), cam.shape)
        hits += abs(row - r) <= SQUARE // 2 + 1 and abs(col - c) <= SQUARE // 2 + 1
    return hits


def test_one_sigmoid_channel_explains_the_foreground(binary_segmenter):
    """The issue's case: the region was every pixel and the probability the image mean (0.465 instead of
    0.972 over the foreground). Now: class 1 by default, its region logit > 0, its probability the mean
    sigmoid there, its map Grad-CAM of the logit summed over the region."""
    model, images, _, centres = binary_segmenter
    explainer = Explainer(model)  # default layer: the feature map before the head, not 'segments'
    assert explainer.layer_name == "features" and explainer.num_classes == 2
    result = explainer.explain_batch(images)
    _, logits = logits_by_hand(model, images)
    foreground = logits.numpy() > 0
    p = model.predict(images, verbose=0)[..., 0]
    assert result.class_index.tolist() == [1] * len(images)
    np.testing.assert_array_equal(result.regions[:, 0], foreground)
    expected_p = np.array([pi[f].mean() for pi, f in zip(p, foreground)])
    np.testing.assert_allclose(result.probability, expected_p, rtol=1e-4)
    assert expected_p.min() > 0.9 and p.mean(axis=(1, 2)).max() < 0.5  # not the image mean any more
    expected = region_cam_by_hand(model, images, foreground, 1.0)
    np.testing.assert_allclose(result.cams, expected, rtol=1e-4, atol=1e-5 * expected.max())
    hits = peaks_on_square(result.cams, centres)
    assert hits >= 0.8 * len(images), f"the map peaks on the square for {hits} of {len(images)}"


def test_cli_explains_the_foreground_with_its_probability(binary_segmenter, tmp_path, capsys):
    """End to end, no --layer and no class: the record says layer 'features', class 1 and the foreground's
    mean probability (the photo is the first scene at twice the size; the model sees it at 32 x 32)."""
    from gradcam.cli import main
    from gradcam.outputs.manifest import input_records, read_records

    model, images, _, _ = binary_segmenter
    path, photo, _ = scene_on_disk(binary_segmenter, tmp_path)
    assert main(["--model", str(path), str(photo), "-o", str(tmp_path / "out")]) == 0
    (record,) = input_records(read_records(tmp_path / "out" / "manifest.jsonl"))
    seen = model.predict(images[:1], verbose=0)[0, ..., 0]  # the photo, resized back: the same 32 x 32 input
    assert record["layer"] == "features" and record["class_index"] == 1
    assert record["probability"] == pytest.approx(seen[seen > 0.5].mean(), abs=2e-3) and record["probability"] > 0.9


def test_class_0_is_the_background_scored_by_the_negated_logit(binary_segmenter):
    model, images, _, _ = binary_segmenter
    result = Explainer(model, layer="features").explain_batch(images, 0)
    _, logits = logits_by_hand(model, images)
    background = logits.numpy() <= 0
    p = model.predict(images, verbose=0)[..., 0]
    assert result.class_index.tolist() == [0] * len(images)
    np.testing.assert_array_equal(result.regions[:, 0], background)
    np.testing.assert_allclose(result.probability, [(1 - pi[b]).mean() for pi, b in zip(p, background)], rtol=1e-4)
    expected = region_cam_by_hand(model, images, background, -1.0)
    np.testing.assert_allclose(result.cams, expected, rtol=1e-4, atol=1e-5 * max(expected.max(), 1e-12))


def test_the_predicted_class_is_the_foreground_when_there_is_one(binary_segmenter):
    """Without a class: the foreground when the model marks any pixel, else the background (as a binary
    classifier's p > 0.5), whichever region is larger or more confident; --top-k 2 gives both."""
    model, images, _, _ = binary_segmenter
    dark = np.zeros((1, SIZE, SIZE, 3), np.float32)  # no square: no foreground pixel
    assert not (model.predict(dark, verbose=0) > 0.5).any()
    both = np.concatenate([images[:2], dark])
    result = Explainer(model, layer="features").explain_batch(both)
    assert result.class_index.tolist() == [1, 1, 0]
    assert result.regions[2, 0].all()  # the background is every pixel
    ranked = Explainer(model, layer="features", top_k=2).explain_batch(both)
    assert ranked.ranked_class_index.tolist() == [[1, 0], [1, 0], [0, 1]]
    assert not ranked.regions[2, 1].any()  # an empty region: an error for that image (heatmap.check_region)


def test_a_given_region_takes_the_class_of_its_mean_probability(binary_segmenter):
    model, images, masks, _ = binary_segmenter
    box = np.zeros((SIZE, SIZE), np.float32)
    box[2:14, 2:14] = 1
    result = Explainer(model, layer="features").explain_batch(images[:4], regions=box)
    p = model.predict(images[:4], verbose=0)[..., 0]
    inside = p[:, 2:14, 2:14].mean(axis=(1, 2))
    np.testing.assert_array_equal(result.class_index, (inside > 0.5).astype(int))
    np.testing.assert_allclose(result.probabilities, np.stack([1 - inside, inside], axis=1), rtol=1e-4)
    assert np.array_equal(result.regions[:, 0], np.broadcast_to(box > 0, (4, SIZE, SIZE)))
    expected = region_cam_by_hand(model, images[:4], np.broadcast_to(box, (4, SIZE, SIZE)), 1.0)
    given = Explainer(model, layer="features").explain_batch(images[:4], 1, regions=box)
    np.testing.assert_allclose(given.cams, expected, rtol=1e-4, atol=1e-5 * max(expected.max(), 1e-12))


def test_region_scores_by_hand():
    """A 2 x 2 output worked by hand: one channel (sigmoid, and a linear one-channel head taken as logits),
    one channel of probabilities, and two sigmoid channels (multi-label)."""
    tf = pytest.importorskip("tensorflow")
    own = -tf.ones((1, 2, 2))
    raw = tf.constant([[[[2.0], [-1.0]], [[0.0], [3.0]]]])
    for head in (ScoreHead(None, (), "pre-sigmoid", "sigmoid"), ScoreHead(None, (), "logits", "softmax")):
        scores, probabilities, masks, ranking = (t.numpy() for t in region_scores_and_probabilities(raw, head, own))
        np.testing.assert_allclose(scores, [[1.0 + 0.0, 2.0 + 3.0]])  # background: -(-1) - 0; foreground: 2 + 3
        expected = [[(1 - _sigmoid(-1.0) + 0.5) / 2, (_sigmoid(2.0) + _sigmoid(3.0)) / 2]]
        np.testing.assert_allclose(probabilities, expected, rtol=1e-6)
        np.testing.assert_array_equal(masks[0, ..., 1], [[1, 0], [0, 1]])  # logit 0 (p = 0.5) is background
        np.testing.assert_array_equal(masks[0, ..., 0], [[0, 1], [1, 0]])
        assert ranking[0].argmax() == 1
    probs = tf.constant([[[[0.9], [0.2]], [[0.5], [0.7]]]])
    scores, probabilities, masks, _ = region_scores_and_probabilities(probs, ScoreHead(None, (), "output", "none"), own)
    np.testing.assert_allclose(scores.numpy(), [[0.8 + 0.5, 0.9 + 0.7]], rtol=1e-6)
    np.testing.assert_allclose(probabilities.numpy(), [[0.65, 0.8]], rtol=1e-6)
    two = tf.constant([[[[2.0, 1.0], [-1.0, 0.5]], [[1.0, -2.0], [-3.0, -1.0]]]])
    multi_label = ScoreHead(None, (), "pre-sigmoid", "sigmoid")
    scores, probabilities, masks, _ = region_scores_and_probabilities(two, multi_label, own)
    np.testing.assert_array_equal(masks.numpy()[0, ..., 0], [[1, 0], [1, 0]])
    np.testing.assert_array_equal(masks.numpy()[0, ..., 1], [[1, 1], [0, 0]])  # overlaps channel 0: not argmax
    np.testing.assert_allclose(scores.numpy(), [[3.0, 1.5]])
    np.testing.assert_allclose(probabilities.numpy(), [[(_sigmoid(2.0) + _sigmoid(1.0)) / 2,
                                                        (_sigmoid(1.0) + _sigmoid(0.5)) / 2]], rtol=1e-6)


def test_several_sigmoid_channels_each_have_their_pixels():
    """Multi-label: channel c's region is its pixels of p > 0.5, overlapping other channels' (an argmax
    would give each pixel to one channel)."""
    tf = pytest.importorskip("tensorflow")
    k = keras()
    k.utils.set_random_seed(3)
    inputs = k.Input((8, 8, 3))
    x = k.layers.Rescaling(1 / 127.5, offset=-1)(inputs)
    x = k.layers.Conv2D(4, 3, padding="same", activation="relu", name="features")(x)
    model = k.Model(inputs, k.layers.Conv2D(2, 1, activation="sigmoid", name="labels")(x))
    kernel, bias = model.get_layer("labels").get_weights()
    model.get_layer("labels").set_weights([kernel, np.array([0.05, 0.05], np.float32)])
    images = np.random.default_rng(3).uniform(0, 255, (3, 8, 8, 3)).astype(np.float32)
    features = keras().Model(model.inputs, model.get_layer("features").output)(tf.constant(images)).numpy()
    logits = np.einsum("bhwk,kc->bhwc", features, kernel[0, 0]) + 0.05
    p = _sigmoid(logits)
    assert ((logits > 0).all(axis=-1)).any(), "no pixel of both labels: the test would not tell argmax apart"
    explainer = Explainer(model)
    assert explainer.layer_name == "features" and explainer.num_classes == 2
    for c in (0, 1):
        result = explainer.explain_batch(images, c)
        own = logits[..., c] > 0
        np.testing.assert_array_equal(result.regions[:, 0], own)
        np.testing.assert_allclose(result.probability, [pc[o].mean() for pc, o in zip(p[..., c], own)], rtol=1e-4)
