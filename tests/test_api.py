"""The notebook API: gradcam.explain on every kind of model and image, and what an Explanation gives."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from conftest import build_tiny_model, write_photo
from PIL import Image

import gradcam
from gradcam.api import Explanation, array_to_rgb, explain
from gradcam.explainers.explainer import Explainer
from gradcam.errors import ImageError, UsageError
from gradcam.explainers.heatmap import heatmap_at
from gradcam.inputs.images import load_image, resize_for_model


def expected_heatmap(model, photo: np.ndarray, method: str = "gradcam") -> tuple[np.ndarray, int]:
    """The same explanation put together by hand from the library's parts."""
    explainer = Explainer(model, method=method)
    result = explainer.explain_batch(resize_for_model(photo, explainer.input_size)[None])
    return heatmap_at(result.cams[0], photo.shape[:2])[0], int(result.class_index[0])


@pytest.fixture(scope="module")
def model():
    return build_tiny_model(seed=31)


def test_one_path_gives_one_explanation_at_the_photo_size(tmp_path, model):
    path = write_photo(tmp_path / "p.png", size=(57, 41), seed=3)
    result = explain(model, str(path))
    heatmap, index = expected_heatmap(model, load_image(path))
    assert isinstance(result, Explanation)
    assert result.heatmap.shape == (41, 57) and result.heatmap.dtype == np.float32
    np.testing.assert_allclose(result.heatmap, heatmap, atol=1e-6)
    assert result.class_index == index and result.layer == "last_conv" and result.method == "gradcam"
    assert 0 <= result.heatmap.min() and result.heatmap.max() <= 1
    probability = model.predict(resize_for_model(load_image(path), (32, 32))[None], verbose=0)[0, index]
    assert result.probability == pytest.approx(float(probability), rel=1e-5)


def test_every_image_kind_gives_the_same_heatmap(tmp_path, model):
    path = write_photo(tmp_path / "p.png", size=(50, 36), seed=4)
    photo = load_image(path)
    before = photo.copy()
    pil = Image.open(path)
    kinds = [path, str(path), pil, photo, photo.astype(np.float32), photo.astype(np.float64) / 255.0,
             np.dstack([photo, np.full(photo.shape[:2], 255, np.uint8)])]  # RGBA, opaque
    results = [explain(model, image) for image in kinds]
    for result in results[1:]:
        np.testing.assert_allclose(result.heatmap, results[0].heatmap, atol=1e-5)
        assert result.class_index == results[0].class_index
    np.testing.assert_array_equal(photo, before)  # the caller's array is not changed
    many = explain(model, kinds)  # a list: one result per image, in batches
    assert len(many) == len(kinds)
    np.testing.assert_allclose(many[3].heatmap, results[0].heatmap, atol=1e-5)
    batch = explain(model, np.stack([photo, photo[::-1]]), batch_size=1)  # a 4-D array is a batch
    assert len(batch) == 2
    np.testing.assert_allclose(batch[0].heatmap, results[0].heatmap, atol=1e-5)


def test_greyscale_kinds(model):
    grey = np.random.default_rng(5).integers(0, 256, (30, 40), dtype=np.uint8)
    as_rgb = np.repeat(grey[:, :, None], 3, axis=2)
    reference = explain(model, as_rgb)
    for image in (grey, grey[:, :, None], Image.fromarray(grey)):
        np.testing.assert_allclose(explain(model, image).heatmap, reference.heatmap, atol=1e-5)


def test_array_conversion_by_hand():
    np.testing.assert_array_equal(array_to_rgb(np.array([[0.0, 0.5, 1.0]])), [[[0] * 3, [128] * 3, [255] * 3]])
    np.testing.assert_array_equal(array_to_rgb(np.array([[0.0, 127.4, 300.0]])), [[[0] * 3, [127] * 3, [255] * 3]])
    rgba = np.array([[[200, 0, 0, 0], [200, 0, 0, 255]]], np.uint8)  # transparent -> white
    np.testing.assert_array_equal(array_to_rgb(rgba), [[[255, 255, 255], [200, 0, 0]]])
    with pytest.raises(ImageError, match="must be"):
        array_to_rgb(np.zeros((4, 4, 2)))
    with pytest.raises(ImageError, match="NaN"):
        array_to_rgb(np.full((4, 4, 3), np.nan))


def test_top_k_class_index_and_class_name(tmp_path, model):
    photo = load_image(write_photo(tmp_path / "p.png", seed=6))
    ranked = explain(model, photo, top_k=3)
    assert [r.rank for r in ranked] == [1, 2, 3]
    assert ranked[0].probability >= ranked[1].probability >= ranked[2].probability
    for r in ranked:
        alone = explain(model, photo, class_index=r.class_index)
        np.testing.assert_allclose(alone.heatmap, r.heatmap, atol=1e-5)
    per_image = explain(model, [photo, photo], class_index=[0, 2])
    assert [r.class_index for r in per_image] == [0, 2]
    with pytest.raises(UsageError, match="not both"):
        explain(model, photo, class_index=1, top_k=2)
    with pytest.raises(UsageError, match="--labels"):
        explain(model, photo, class_index="cat")  # a Keras model has no class names


def test_model_file_and_model_name(tmp_path, tiny_model_file):
    photo = write_photo(tmp_path / "p.png", seed=7)
    from_file = explain(tiny_model_file, photo)
    assert from_file.class_name is None and from_file.class_index in (0, 1, 2)
    from conftest import keras

    loaded = explain(keras().models.load_model(tiny_model_file), photo)
    np.testing.assert_allclose(from_file.heatmap, loaded.heatmap, atol=1e-6)
    by_name = explain("vgg19", photo, weights="random", layer="block4_conv4", method="hirescam")
    assert by_name.layer == "block4_conv4" and by_name.method == "hirescam"
    assert by_name.heatmap.shape == (30, 40) and isinstance(by_name.class_name, str)
    tabby = explain("vgg19", photo, weights="random", class_index="tabby")
    assert tabby.class_index == 281 and tabby.class_name == "tabby"


def test_overlay_figure_and_jupyter_display(tmp_path, model):
    result = explain(model, write_photo(tmp_path / "p.png", size=(64, 48), seed=8))
    image = result.overlay(alpha=0.5, colormap="viridis")
    assert image.size == (64, 48) and image.mode == "RGB"
    from gradcam.outputs.render import overlay

    np.testing.assert_array_equal(np.asarray(image), overlay(result.image, result.heatmap, 0.5, "viridis"))
    figure = result.figure()
    assert len(figure.axes) == 2 and "layer last_conv" in figure.texts[0].get_text()
    png = result._repr_png_()
    assert png.startswith(b"\x89PNG") and Image.open(__import__("io").BytesIO(png)).size == (64, 48)


def test_explainer_is_reused_and_the_model_untouched(tmp_path):
    model = build_tiny_model(seed=32)
    weights = [w.copy() for w in model.get_weights()]
    photo = write_photo(tmp_path / "p.png", seed=9)
    from gradcam import api

    explain(model, photo)
    cached = api.explainer_for(model)
    explain(model, photo)
    assert api.explainer_for(model) is cached
    for before, after in zip(weights, model.get_weights()):
        np.testing.assert_array_equal(before, after)
    assert model.get_layer("predictions").activation.__name__ == "softmax"


def test_user_errors_are_gradcam_errors(tmp_path, model):
    with pytest.raises(UsageError, match="no layer named"):
        explain(model, np.zeros((8, 8, 3), np.uint8), layer="nope")
    with pytest.raises(ImageError):
        explain(model, tmp_path / "missing.jpg")
    with pytest.raises(UsageError, match="model must be"):
        explain(42, np.zeros((8, 8, 3), np.uint8))


def test_import_exports_without_tensorflow():
    code = ("import sys, gradcam; names = [gradcam.explain, gradcam.Explanation, gradcam.run, gradcam.RunOptions, "
            "gradcam.faithfulness_scores, gradcam.sanity_check]; "
            "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, 'imported tensorflow'; print('ok')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.stdout.strip() == "ok", done.stderr
    assert set(gradcam.__all__) >= {"explain", "Explanation", "run", "RunOptions", "faithfulness_scores",
                                    "sanity_check"}


def test_every_method_and_smoothing_through_the_api(tmp_path, model):
    from gradcam.names import METHOD_NAMES

    photo = load_image(write_photo(tmp_path / "p.png", size=(45, 33), seed=10))
    for method in METHOD_NAMES:
        result = explain(model, photo, method=method, batch_size=16)
        assert result.method == method and result.heatmap.shape == (33, 45)
        assert np.isfinite(result.heatmap).all()
    smooth = explain(model, photo, aug_smooth=True, eigen_smooth=True)
    explainer = Explainer(model, aug_smooth=True, eigen_smooth=True)
    cams = explainer.explain_batch(resize_for_model(photo, (32, 32))[None]).cams
    np.testing.assert_allclose(smooth.heatmap, heatmap_at(cams[0], (33, 45))[0], atol=1e-5)


def test_figures_and_lists_show_as_pictures_in_an_executed_notebook(tmp_path):
    """Executed by a real Jupyter kernel (nbclient), without %matplotlib inline: an Explanation, its
    figure() and a list of explanations each give image/png outputs, not '<Figure size ...>' text."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    setup = (
        "import os\nos.environ['TF_CPP_MIN_LOG_LEVEL'] = '3'\n"
        "import numpy as np, keras, gradcam\n"
        "inputs = keras.Input((32, 32, 3))\n"
        "x = keras.layers.Conv2D(4, 3, activation='relu', name='conv')(inputs)\n"
        "model = keras.Model(inputs, keras.layers.Dense(2, activation='softmax')(keras.layers.GlobalAveragePooling2D()(x)))\n"
        "image = np.random.default_rng(0).integers(0, 256, (40, 48, 3), dtype=np.uint8)\n"
        "result = gradcam.explain(model, image)"
    )
    cells = [setup, "result", "result.figure()", "gradcam.explain(model, [image, image])",
             "gradcam.explain(model, image, top_k=2)"]
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source) for source in cells])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [cell.outputs for cell in notebook.cells]
    assert not [o for cell in outputs for o in cell if o.output_type == "error"]

    def pictures(cell_outputs):
        return sum("image/png" in output.get("data", {}) for output in cell_outputs)

    assert pictures(outputs[1]) == 1  # the Explanation
    assert pictures(outputs[2]) == 1  # its figure
    assert pictures(outputs[3]) == 2  # a list of two
    assert pictures(outputs[4]) == 2  # the two ranks
    assert not any("<Figure size" in str(output.get("data", {}).get("text/plain", "")) for output in outputs[2])


def test_the_cached_explainer_follows_fine_tuning_in_a_notebook():
    """explain(model) twice with training in between: the second answer is the trained model's
    (the cache is by model, and the explainer reads the model's variables at each call)."""
    from conftest import keras

    model = build_tiny_model(seed=21)
    images = np.random.default_rng(21).uniform(0, 255, (8, 32, 32, 3)).astype(np.float32)
    before = explain(model, images[0], class_index=2)
    model.compile(optimizer=keras().optimizers.Adam(0.05), loss="sparse_categorical_crossentropy")
    model.fit(images, np.full(8, 2), epochs=30, verbose=0)  # fine-tune towards class 2
    after = explain(model, images[0], class_index=2)
    expected = float(model.predict(images[:1], verbose=0)[0, 2])
    assert after.probability == pytest.approx(expected, rel=1e-4, abs=1e-6)
    assert abs(after.probability - before.probability) > 0.1
    fresh = Explainer(model).explain_batch(images[:1], 2).cams[0]  # built after the training
    np.testing.assert_allclose(after.heatmap, gradcam.upsample(gradcam.normalize(fresh)[0], (32, 32)), atol=1e-6)
