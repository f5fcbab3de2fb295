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

from gradcam.explainers.explainer import Explainer
from gradcam.cli import main
from gradcam.errors import HeatmapError
from gradcam.metrics.sanity import cascading_randomization, rank_correlation, reinitialize


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
    photos = [write_photo(tmp_path / f"p{i}.png", seed=i) for i in range(5)]
    out = tmp_path / "o"
    # built to pass: Grad-CAM of a real layer depends on the weights
    assert main(["sanity", "--model", str(tiny_model_file), *map(str, photos), "-o", str(out), "--draws", "2"]) == 0
    printed = capsys.readouterr().out
    report = json.loads((out / "sanity.json").read_text())
    assert report["passed"] is True and "PASS:" in printed and "FAIL" not in printed
    assert report["verdict"] == "PASS" and report["draws"] == 2 and report["images_compared"] == 5
    assert report["interval"][1] < 0.5 and report["interval"][0] <= report["mean"] <= report["interval"][1]
    assert ", over 5 image(s) and 2 random draw(s))" in printed
    assert all(np.shape(s["per_draw"]) == (2, 5) for s in report["steps"])
    assert [s["layer"] for s in report["steps"]] == ["predictions", "last_conv", "conv1"]
    assert report["steps"][-1]["rank_correlation"] < 0.5
    assert report["first_below"] in [s["layer"] for s in report["steps"]]

    # built to fail: a "method" whose map is the brightness of the weight-free first layer
    from gradcam.explainers import methods

    monkeypatch.setitem(methods.WEIGHTED, "gradcam", lambda a, g: a)  # the sum of the pixels: no weight
    model = pixel_model_file(tmp_path)
    assert main(["sanity", "--model", str(model), "--layer", "pixels", *map(str, photos), "-o", str(out)]) == 1
    printed = capsys.readouterr().out
    report = json.loads((out / "sanity.json").read_text())
    assert report["passed"] is False and "FAIL:" in printed and "PASS" not in printed
    assert report["interval"] == [pytest.approx(1.0), pytest.approx(1.0)]
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
    from gradcam.metrics.sanity import is_constant

    assert is_constant(np.zeros((2, 2))) and is_constant(np.full((3, 3), 0.7))
    assert not is_constant(np.array([[0.0, 1e-6]]))


def test_constant_original_maps_are_left_out_and_alone_give_no_verdict():
    """An image whose original map is constant (correlation undefined) must not count as 'changed':
    today's verdict would be PASS from correlations set to 0."""
    from gradcam.metrics.sanity import SanityReport

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
    from gradcam.metrics.sanity import SanityReport, SanityStep

    steps = [SanityStep("head", 0.9, [0.9] * 5), SanityStep("conv3", 0.4, [0.4] * 5, 1),
             SanityStep("conv2", 0.6, [0.6] * 5), SanityStep("conv1", 0.1, [0.1] * 5, 2)]
    report = SanityReport("conv3", "gradcam", list("abcde"), [0] * 5, steps, [])
    assert report.passed is True and report.first_below.layer == "conv3"
    text = "\n".join(report.lines())
    assert "first fell below 0.5 once the layers down to conv3" in text
    assert "(2 map(s) became constant)" in text and "(1 map(s) became constant)" in text
    assert report.as_dict()["first_below"] == "conv3"


def test_cli_sanity_exits_1_when_an_input_failed(tmp_path, tiny_model_file, capsys):
    photos = [write_photo(tmp_path / f"p{i}.png", seed=i) for i in range(5)]
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    code = main(["sanity", "--model", str(tiny_model_file), *map(str, photos), str(bad), "-o", str(tmp_path / "o"),
                 "--draws", "1"])
    captured = capsys.readouterr()
    assert "PASS:" in captured.out and f"failed: {bad}" in captured.err
    assert code == 1


def test_one_photo_gives_no_verdict_and_says_why(tmp_path, tiny_model_file, capsys):
    """One image decides nothing: the old check said PASS or FAIL from a single photo and draw."""
    photo = write_photo(tmp_path / "p.png", seed=3)
    out = tmp_path / "o"
    assert main(["sanity", "--model", str(tiny_model_file), str(photo), "-o", str(out)]) == 1
    printed = capsys.readouterr().out
    report = json.loads((out / "sanity.json").read_text())
    assert "PASS" not in printed and "FAIL" not in printed
    verdict = printed.splitlines()[-2]
    assert verdict.startswith("NO VERDICT: a verdict needs at least 5 images whose heatmap is not constant, "
                              "and 1 was compared; with every layer random the rank correlation is ")
    assert "(mean over 1 image(s) and 3 random draw(s)), per random draw " in verdict
    assert "CI" not in verdict  # no interval from one image
    assert report["passed"] is None and report["verdict"] == "NO VERDICT" and report["interval"] is None
    assert report["reason"].startswith("a verdict needs at least 5 images") and report["min_images"] == 5


def test_report_verdicts_from_tables_made_by_hand():
    from gradcam.metrics.sanity import SanityReport, SanityStep

    def report(table, images=None):
        table = np.asarray(table, dtype=float)
        names = images or [f"i{n}" for n in range(table.shape[1])]
        step = SanityStep("conv1", float(table.mean()), table.mean(axis=0).tolist(), 0, table.tolist())
        return SanityReport("conv1", "gradcam", names, [0] * len(names), [step], [], seed=1)

    below = report(np.full((3, 5), 0.1) + np.linspace(-0.05, 0.05, 5))
    assert below.passed is True and below.final_interval[1] < 0.5 and below.draws == 3
    above = report(np.full((2, 6), 0.8) + np.linspace(-0.05, 0.05, 6))
    assert above.passed is False and above.final_interval[0] >= 0.5
    assert above.lines()[-1].startswith("FAIL: with every layer random the rank correlation is still +0.800 (95% CI ")
    straddling = report([[-0.4, 0.9, 0.2, 0.95, 0.6, 0.3], [-0.2, 0.8, 0.4, 0.9, 0.7, 0.1]])
    low, high = straddling.final_interval
    assert low < 0.5 < high and straddling.passed is None
    assert "the interval contains 0.5: more images are needed to tell (about " in straddling.lines()[-1]
    assert straddling.as_dict()["images_needed"] > 6
    few = report(np.full((3, 4), 0.1) + np.linspace(-0.05, 0.05, 4))  # narrow, but 4 images
    assert few.passed is None and "needs at least 5 images" in few.reason() and "95% CI" in few.reason()
    as_json = json.loads(json.dumps(straddling.as_dict()))  # no NaN: valid JSON
    assert as_json["steps"][0]["per_draw"] == [[-0.4, 0.9, 0.2, 0.95, 0.6, 0.3], [-0.2, 0.8, 0.4, 0.9, 0.7, 0.1]]
    assert as_json["interval"] == [pytest.approx(low), pytest.approx(high)] and as_json["seed"] == 1


def test_each_draw_starts_from_the_trained_weights_with_its_own_seeds():
    model = build_tiny_model(seed=12)
    images = np.random.default_rng(8).uniform(0, 255, (3, 32, 32, 3)).astype(np.float32)
    classes = np.array([0, 1, 2])
    factory = lambda m: Explainer(m, layer="last_conv")  # noqa: E731
    _, two = cascading_randomization(factory, model, images, classes, seed=0, draws=2)
    _, first = cascading_randomization(factory, model, images, classes, seed=0)
    _, second = cascading_randomization(factory, model, images, classes, seed=1000 * 3)  # 3 layers with weights
    for both, one, other in zip(two, first, second):
        np.testing.assert_allclose(both.per_draw, [one.per_draw[0], other.per_draw[0]], atol=1e-6)
        assert both.rank_correlation == pytest.approx(np.mean(both.per_draw))
    assert two[0].per_draw[0] != two[0].per_draw[1]


def test_draws_option_is_checked_and_belongs_to_sanity(tmp_path, tiny_model_file, capsys):
    photo = write_photo(tmp_path / "p.png")
    for bad in ("0", "-1", "two"):
        assert main(["sanity", "--model", str(tiny_model_file), str(photo), "--draws", bad]) == 2
        assert "--draws" in capsys.readouterr().err
    assert main(["--model", str(tiny_model_file), str(photo), "--draws", "2"]) == 2  # not an explain option


def test_eigencam_of_a_weight_free_layer_fails(tmp_path, capsys):
    """Eigen-CAM of the input-side layer without weights is the pixels' first principal component: no
    weight changes it, so every correlation is 1 and the check must not pass."""
    photos = [write_photo(tmp_path / f"p{i}.png", seed=i) for i in range(5)]
    model = pixel_model_file(tmp_path)
    out = tmp_path / "o"
    assert main(["sanity", "--model", str(model), "--layer", "pixels", "--method", "eigencam",
                 *map(str, photos), "-o", str(out)]) == 1
    report = json.loads((out / "sanity.json").read_text())
    assert report["verdict"] == "FAIL" and report["interval"] == [pytest.approx(1.0), pytest.approx(1.0)]
    assert "FAIL:" in capsys.readouterr().out


def _hand_gradcam(weights, images, classes):
    """Grad-CAM of the toy below written out with TensorFlow ops: /255, conv1 + ReLU, 2x2 max-pool,
    last_conv + ReLU (A), global mean, dense logits; alpha = spatial mean of d logit_c / dA;
    map = ReLU(sum_k alpha_k A_k), (B, 24, 24)."""
    import tensorflow as tf

    (k1, b1), (k2, b2), (kd, bd) = weights
    pooled = tf.nn.max_pool2d(tf.nn.relu(tf.nn.conv2d(tf.constant(images / 255.0, tf.float32), k1, 1, "SAME") + b1),
                              2, 2, "VALID")
    with tf.GradientTape() as tape:
        activations = tf.nn.relu(tf.nn.conv2d(pooled, k2, 1, "SAME") + b2)
        tape.watch(activations)
        logits = tf.reduce_mean(activations, axis=(1, 2)) @ kd + bd
        score = tf.gather(logits, tf.constant(classes, tf.int32), axis=1, batch_dims=1)
    alpha = tf.reduce_mean(tape.gradient(score, activations), axis=(1, 2), keepdims=True)
    return tf.nn.relu(tf.reduce_sum(alpha * activations, axis=-1)).numpy()


def _spearman(a, b):
    from scipy import stats

    return 0.0 if np.ptp(a) == 0 or np.ptp(b) == 0 else stats.spearmanr(a.ravel(), b.ravel()).statistic


def test_verdict_agrees_with_an_independent_cascade_on_a_trained_toy():
    """A CNN trained here to tell a square or a cross from noise finds the object; an independent cascade
    (each layer's weights replaced, top down, by He-normal draws; Grad-CAM by hand) decorrelates its
    maps; gradcam's own check says PASS, and its mean lies within the independent cascade's spread."""
    from conftest import OBJECT, SIZE, presence_images

    from gradcam.metrics.sanity import SanityReport

    k = keras()
    k.utils.set_random_seed(3)
    rng = np.random.default_rng(3)
    train_x, train_y, _ = presence_images(1200, rng)
    inputs = k.Input((SIZE, SIZE, 3))
    x = k.layers.Rescaling(1 / 255, name="scale")(inputs)
    x = k.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv1")(x)
    x = k.layers.MaxPooling2D(2, name="pool")(x)
    x = k.layers.Conv2D(16, 3, padding="same", activation="relu", name="last_conv")(x)
    x = k.layers.GlobalAveragePooling2D(name="gap")(x)
    model = k.Model(inputs, k.layers.Dense(2, activation="softmax", name="predictions")(x))
    model.compile(optimizer=k.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(train_x, train_y, epochs=6, batch_size=32, verbose=0)
    images, labels, centres = presence_images(40, rng)
    shown = labels == 1  # an object to find
    images, labels, centres = images[shown][:8], labels[shown][:8], centres[shown][:8]
    assert (model.predict(images, verbose=0).argmax(axis=1) == labels).all()

    trained = [model.get_layer(name).get_weights() for name in ("conv1", "last_conv", "predictions")]
    original = _hand_gradcam(trained, images, labels)
    np.testing.assert_allclose(original, Explainer(model, layer="last_conv").explain_batch(images, labels).cams,
                               atol=1e-5 * original.max())
    peaks = [np.unravel_index(np.argmax(cam), cam.shape) for cam in original]  # 24 x 24 cells of 2 x 2 pixels
    on_object = sum(abs(2 * pr + 0.5 - r) <= OBJECT // 2 + 2 and abs(2 * pc + 0.5 - c) <= OBJECT // 2 + 2
                    for (pr, pc), (r, c) in zip(peaks, centres))
    assert on_object >= 6, f"the trained maps find the object in only {on_object} of 8 images"

    independent = []  # (draws, images) once every layer is random
    for draw in range(3):
        draw_rng = np.random.default_rng(100 + draw)
        weights = [list(pair) for pair in trained]
        for layer in (2, 1, 0):  # top down
            kernel, bias = weights[layer]
            weights[layer] = [draw_rng.normal(0, np.sqrt(2 / np.prod(kernel.shape[:-1])), kernel.shape),
                              draw_rng.normal(0, 0.01, bias.shape)]
            weights[layer] = [w.astype(np.float32) for w in weights[layer]]
        maps = _hand_gradcam(weights, images, labels)
        independent.append([_spearman(original[i], maps[i]) for i in range(8)])
    independent = np.array(independent)
    # decorrelated, well below the threshold 0.5 (not to 0: random convolutions still respond to a bright object)
    assert independent.mean() < 0.3, independent.round(2)

    _, steps = cascading_randomization(lambda m: Explainer(m, layer="last_conv"), model, images, labels, draws=3)
    report = SanityReport("last_conv", "gradcam", [f"i{n}" for n in range(8)], labels.tolist(), steps, [])
    assert report.passed is True, report.lines()
    assert independent.min() <= report.final_correlation <= independent.max()
    assert abs(report.final_correlation - independent.mean()) < 0.25
    low, high = report.final_interval
    assert low <= independent.mean() <= high
