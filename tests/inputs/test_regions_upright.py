"""--region and --mask refer to the photo as it is shown: an EXIF-rotated photo's box is placed on its
upright pixels, exactly as on the same photo stored upright."""
from __future__ import annotations

import numpy as np
import pytest
from conftest import keras
from PIL import Image, ImageOps

from gradcam.cli import main
from gradcam.inputs.images import image_size


@pytest.fixture(scope="module")
def segmenter_file(tmp_path_factory):
    """An untrained per-pixel softmax (background, object) on 32 x 32 inputs: where the box lands is what counts."""
    k = keras()
    k.utils.set_random_seed(5)
    inputs = k.Input((32, 32, 3))
    x = k.layers.Rescaling(1 / 255.0)(inputs)
    x = k.layers.Conv2D(8, 3, padding="same", activation="relu", name="features")(x)
    outputs = k.layers.Conv2D(2, 1, activation="softmax", name="segments")(x)
    path = tmp_path_factory.mktemp("seg") / "segmenter.keras"
    k.Model(inputs, outputs).save(path)
    return path


@pytest.fixture
def upright_and_rotated(tmp_path):
    """The same 96 x 64 picture twice: stored upright, and stored turned with EXIF orientation 6 (or 8)."""
    rng = np.random.default_rng(3)
    upright = Image.fromarray(rng.integers(0, 256, (64, 96, 3), dtype=np.uint8))
    upright_path = tmp_path / "upright.png"
    upright.save(upright_path)
    for orientation, stored in ((6, upright.transpose(Image.Transpose.ROTATE_90)),
                                (8, upright.transpose(Image.Transpose.ROTATE_270))):
        exif = Image.Exif()
        exif[0x0112] = orientation
        rotated_path = tmp_path / f"rotated{orientation}.png"
        stored.save(rotated_path, exif=exif)
        with Image.open(rotated_path) as image:
            shown = ImageOps.exif_transpose(image)
            if shown.size == upright.size and np.array_equal(np.asarray(shown), np.asarray(upright)):
                return upright_path, rotated_path
    raise AssertionError("could not write an EXIF-rotated copy")


def test_image_size_is_the_upright_size(upright_and_rotated):
    upright, rotated = upright_and_rotated
    assert Image.open(rotated).size == (64, 96)  # stored turned
    assert image_size(upright) == image_size(rotated) == (96, 64)


@pytest.mark.parametrize("how", ["region", "mask"])
def test_a_region_on_an_exif_rotated_photo_lands_where_it_does_on_the_upright_photo(
        segmenter_file, upright_and_rotated, tmp_path, how):
    upright, rotated = upright_and_rotated
    if how == "region":
        option = ["--region", "10,8,60,40"]
    else:
        mask = np.zeros((32, 48), np.uint8)  # half the upright photo's size
        mask[4:20, 5:30] = 255
        Image.fromarray(mask).save(tmp_path / "mask.png")
        option = ["--mask", str(tmp_path / "mask.png")]
    maps = []
    for name, photo in (("upright", upright), ("rotated", rotated)):
        out = tmp_path / name
        assert main(["--model", str(segmenter_file), str(photo), "-o", str(out), "--class-index", "1",
                     "--save-npy", *option]) == 0
        maps.append(np.load(out / f"{photo.name}.npy"))
    assert maps[0].shape == maps[1].shape == (64, 96)
    np.testing.assert_array_equal(maps[1], maps[0])
