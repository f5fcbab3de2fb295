"""Every kind of image file, bad files, and folder discovery."""
from __future__ import annotations

import io
import os

import numpy as np
import pytest
from conftest import write_photo
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from gradcam.errors import ImageError, UsageError
from gradcam.inputs.discovery import discover_inputs
from gradcam.inputs.images import load_image, resize_for_model


def check_rgb(array, size):
    assert array.dtype == np.uint8 and array.shape == (size[1], size[0], 3)


@pytest.mark.parametrize("name, mode", [
    ("grey.png", "L"), ("la.png", "LA"), ("palette.png", "P"), ("bilevel.png", "1"),
    ("photo.bmp", "RGB"), ("photo.tiff", "RGB"), ("photo.webp", "RGB"), ("UPPER.JPEG", "RGB"),
    ("with space ünïcödé.jpg", "RGB"), ("cmyk.jpg", "CMYK"),
])
def test_modes_and_formats(tmp_path, name, mode):
    path = write_photo(tmp_path / name, (40, 30), mode)
    check_rgb(load_image(path), (40, 30))


def test_grey_is_grey(tmp_path):
    path = tmp_path / "g.png"
    Image.fromarray(np.full((3, 4), 77, np.uint8), "L").save(path)
    assert np.all(load_image(path) == 77)


def test_rgba_composited_on_white(tmp_path):
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[0, 0] = (255, 0, 0, 255)  # opaque red
    rgba[1, 1] = (0, 0, 0, 0)  # fully transparent black -> white
    rgba[0, 1] = (0, 0, 0, 128)  # half black -> mid grey
    path = tmp_path / "a.png"
    Image.fromarray(rgba, "RGBA").save(path)
    rgb = load_image(path)
    assert tuple(rgb[0, 0]) == (255, 0, 0)
    assert tuple(rgb[1, 1]) == (255, 255, 255)
    assert all(120 <= v <= 135 for v in rgb[0, 1])


def test_palette_with_transparency_on_white(tmp_path):
    image = Image.new("P", (2, 1))
    image.putpalette([0, 0, 0, 10, 200, 30] + [0] * 762)
    image.putpixel((0, 0), 0)
    image.putpixel((1, 0), 1)
    image.info["transparency"] = 0
    path = tmp_path / "p.png"
    image.save(path, transparency=0)
    rgb = load_image(path)
    assert tuple(rgb[0, 0]) == (255, 255, 255) and tuple(rgb[0, 1]) == (10, 200, 30)


def test_16_bit_png_scaled(tmp_path):
    values = np.array([[0, 65535], [32896, 1000]], np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(values).save(path)
    rgb = load_image(path)
    np.testing.assert_array_equal(rgb[..., 0], [[0, 255], [128, 4]])


@pytest.mark.parametrize("ext", ["gif", "webp"])
def test_animation_first_frame(tmp_path, ext):
    frames = [Image.new("RGB", (8, 6), colour) for colour in ((250, 0, 0), (0, 0, 250))]
    path = tmp_path / f"anim.{ext}"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0, lossless=True)
    rgb = load_image(path)
    check_rgb(rgb, (8, 6))
    assert rgb[..., 0].mean() > 200 and rgb[..., 2].mean() < 50


@pytest.mark.parametrize("size", [(1, 1), (3000, 8), (8, 3000)])
def test_tiny_and_extreme_aspect(tmp_path, size):
    path = write_photo(tmp_path / "x.png", size)
    rgb = load_image(path)
    check_rgb(rgb, size)
    assert resize_for_model(rgb, (224, 224)).shape == (224, 224, 3)


def test_exif_orientation_applied(tmp_path):
    array = np.zeros((20, 40, 3), np.uint8)
    array[:, :20] = 255  # left half white, landscape 40x20
    image = Image.fromarray(array)
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90 CW to display
    path = tmp_path / "rotated.jpg"
    image.save(path, exif=exif.tobytes(), quality=95)
    rgb = load_image(path)
    assert rgb.shape == (40, 20, 3)  # upright: portrait
    assert rgb[:20].mean() > 200 and rgb[20:].mean() < 50  # white half is now on top


def test_resize_does_not_mutate(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (10, 12, 3), dtype=np.uint8)
    copy = rgb.copy()
    out = resize_for_model(rgb, (7, 5))
    assert out.shape == (7, 5, 3) and out.dtype == np.float32
    np.testing.assert_array_equal(rgb, copy)


def jpeg_bytes():
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buffer, "JPEG")
    return buffer.getvalue()


def bomb_png(width=60000, height=60000) -> bytes:
    """A tiny PNG whose header claims width x height pixels."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


@pytest.mark.parametrize("name, content, reason", [
    ("empty.jpg", b"", r"^empty file \(0 bytes\)$"),
    ("text.png", b"hello, I am text\n", "not a readable image"),
    ("page.jpg", b"<html><body>404</body></html>", "not a readable image"),
    ("random.bmp", bytes(np.random.default_rng(0).integers(0, 256, 500, dtype=np.uint8)), "not a readable image"),
    ("signature.png", b"\x89PNG\r\n\x1a\n", "not a readable image"),
    ("truncated.jpg", jpeg_bytes()[:300], "not a readable image"),
    ("bomb.png", bomb_png(), "too large"),
    # beyond Pillow's own bomb limit (2 x its MAX_IMAGE_PIXELS): said in --max-pixels' terms, not Pillow's
    ("huge.png", bomb_png(30000, 30000), r"^image is too large: 30000x30000 pixels is more than the limit of "
                                         r"100,000,000 pixels \(raise it with --max-pixels\)$"),
])
def test_bad_files_raise_image_error(tmp_path, name, content, reason):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ImageError, match=reason):
        load_image(path)


def test_max_pixels_can_be_raised(tmp_path):
    path = write_photo(tmp_path / "p.png", (50, 40))
    with pytest.raises(ImageError, match="too large"):
        load_image(path, max_pixels=1999)
    check_rgb(load_image(path, max_pixels=2000), (50, 40))


def valid_files() -> list[bytes]:
    rng = np.random.default_rng(1)
    out = []
    for fmt, mode in [("PNG", "RGB"), ("PNG", "RGBA"), ("PNG", "P"), ("PNG", "I;16"), ("JPEG", "RGB"),
                      ("JPEG", "CMYK"), ("GIF", "P"), ("BMP", "RGB"), ("TIFF", "RGB"), ("WEBP", "RGB"),
                      ("PNG", "1"), ("PNG", "LA")]:
        array = rng.integers(0, 256, (9, 13, 3), dtype=np.uint8)
        image = Image.fromarray(array)
        if mode == "I;16":
            image = Image.fromarray(rng.integers(0, 65535, (9, 13), dtype=np.uint16))
        elif mode != "RGB":
            image = image.convert(mode)
        buffer = io.BytesIO()
        image.save(buffer, fmt)
        out.append(buffer.getvalue())
    return out


VALID = valid_files()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.one_of(
    st.binary(max_size=2048),
    st.tuples(st.sampled_from(VALID), st.floats(0, 1)).map(lambda t: t[0][: int(len(t[0]) * t[1])]),
    st.tuples(st.sampled_from(VALID), st.integers(0, 10_000), st.binary(min_size=1, max_size=8)).map(
        lambda t: t[0][: t[1] % len(t[0])] + t[2] + t[0][t[1] % len(t[0]) + len(t[2]):]),
))
def test_loader_never_fails_otherwise(tmp_path, data):
    path = tmp_path / "fuzz.img"
    path.write_bytes(data)
    try:
        rgb = load_image(path, max_pixels=10_000)
    except ImageError:
        return
    assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3
    assert rgb.shape[0] * rgb.shape[1] <= 10_000


def test_discover_folders(tmp_path):
    root = tmp_path / "photos"
    for rel in ["a.jpg", "a.png", "b.JPEG", "sub/c.webp", "sub/deeper/d.bmp", ".hidden.jpg",
                ".cache/e.jpg", "notes.txt", "data.json"]:
        write_photo(root / rel) if rel.endswith(("jpg", "png", "JPEG", "webp", "bmp")) else (root / rel).write_text("x")
    flat = discover_inputs([root])
    assert [i.relative for i in flat] == ["a.jpg", "a.png", "b.JPEG"]
    deep = discover_inputs([root], recursive=True)
    assert [i.relative for i in deep] == ["a.jpg", "a.png", "b.JPEG", "sub/c.webp", "sub/deeper/d.bmp"]


def test_symlink_loop_terminates(tmp_path):
    root = tmp_path / "r"
    write_photo(root / "x" / "p.png")
    os.symlink(root, root / "x" / "loop")
    items = discover_inputs([root], recursive=True)
    assert [i.relative for i in items] == ["x/p.png"]


def test_output_names_never_clash(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    for path in (one / "a.jpg", two / "a.jpg", one / "A.JPG"):
        write_photo(path)
    items = discover_inputs([one / "a.jpg", two / "a.jpg", one / "A.JPG"])
    names = [i.relative for i in items]
    assert len({n.casefold() for n in names}) == 3 and names[0] == "a.jpg"
    assert discover_inputs([one / "a.jpg", two / "a.jpg", one / "A.JPG"]) == items  # same on rerun


def test_missing_path_is_usage_error(tmp_path):
    with pytest.raises(UsageError, match="no such file"):
        discover_inputs([tmp_path / "nope.jpg"])


def test_photo_bytes_reads_the_size_without_the_exif_turn(tmp_path):
    """width x height x 3 is the same turned or not: photo_bytes does not parse the EXIF block (image_size does)."""
    from PIL import Image

    from gradcam.inputs.headers import image_size, photo_bytes

    exif = Image.Exif()
    exif[0x0112] = 6  # a quarter turn
    Image.fromarray(np.zeros((48, 64, 3), np.uint8)).save(tmp_path / "turned.jpg", exif=exif.tobytes())
    assert image_size(tmp_path / "turned.jpg") == (48, 64)
    assert photo_bytes(tmp_path / "turned.jpg") == 64 * 48 * 3 == load_image(tmp_path / "turned.jpg").nbytes
    (tmp_path / "bad.jpg").write_bytes(b"not an image")
    assert photo_bytes(tmp_path / "bad.jpg") == 0 and image_size(tmp_path / "bad.jpg") is None
