"""Class choice (--class, --top-k), guided Grad-CAM, and model files (issue: any Keras classifier)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import build_tiny_model, keras, write_photo
from gradcam.cam import Explainer, guided_gradcam_map, guided_relu
from gradcam.cli import main
from gradcam.errors import UsageError
from gradcam.models import find_class, imagenet_class_names, imagenet_synonyms


def test_guided_relu_gradient_by_hand():
    tf = pytest.importorskip("tensorflow")
    x = tf.constant([-1.0, 2.0, 3.0, 0.5])
    upstream = tf.constant([5.0, -4.0, 2.0, 1.0])
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = guided_relu(x)
    # forward is ReLU; backward passes only where x > 0 and the upstream gradient > 0
    np.testing.assert_allclose(y.numpy(), [0, 2, 3, 0.5])
    np.testing.assert_allclose(tape.gradient(y, x, output_gradients=upstream).numpy(), [0, 0, 2, 1])


def test_guided_gradcam_map_by_hand():
    tf = pytest.importorskip("tensorflow")
    guided = np.zeros((1, 2, 2, 3), np.float32)
    guided[0, 0, 0] = [1.0, -3.0, 2.0]  # max |.| = 3
    guided[0, 1, 1] = [0.5, 0.5, 0.5]
    cams = np.array([[[2.0, 2.0], [2.0, 4.0]]], np.float32)  # same size: no resampling
    out = guided_gradcam_map(tf.constant(guided), tf.constant(cams)).numpy()
    np.testing.assert_allclose(out[0], [[6.0, 0.0], [0.0, 2.0]], rtol=1e-6)


def test_guided_gradcam_on_a_model_at_input_resolution():
    model = build_tiny_model(seed=8)
    before = [w.copy() for w in model.get_weights()]
    explainer = Explainer(model, method="guided-gradcam")
    images = np.random.default_rng(5).uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)
    result = explainer.explain_batch(images)
    assert result.cams.shape == (2, 32, 32) and explainer.map_size == (32, 32)
    assert np.isfinite(result.cams).all() and result.cams.max() > 0
    plain = Explainer(model).explain_batch(images)
    np.testing.assert_array_equal(result.class_index, plain.class_index)
    assert model.get_layer("last_conv").activation.__name__ == "relu"
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_top_k_equals_each_class_alone(tiny_model):
    images = np.random.default_rng(6).uniform(0, 255, (3, 32, 32, 3)).astype(np.float32)
    ranked = Explainer(tiny_model, top_k=3).explain_batch(images)
    single = Explainer(tiny_model)
    assert ranked.ranked_cams.shape == (3, 3, 32, 32)
    order = np.argsort(-ranked.probabilities, axis=1)
    np.testing.assert_array_equal(ranked.ranked_class_index, order)
    assert np.all(np.diff(ranked.ranked_probability, axis=1) <= 0)
    for k in range(3):
        alone = single.explain_batch(images, ranked.ranked_class_index[:, k])
        np.testing.assert_allclose(ranked.ranked_cams[:, k], alone.cams, rtol=1e-4, atol=1e-6)


def test_top_k_out_of_range(tiny_model):
    with pytest.raises(UsageError, match="top-k"):
        Explainer(tiny_model, top_k=4)


def test_find_class_by_name_and_synonym():
    names, synonyms = imagenet_class_names(), imagenet_synonyms()
    assert find_class("tabby", names, synonyms) == 281
    assert find_class("Tabby Cat", names, synonyms) == 281
    assert find_class("great_white_shark", names, synonyms) == 2
    with pytest.raises(UsageError, match="did you mean 'tabby'"):
        find_class("taby", names, synonyms)
    with pytest.raises(UsageError, match="--labels"):
        find_class("cat", None)


def test_cli_class_name_top_k_and_labels(tmp_path, tiny_model_file, capsys):
    photo = write_photo(tmp_path / "p.png")
    labels = tiny_model_file.parent / "labels.txt"
    out = tmp_path / "o"
    base = ["--model", str(tiny_model_file), "--labels", str(labels), str(photo), "-o", str(out)]
    assert main(base + ["--class", "cherry"]) == 0
    assert json.loads((out / "manifest.jsonl").read_text().splitlines()[-1])["class_index"] == 2
    assert main(base + ["--class", "chery"]) == 2
    assert "did you mean 'cherry'" in capsys.readouterr().err
    assert main(base + ["--top-k", "2", "--save-npy"]) == 0
    records = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()][-2:]
    assert [r["rank"] for r in records] == [1, 2]
    assert records[0]["probability"] >= records[1]["probability"]
    assert records[0]["class_index"] != records[1]["class_index"]
    from PIL import Image

    top1, top2 = (np.asarray(Image.open(out / f"p.png.top{k}.png").convert("RGB")) for k in (1, 2))
    assert top1.shape == top2.shape == (30, 40, 3) and not np.array_equal(top1, top2)
    assert np.load(out / "p.png.top2.npy").shape == (30, 40)
    assert "1 explained" in capsys.readouterr().out
    assert main(base + ["--top-k", "2", "--save-npy"]) == 0  # rerun: one input skipped, not two
    assert "0 explained, 1 skipped, 0 failed" in capsys.readouterr().out
    assert main(base + ["--top-k", "2", "--class-index", "1"]) == 2  # mutually exclusive


def test_cli_h5_model_file_and_method(tmp_path, capsys):
    model = build_tiny_model(seed=9)
    path = tmp_path / "tiny.h5"
    model.save(path)
    photo = write_photo(tmp_path / "p.png")
    for method in ("gradcam++", "hirescam", "layercam", "xgradcam", "counterfactual", "guided-gradcam"):
        out = tmp_path / method
        assert main(["--model", str(path), str(photo), "-o", str(out), "--method", method]) == 0
        record = json.loads((out / "manifest.jsonl").read_text())
        assert record["method"] == method and record["layer"] == "last_conv"


def test_unsafe_model_file_is_refused(tmp_path, capsys):
    k = keras()
    inputs = k.Input((16, 16, 3))
    x = k.layers.Lambda(lambda t: t * 2.0)(inputs)
    x = k.layers.Conv2D(2, 3, name="conv")(x)
    x = k.layers.GlobalAveragePooling2D()(x)
    model = k.Model(inputs, k.layers.Dense(2, activation="softmax")(x))
    path = tmp_path / "lambda.keras"
    model.save(path)
    photo = write_photo(tmp_path / "p.png")
    assert main(["--model", str(path), str(photo), "-o", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert "cannot load model" in err and "safe_mode" in err and "Traceback" not in err


def test_unknown_output_activation_is_said(tmp_path, capsys):
    k = keras()
    inputs = k.Input((16, 16, 3))
    x = k.layers.Conv2D(2, 3, name="conv")(inputs)
    x = k.layers.GlobalAveragePooling2D()(x)
    x = k.layers.Dense(3, activation="softmax")(x)
    model = k.Model(inputs, k.layers.Dropout(0.1)(x))  # the last layer hides the softmax
    path = tmp_path / "hidden.keras"
    model.save(path)
    photo = write_photo(tmp_path / "p.png")
    assert main(["--model", str(path), str(photo), "-o", str(tmp_path / "o")]) == 0
    captured = capsys.readouterr()
    assert "cannot tell whether" in captured.err and "scores output" in captured.out


def test_guided_top_k_equals_each_class_alone(tiny_model):
    images = np.random.default_rng(9).uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)
    ranked = Explainer(tiny_model, method="guided-gradcam", top_k=2).explain_batch(images)
    single = Explainer(tiny_model, method="guided-gradcam")
    for k in range(2):
        alone = single.explain_batch(images, ranked.ranked_class_index[:, k])
        np.testing.assert_allclose(ranked.ranked_cams[:, k], alone.cams, rtol=1e-4, atol=1e-6)


def _independent_guided_logit_gradient(model, images, class_index):
    """d z_c / d x through guided ReLUs, written with raw TensorFlow ops from the tiny model's weights."""
    tf = pytest.importorskip("tensorflow")

    @tf.custom_gradient
    def my_guided_relu(x):
        def grad(dy):
            return tf.where((x > 0) & (dy > 0), dy, tf.zeros_like(dy))
        return tf.maximum(x, 0.0), grad

    k1, b1 = model.get_layer("conv1").get_weights()
    k2, b2 = model.get_layer("last_conv").get_weights()
    w, b = model.get_layer("predictions").get_weights()
    x = tf.constant(images)
    with tf.GradientTape() as tape:
        tape.watch(x)
        h = my_guided_relu(tf.nn.conv2d(x, k1, 1, "SAME") + b1)
        h = my_guided_relu(tf.nn.conv2d(h, k2, 1, "SAME") + b2)
        h = tf.reduce_mean(tf.nn.max_pool2d(h, 2, 2, "VALID"), axis=(1, 2))
        logits = tf.matmul(h, w) + b
        score = tf.reduce_sum(tf.gather(logits, class_index, axis=1, batch_dims=1))
    return tape.gradient(score, x)


def test_guided_gradient_is_of_the_logit_not_the_softmax():
    tf = pytest.importorskip("tensorflow")
    model = build_tiny_model(seed=21)
    dense = model.get_layer("predictions")
    kernel, bias = dense.get_weights()
    dense.set_weights([kernel * 40.0, bias])  # confident: the softmax saturates
    images = np.random.default_rng(21).uniform(0, 255, (3, 32, 32, 3)).astype(np.float32)
    probabilities = model.predict(images, verbose=0)
    assert probabilities.max(axis=1).min() > 0.999
    classes = probabilities.argmax(axis=1).astype(np.int32)
    guided = _independent_guided_logit_gradient(model, images, tf.constant(classes))
    cams = Explainer(model, layer="last_conv").explain_batch(images, classes).cams
    expected = guided_gradcam_map(guided, tf.constant(cams)).numpy()
    result = Explainer(model, layer="last_conv", method="guided-gradcam").explain_batch(images, classes)
    assert expected.max() > 0
    np.testing.assert_allclose(result.cams, expected, rtol=1e-4, atol=1e-5 * expected.max())
