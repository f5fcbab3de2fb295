"""The faster decode (Pillow's image resized for the model and for --max-size as it is, not turned into
an array and back) gives exactly the photo and model input of the path it replaced, kept here as the
reference, for every kind of input."""
from __future__ import annotations

import glob
import os
import warnings

import numpy as np
import pytest
from conftest import dicom_file, write_photo
from PIL import Image, ImageOps

from gradcam.errors import ImageError
from gradcam.inputs.images import load_for_model, load_image

SAMPLES = os.path.join(os.path.dirname(__file__), "..", "..", "sample_images")


# --- the decode as it was (gradcam 0.4.0): Pillow -> uint8 array -> Pillow again for each resize ---
def reference_photo(path) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with Image.open(path) as image:
            image.seek(0)
            image.load()
            try:
                turned = image.getexif().get(0x0112, 1) not in (1, None)
            except Exception:
                turned = False
            upright = ImageOps.exif_transpose(image) if turned else image
            return reference_pil_to_rgb(upright)


def reference_pil_to_rgb(image) -> np.ndarray:
    mode = image.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        values = np.asarray(image, dtype=np.float64)
        if mode == "F" and values.size and np.nanmax(values) <= 1.0:
            scale = 255.0
        elif mode.startswith("I;16") or (values.size and np.nanmax(values) > 255):
            scale = 255.0 / 65535.0
        else:
            scale = 1.0
        grey = np.clip(np.nan_to_num(values * scale), 0, 255).round().astype(np.uint8)
        return np.ascontiguousarray(np.repeat(grey[:, :, None], 3, axis=2))
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode in ("P", "L", "RGB") and "transparency" in image.info):
        rgba = image.convert("RGBA")
        rgb_image = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba).convert("RGB")
    else:
        rgb_image = image.convert("RGB")
    return np.ascontiguousarray(np.asarray(rgb_image, dtype=np.uint8))


def reference_load_for_model(path, size, max_size=None):
    photo = reference_photo(path)
    height, width = size
    model_input = np.asarray(Image.fromarray(photo).resize((width, height), Image.BILINEAR), dtype=np.float32)
    if max_size is not None and max(photo.shape[:2]) > max_size:
        scale = max_size / max(photo.shape[:2])
        smaller = (max(1, round(photo.shape[1] * scale)), max(1, round(photo.shape[0] * scale)))
        photo = np.asarray(Image.fromarray(photo).resize(smaller, Image.BILINEAR))
    return photo, model_input


# --- a corpus of every kind of input ---
def smooth(size, seed=0) -> np.ndarray:
    """A photo-like (W, H) image: random colours at 1/8 scale, bilinear upscaled (uint8 (H, W, 3))."""
    width, height = size
    small = np.random.default_rng(seed).integers(0, 256, (max(1, height // 8), max(1, width // 8), 3), np.uint8)
    return np.asarray(Image.fromarray(small).resize((width, height), Image.BILINEAR))


def oriented(path, orientation, mode="RGB", **save):
    image = Image.fromarray(smooth((45, 31), orientation)).convert(mode)
    exif = image.getexif()
    exif[0x0112] = orientation
    image.save(path, exif=exif.tobytes(), **save)
    return path


def deep(path, dtype, mode=None, peak=65535):
    values = (np.linspace(0, 1, 37 * 23).reshape(23, 37) * peak).astype(dtype)
    Image.fromarray(values, mode).save(path)
    return path


def palette_with_transparency(path):
    image = Image.fromarray(smooth((30, 20))).convert("P")
    image.save(path, transparency=3)
    return path


def grey_dicom(path):
    dicom_file(path, np.random.default_rng(4).integers(0, 4000, (24, 40)).astype(np.uint16),
               WindowCenter=2000, WindowWidth=3000)
    return path


CORPUS = {
    "rgb.png": lambda p: write_photo(p, (41, 29)),
    "grey.png": lambda p: write_photo(p, (41, 29), "L"),
    "palette.png": lambda p: write_photo(p, (41, 29), "P"),
    "palette-transparent.png": palette_with_transparency,
    "rgba.png": lambda p: write_photo(p, (41, 29), "RGBA"),
    "la.png": lambda p: write_photo(p, (41, 29), "LA"),
    "bilevel.png": lambda p: write_photo(p, (41, 29), "1"),
    "deep16.png": lambda p: deep(p, np.uint16),
    "int32.tiff": lambda p: deep(p, np.int32, "I", 1000),
    "float.tiff": lambda p: deep(p, np.float32, "F", 1.0),
    "rgb.bmp": lambda p: write_photo(p, (41, 29)),
    "rgb.ppm": lambda p: write_photo(p, (41, 29)),  # raw RGB: Pillow maps the file into memory
    "rgb.tiff": lambda p: write_photo(p, (41, 29)),  # uncompressed: mapped too
    "rgb.webp": lambda p: write_photo(p, (41, 29), lossless=True),
    "anim.gif": lambda p: write_photo(p, (41, 29), "P", save_all=True,
                                      append_images=[Image.new("P", (41, 29), 3)]),
    "rotated6.jpg": lambda p: oriented(p, 6, quality=90),
    "rotated3.jpg": lambda p: oriented(p, 3, quality=90),
    "mirrored5.jpg": lambda p: oriented(p, 5, quality=90),
    "rotated-grey8.jpg": lambda p: oriented(p, 8, "L", quality=90),
    "rotated8.png": lambda p: oriented(p, 8),
    "upright1.jpg": lambda p: oriented(p, 1, quality=90),
    "cmyk.jpg": lambda p: write_photo(p, (41, 29), "CMYK"),
    "progressive.jpg": lambda p: Image.fromarray(smooth((203, 151))).save(p, quality=85, progressive=True),
    "grey.jpg": lambda p: Image.fromarray(smooth((99, 67))).convert("L").save(p, quality=80),
    "q95-444.jpg": lambda p: Image.fromarray(smooth((61, 43))).save(p, quality=95, subsampling=0),
    "q75-422.jpg": lambda p: Image.fromarray(smooth((61, 43))).save(p, quality=75, subsampling=1),
    "q40-420-odd.jpg": lambda p: Image.fromarray(smooth((17, 9))).save(p, quality=40, subsampling=2),
    "noise-420.jpg": lambda p: write_photo(p, (33, 35), quality=90),
    "one-pixel.jpg": lambda p: Image.fromarray(smooth((1, 1))).save(p),
    "keep-rgb.jpg": lambda p: Image.fromarray(smooth((40, 24))).save(p, keep_rgb=True),
}


def make(tmp_path, name):
    path = tmp_path / name
    made = CORPUS[name](path)
    return made if made is not None else path


@pytest.fixture(params=["pillow", "fast"])
def resize_path(request, monkeypatch):
    """Each test runs twice: decoded and resized by Pillow alone, and through the fast paths (JPEGs decoded by
    inputs.jpeg_fast where it takes them, the model input made by the compiled inputs.resize_fast)."""
    from gradcam.inputs import jpeg_fast, resize_fast

    calls = []
    if request.param == "fast":
        resize_fast.KERNEL.compile()
        assert resize_fast.KERNEL.compiled is not None, resize_fast.KERNEL.error
        kernel = resize_fast.KERNEL.compiled
        monkeypatch.setattr(resize_fast.KERNEL, "compiled", lambda *args: calls.append(1) or kernel(*args))
    else:
        monkeypatch.setattr(resize_fast.KERNEL, "compiled", None)
        monkeypatch.setenv(jpeg_fast.DISABLE_ENV, "1")
    yield request.param
    assert bool(calls) == (request.param == "fast")  # the path named was the path taken


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_the_same_photo_and_model_input_as_before(tmp_path, name, resize_path):
    path = make(tmp_path, name)
    for size, max_size in (((24, 32), None), ((7, 5), 20), ((224, 224), 1000)):
        photo, model_input = load_for_model(path, size, max_size=max_size)
        expected_photo, expected_input = reference_load_for_model(path, size, max_size)
        assert photo.dtype == np.uint8 and model_input.dtype == np.float32
        np.testing.assert_array_equal(photo, expected_photo)
        np.testing.assert_array_equal(model_input, expected_input)
    np.testing.assert_array_equal(load_image(path), reference_photo(path))


def test_a_dicom_file_is_read_as_before(tmp_path):
    """Its windowed values, rounded for the photo and unrounded to the model (resized one channel at a
    time in Pillow's float mode), as before."""
    from gradcam.inputs.medical import read_dicom

    path = grey_dicom(tmp_path / "ct.dcm")
    values = read_dicom(path, None, 10**8)[0]
    photo, model_input = load_for_model(path, (12, 9), max_size=30)
    rounded = np.rint(np.clip(values, 0, 255)).astype(np.uint8)
    scale = 30 / 40
    smaller = Image.fromarray(rounded).resize((30, round(24 * scale)), Image.BILINEAR)
    np.testing.assert_array_equal(photo, np.repeat(np.asarray(smaller)[:, :, None], 3, axis=2))
    resized = np.asarray(Image.fromarray(values.astype(np.float32), "F").resize((9, 12), Image.BILINEAR))
    np.testing.assert_array_equal(model_input, np.repeat(resized[:, :, None], 3, axis=2))


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(SAMPLES, "*.jpg"))))
def test_sample_photos_as_before(path, resize_path):
    for max_size in (300, None):
        photo, model_input = load_for_model(path, (224, 224), max_size=max_size)
        expected_photo, expected_input = reference_load_for_model(path, (224, 224), max_size)
        np.testing.assert_array_equal(photo, expected_photo)
        np.testing.assert_array_equal(model_input, expected_input)
    np.testing.assert_array_equal(load_image(path), reference_photo(path))


def test_damaged_jpegs_as_before(tmp_path):
    data = tmp_path / "whole.jpg"
    Image.fromarray(smooth((64, 48))).save(data, quality=90)
    whole = data.read_bytes()
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(ImageError, match="not a readable image"):
        load_for_model(truncated, (8, 8))
    # bytes between the headers and the scan: libjpeg warns ("extraneous bytes"), Pillow decodes anyway
    scan = whole.index(b"\xff\xda")
    garbled = tmp_path / "garbled.jpg"
    garbled.write_bytes(whole[:scan] + b"\x00\x01\x02" + whole[scan:])
    photo, model_input = load_for_model(garbled, (8, 8))
    expected_photo, expected_input = reference_load_for_model(garbled, (8, 8))
    np.testing.assert_array_equal(photo, expected_photo)
    np.testing.assert_array_equal(model_input, expected_input)


def test_the_callers_pil_image_is_not_changed(tmp_path):
    from gradcam.inputs.images import pil_to_rgb

    image = Image.fromarray(smooth((20, 10)))
    before = np.asarray(image).copy()
    rgb = pil_to_rgb(image)
    assert not np.shares_memory(rgb, np.asarray(image))
    np.testing.assert_array_equal(np.asarray(image), before)
    np.testing.assert_array_equal(rgb, before)


@pytest.mark.parametrize("size", [(1, 1), (1, 9), (9, 1), (3, 5), (101, 77), (640, 480), (4001, 3)])
def test_pixels_packed_in_one_call_are_numpys_bytes(size):
    """Pillow's raw RGB encoder in one call gives the bytes np.asarray gets from tobytes' 64 KB pieces: the same
    array, read-only as before; any other mode, or an encoder that does not answer as expected, is left to
    np.asarray."""
    from gradcam.inputs import images

    rgb = np.random.default_rng(size[0] * 7 + size[1]).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    image = Image.fromarray(rgb)
    packed = images._packed_rgb(image)
    assert packed.dtype == np.uint8 and packed.shape == rgb.shape and np.array_equal(packed, np.asarray(image))
    assert not packed.flags.writeable and not np.asarray(image).flags.writeable
    assert images._packed_rgb(image.convert("L")) is None and images._packed_rgb(image.convert("RGBA")) is None


def test_an_unexpected_pillow_encoder_falls_back_to_numpy(tmp_path, monkeypatch):
    """An encoder that stops short of the whole image in one call (another Pillow), or that cannot be made."""
    from gradcam.inputs import images

    path = write_photo(tmp_path / "p.jpg", (300, 200), seed=4)
    expected = load_for_model(path, (17, 19))
    real = Image._getencoder

    class Partial:  # hands out the first 64 KB only, as to tobytes' calls, and says there is more
        def __init__(self, *args):
            self.encoder = real(*args)

        def __getattr__(self, name):
            return getattr(self.encoder, name)

        def encode(self, size):
            done, status, data = self.encoder.encode(min(size, 65536))
            return done, (status if size <= 65536 else 0), data

    for broken in (Partial, lambda *args: (_ for _ in ()).throw(RuntimeError("another Pillow"))):
        monkeypatch.setattr(Image, "_getencoder", broken)
        assert images._packed_rgb(Image.open(path).convert("RGB")) is None
        monkeypatch.setattr(Image, "_getencoder", real if broken is not Partial else Partial)
        photo, model_input = load_for_model(path, (17, 19))
        assert np.array_equal(photo, expected[0]) and np.array_equal(model_input, expected[1])
