"""Segmentation models (output (batch, h, w, classes)): a class explained over a region, by default the
pixels the model assigns to it, or a box (--region); a small network trained in the test to segment a
bright square, against an independent computation of the region score's gradient."""
from __future__ import annotations

import numpy as np
import pytest
from conftest import keras
from PIL import Image

from gradcam.explainers.explainer import Explainer
from gradcam.cli import main
from gradcam.errors import UsageError

SIZE, SQUARE = 32, 8


def square_scenes(n: int, rng: np.random.Generator):
    """Noise with one bright square: images float32 (n, 32, 32, 3), masks int (n, 32, 32) 1 on the
    square, centres (n, 2) as (row, col)."""
    images = rng.uniform(0, 90, (n, SIZE, SIZE, 1)).astype(np.float32)
    masks = np.zeros((n, SIZE, SIZE), np.int64)
    centres = rng.integers(SQUARE // 2, SIZE - SQUARE // 2, (n, 2))
    for image, mask, (r, c) in zip(images, masks, centres):
        rows, cols = slice(r - SQUARE // 2, r + SQUARE // 2), slice(c - SQUARE // 2, c + SQUARE // 2)
        image[rows, cols] = rng.uniform(170, 255)
        mask[rows, cols] = 1
    return np.repeat(images, 3, axis=3), masks, centres


@pytest.fixture(scope="module")
def segmenter():
    """Conv layers with 'same' padding -> a per-pixel softmax over (background, square)."""
    k = keras()
    k.utils.set_random_seed(11)
    rng = np.random.default_rng(11)
    images, masks, _ = square_scenes(600, rng)
    inputs = k.Input((SIZE, SIZE, 3))
    x = k.layers.Rescaling(1 / 255.0)(inputs)
    x = k.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv1")(x)
    x = k.layers.Conv2D(8, 3, padding="same", activation="relu", name="features")(x)
    outputs = k.layers.Conv2D(2, 1, activation="softmax", name="segments")(x)
    model = k.Model(inputs, outputs, name="segmenter")
    model.compile(optimizer=k.optimizers.Adam(1e-2), loss="sparse_categorical_crossentropy")
    model.fit(images, masks, epochs=6, batch_size=32, verbose=0)
    test_images, test_masks, centres = square_scenes(20, rng)
    predicted = model.predict(test_images, verbose=0).argmax(axis=-1)
    assert (predicted == test_masks).mean() > 0.97, "the segmenter did not learn"
    return model, test_images, test_masks, centres


def independent_region_cam(model, images, region):
    """Grad-CAM of sum over ``region`` (B, h, w) of the square class's pre-softmax score, by hand: a probe
    gives the 'features' activations and the last layer's input; the 1x1 logits are formed here."""
    tf = pytest.importorskip("tensorflow")
    head = model.get_layer("segments")
    probe = keras().Model(model.inputs, [model.get_layer("features").output, head.input])
    kernel, bias = head.get_weights()
    with tf.GradientTape() as tape:
        activations, features = probe(tf.constant(images), training=False)
        logits = tf.einsum("bhwk,kc->bhwc", features, kernel[0, 0]) + bias
        score = tf.reduce_sum(logits[..., 1] * tf.constant(region, tf.float32), axis=(1, 2))
    gradients = tape.gradient(score, activations).numpy()
    weights = gradients.mean(axis=(1, 2))
    return np.maximum(np.einsum("bhwk,bk->bhw", activations.numpy(), weights), 0)


def test_the_default_region_is_the_pixels_assigned_to_the_class(segmenter):
    model, images, masks, centres = segmenter
    explainer = Explainer(model, layer="features")
    assert explainer.segmentation and explainer.output_size == (SIZE, SIZE) and explainer.num_classes == 2
    result = explainer.explain_batch(images, 1)
    assigned = model.predict(images, verbose=0).argmax(axis=-1) == 1
    np.testing.assert_array_equal(result.regions[:, 0], assigned)
    expected = independent_region_cam(model, images, assigned.astype(np.float32))
    np.testing.assert_allclose(result.cams, expected, rtol=1e-4, atol=1e-5 * expected.max())
    probabilities = model.predict(images, verbose=0)[..., 1]
    np.testing.assert_allclose(result.probability, [p[a].mean() for p, a in zip(probabilities, assigned)], rtol=1e-4)
    hits = sum(abs(np.unravel_index(np.argmax(c), c.shape)[0] - r) <= SQUARE // 2 + 1
               and abs(np.unravel_index(np.argmax(c), c.shape)[1] - col) <= SQUARE // 2 + 1
               for c, (r, col) in zip(result.cams, centres))
    assert hits >= 0.8 * len(images), f"the map peaks on the square for {hits} of {len(images)}"


def test_a_box_region_is_explained_as_given(segmenter):
    model, images, _, _ = segmenter
    region = np.zeros((SIZE, SIZE), np.float32)
    region[4:20, 6:30] = 1
    result = Explainer(model, layer="features").explain_batch(images, 1, regions=region)
    expected = independent_region_cam(model, images, np.broadcast_to(region, (len(images), SIZE, SIZE)))
    np.testing.assert_allclose(result.cams, expected, rtol=1e-4, atol=1e-5 * max(expected.max(), 1e-12))
    assert np.array_equal(result.regions[0, 0], region > 0)


def test_what_segmentation_refuses(segmenter, tiny_model):
    model, images, _, _ = segmenter
    for options in ({"method": "scorecam"}, {"method": "guided-gradcam"}, {"aug_smooth": True}):
        with pytest.raises(UsageError, match="segmentation models are explained by the gradient methods"):
            Explainer(model, layer="features", **options)
    with pytest.raises(UsageError, match="a region applies to segmentation models"):
        Explainer(tiny_model).explain_batch(np.zeros((1, 32, 32, 3), np.float32), regions=np.ones((8, 8)))


def scene_on_disk(segmenter, tmp_path):
    """The segmenter saved as .keras, its first test scene as a 64 x 64 PNG, and a 20-pixel box around the
    square in that photo's pixels: (model path, photo path, box)."""
    model, images, _, centres = segmenter
    path = tmp_path / "segmenter.keras"
    model.save(path)
    photo = tmp_path / "scene.png"
    big = np.asarray(Image.fromarray(images[0].astype(np.uint8)).resize((64, 64), Image.NEAREST))
    Image.fromarray(big).save(photo)
    r, c = centres[0] * 2
    return path, photo, (c - 10, r - 10, c + 10, r + 10)


def test_cli_region_outline_and_record(segmenter, tmp_path, capsys):
    path, photo, box = scene_on_disk(segmenter, tmp_path)
    out = tmp_path / "out"
    assert main(["--model", str(path), "--layer", "features", str(photo), "-o", str(out), "--class-index", "1",
                 "--region", ",".join(map(str, box)), "--save-npy"]) == 0
    overlay = np.asarray(Image.open(out / "scene.png.png").convert("RGB"))
    white = np.all(overlay == 255, axis=-1)
    assert white.any() and white[box[1]:box[3], box[0]:box[2]].sum() == white.sum()  # the outline, on the box
    from gradcam.outputs.manifest import input_records, read_records

    (record,) = input_records(read_records(out / "manifest.jsonl"))
    assert record["settings"]["region"] == list(box) and record["class_index"] == 1
    assert main(["--model", str(path), str(photo), "-o", str(tmp_path / "o2"), "--evaluate"]) == 2
    assert "need a classifier" in capsys.readouterr().err


def test_cli_mask_is_the_region_of_its_pixels(segmenter, tiny_model_file, tmp_path, capsys):
    path, photo, box = scene_on_disk(segmenter, tmp_path)
    mask = np.zeros((32, 32), np.uint8)  # half the photo's size, same aspect: stretched over it
    mask[box[1] // 2 : box[3] // 2, box[0] // 2 : box[2] // 2] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    common = ["--model", str(path), "--layer", "features", str(photo), "--class-index", "1", "--save-npy"]
    assert main([*common, "-o", str(tmp_path / "box"), "--region", ",".join(map(str, box))]) == 0
    assert main([*common, "-o", str(tmp_path / "mask"), "--mask", str(tmp_path / "mask.png")]) == 0
    np.testing.assert_array_equal(np.load(tmp_path / "mask" / "scene.png.npy"),
                                  np.load(tmp_path / "box" / "scene.png.npy"))
    from gradcam.outputs.manifest import input_records, read_records

    (record,) = input_records(read_records(tmp_path / "mask" / "manifest.jsonl"))
    assert record["settings"]["mask"] == str(tmp_path / "mask.png") and record["settings"]["mask_file"]
    capsys.readouterr()
    # a rerun with the same mask file is up to date; a changed mask file redoes the photo
    assert main([*common, "-o", str(tmp_path / "mask"), "--mask", str(tmp_path / "mask.png")]) == 0
    assert "every output is up to date" in capsys.readouterr().out
    mask[:, :] = 0
    mask[: box[3] // 2, : box[2] // 2] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    assert main([*common, "-o", str(tmp_path / "mask"), "--mask", str(tmp_path / "mask.png")]) == 0
    assert "1 explained (1 redone" in capsys.readouterr().out
    # a mask of another aspect ratio fails that photo, in one line; a blank mask, or a mask with a box, or on
    # a classifier, is a usage error before anything runs
    Image.fromarray(np.full((32, 48), 255, np.uint8)).save(tmp_path / "wide.png")
    assert main([*common, "-o", str(tmp_path / "wide"), "--mask", str(tmp_path / "wide.png")]) == 1
    assert "error: the mask (48x32) does not fit this 64x64 photo (another aspect ratio)" in capsys.readouterr().out
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "blank.png")
    for flags, message in ((["--mask", str(tmp_path / "blank.png")], "has no pixel set"),
                           (["--mask", str(tmp_path / "mask.png"), "--region", "0,0,4,4"], "either --region or --mask"),
                           (["--mask", str(tmp_path / "missing.png")], "cannot read the mask")):
        assert main([*common, "-o", str(tmp_path / "x"), *flags]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1
    assert main(["--model", str(tiny_model_file), str(photo), "-o", str(tmp_path / "x"), "--mask",
                 str(tmp_path / "mask.png")]) == 2
    assert capsys.readouterr().err.strip() == ("gradcam: error: --mask applies to segmentation models (output "
                                               "(batch, height, width, classes))")


def test_explain_takes_a_box_or_a_mask_as_region(segmenter, tiny_model):
    import gradcam

    model, images, _, _ = segmenter
    mask = np.zeros((SIZE, SIZE), bool)
    mask[4:20, 6:30] = True
    photo = np.rint(images[0]).astype(np.uint8)  # explain takes photos as uint8
    by_box = gradcam.explain(model, photo, layer="features", class_index=1, region=(6, 4, 30, 20))
    by_mask = gradcam.explain(model, photo, layer="features", class_index=1, region=mask)
    np.testing.assert_array_equal(by_box.heatmap, by_mask.heatmap)
    as_list = gradcam.explain(model, photo, layer="features", class_index=1, region=[6, 4, 30, 20])
    np.testing.assert_array_equal(as_list.heatmap, by_box.heatmap)
    expected = independent_region_cam(model, photo[None].astype(np.float32), mask[None].astype(np.float32))[0]
    from gradcam.explainers.heatmap import heatmap_at

    np.testing.assert_allclose(by_mask.heatmap, heatmap_at(expected, (SIZE, SIZE))[0], atol=1e-4)
    with pytest.raises(UsageError, match="region applies to segmentation models"):
        gradcam.explain(tiny_model, np.zeros((32, 32, 3), np.uint8), region=(0, 0, 4, 4))


def test_an_empty_region_is_an_error_not_a_blank_map(segmenter, tmp_path, capsys):
    import gradcam

    path, photo, _ = scene_on_disk(segmenter, tmp_path)
    dark = tmp_path / "dark.png"
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(dark)  # no square: no pixel of class 1
    common = ["--model", str(path), "--layer", "features", "--class-index", "1", "-o", str(tmp_path / "out")]
    assert main([*common, str(dark), str(photo)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert any("dark.png: error: the model assigns no pixel to class 1" in line for line in lines), lines
    assert any("scene.png: class (1), p=" in line for line in lines), lines
    # a box between the cells' centres (the 64 x 64 photo's 32 x 32 output: centres at odd pixels)
    assert main([*common, str(photo), "--region", "2,2,3,3", "--overwrite"]) == 1
    assert "the region covers no cell of the model's 32x32 output" in capsys.readouterr().out
    model = segmenter[0]
    with pytest.raises(gradcam.HeatmapError, match="assigns no pixel to class 1"):
        gradcam.explain(model, np.zeros((32, 32, 3), np.uint8), layer="features", class_index=1)
