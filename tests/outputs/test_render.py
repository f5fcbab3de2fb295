"""Colouring, overlays and atomic writes."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from gradcam.errors import UsageError
from gradcam.outputs.render import (
    colorize,
    get_colormap,
    overlay,
    panel_figure,
    save_npy,
    save_png,
)


def test_overlay_by_hand():
    photo = np.array([[[100, 0, 200]]], np.uint8)
    heatmap = np.array([[1.0]], np.float32)
    colour = colorize(heatmap, "gray")  # gray at 1.0 is white
    np.testing.assert_array_equal(colour, [[[255, 255, 255]]])
    # 0.6 * photo + 0.4 * 255 = (162, 102, 222)
    np.testing.assert_array_equal(overlay(photo, heatmap, 0.4, "gray"), [[[162, 102, 222]]])
    np.testing.assert_array_equal(overlay(photo, heatmap, 0.0, "gray"), photo)


@pytest.mark.parametrize("name", ["jet", "viridis", "gray", "magma"])
def test_colorize_matches_matplotlib_exactly(name):
    import matplotlib

    heatmap = np.random.default_rng(0).uniform(0, 1, (50, 60)).astype(np.float32)
    heatmap[0, :4] = [0.0, 1.0, 0.5, 255 / 256]
    expected = matplotlib.colormaps[name](heatmap, bytes=True)[:, :, :3]
    np.testing.assert_array_equal(colorize(heatmap, name), expected)


def test_overlay_refuses_mismatched_sizes():
    with pytest.raises(ValueError):
        overlay(np.zeros((2, 3, 3), np.uint8), np.zeros((3, 2), np.float32))


def test_unknown_colormap_suggests():
    with pytest.raises(UsageError, match="viridis"):
        get_colormap("viridiss")


def test_atomic_png_and_npy(tmp_path):
    image = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    save_png(tmp_path / "sub" / "x.png", image)
    save_npy(tmp_path / "sub" / "x.npy", np.full((5, 7), 0.5))
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "sub" / "x.png").convert("RGB")), image)
    loaded = np.load(tmp_path / "sub" / "x.npy")
    assert loaded.dtype == np.float32 and loaded.shape == (5, 7)
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == ["x.npy", "x.png"]  # no temp files left


def test_failed_write_leaves_nothing(tmp_path, monkeypatch):
    import gradcam.outputs.render as render

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(render.os, "replace", broken_replace)
    with pytest.raises(OSError):
        save_png(tmp_path / "y.png", np.zeros((4, 4, 3), np.uint8))
    assert list(tmp_path.iterdir()) == []


def test_atomic_writes_make_missing_folders_keep_the_umask_and_its_mode(tmp_path):
    """The mode is 0o666 less the umask; the umask is unchanged after many writes from several threads at once
    (each reads it by setting it and back); a missing folder is made, a file in its way is an error."""
    import os
    import threading

    from gradcam.outputs.render import write_atomic

    previous = os.umask(0o027)
    try:
        threads = [threading.Thread(target=lambda n=n: [write_atomic(tmp_path / f"t{n}" / "deep" / f"{i}.bin",
                                                                     bytes([n, i % 256]) * 1000) for i in range(60)])
                   for n in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert os.umask(0o027) == 0o027
    finally:
        os.umask(previous)
    files = sorted(tmp_path.rglob("*.bin"))
    assert len(files) == 360 and not list(tmp_path.rglob("*.part"))
    assert {f.stat().st_mode & 0o777 for f in files} == {0o640}
    assert (tmp_path / "t3" / "deep" / "7.bin").read_bytes() == bytes([3, 7]) * 1000
    (tmp_path / "blocked").write_text("a file where a folder should be")
    with pytest.raises(OSError):
        write_atomic(tmp_path / "blocked" / "x.png", b"data")
    assert (tmp_path / "blocked").read_text() == "a file where a folder should be"


def test_panel_has_both_images_side_by_side():
    photo = np.zeros((60, 80, 3), np.uint8)
    photo[:, :, 0] = 255  # red photo
    overlay = np.zeros((60, 80, 3), np.uint8)
    overlay[:, :, 2] = 255  # blue overlay
    figure = panel_figure(photo, overlay, "tabby (53.0%) · layer block5_conv4 · gradcam")
    assert figure.dtype == np.uint8 and figure.shape[1] >= 900
    middle = figure[figure.shape[0] // 2]
    left, right = middle[: len(middle) // 2], middle[len(middle) // 2 :]
    red = (left[:, 0] > 200) & (left[:, 2] < 60)
    blue = (right[:, 2] > 200) & (right[:, 0] < 60)
    assert red.sum() > 100 and blue.sum() > 100 and not ((right[:, 0] > 200) & (right[:, 2] < 60)).any()


@pytest.mark.parametrize("alpha", [0.0, 0.4, 0.77, 1.0])
@pytest.mark.parametrize("colormap", ["jet", "viridis", "gray"])
@pytest.mark.parametrize("block_pixels", [1 << 20, 100])  # one block, and blocks of 1 row
def test_in_place_overlay_equals_the_plain_formula(alpha, colormap, block_pixels, monkeypatch):
    from gradcam.outputs import colour

    monkeypatch.setattr(colour, "_BLOCK_PIXELS", block_pixels)
    rng = np.random.default_rng(int(alpha * 100))
    photo = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    heatmap = rng.uniform(0, 1, (37, 53)).astype(np.float32)
    heatmap[0, :3] = [0.0, 1.0, 0.5]
    colour = colorize(heatmap, colormap).astype(np.float32)
    expected = np.clip(np.rint((1.0 - alpha) * photo.astype(np.float32) + alpha * colour), 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(overlay(photo, heatmap, alpha, colormap), expected)


def test_png_compression_level_changes_size_not_pixels(tmp_path):
    rng = np.random.default_rng(0)
    image = np.repeat(rng.integers(0, 256, (60, 1, 3), dtype=np.uint8), 80, axis=1)  # compressible
    sizes = {}
    for level in (0, 1, 9):
        save_png(tmp_path / f"l{level}.png", image, level)
        sizes[level] = (tmp_path / f"l{level}.png").stat().st_size
        np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / f"l{level}.png").convert("RGB")), image)
    assert sizes[0] > sizes[1] >= sizes[9]


PNG_SIZES = [(1, 1), (1, 7), (5, 3), (37, 101), (480, 640), (481, 641), (300, 4001)]


@pytest.mark.parametrize("height, width", PNG_SIZES)
def test_fast_png_decodes_to_the_pixels_of_the_pillow_path(tmp_path, height, width):
    """fpng's PNG (the default) and matplotlib/Pillow's (the fallback, or any --png-compression level):
    Pillow reads both back to exactly the overlay's pixels, odd widths and one-pixel images included."""
    from gradcam.outputs.render import encode_png, fast_png_encoder

    if fast_png_encoder() is None:
        pytest.skip("fpng is not installed on this platform: the Pillow path is tested below")
    rng = np.random.default_rng(height * 10_000 + width)
    photo = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    heatmap = rng.random((height, width)).astype(np.float32)
    image = overlay(photo, heatmap, 0.4, "jet")
    fast = encode_png(image)
    slow = encode_png(image, 1)
    assert fast != slow  # two encoders really ran
    for data in (fast, slow):
        decoded = Image.open(io.BytesIO(data))
        decoded.load()
        assert decoded.format == "PNG" and decoded.size == (width, height)
        np.testing.assert_array_equal(np.asarray(decoded.convert("RGB")), image)


@pytest.mark.parametrize("height, width", [(1, 65535), (1, 65536), (1, 99_999), (99_999, 1), (2, 49_999)])
def test_a_side_of_65536_pixels_or_more_is_not_written_modulo_65536(height, width):
    """fpng's header holds 16-bit sides, so under 100,000 pixels (fpng's share) a 1 x 99,999 overlay came back
    1 x 34,463 and a 1 x 65,536 one would not open: such images go to another encoder."""
    from gradcam.outputs.render import encode_png

    image = np.random.default_rng(width).integers(0, 256, (height, width, 3), dtype=np.uint8)
    decoded = Image.open(io.BytesIO(encode_png(image)))
    decoded.load()
    assert decoded.size == (width, height)
    np.testing.assert_array_equal(np.asarray(decoded.convert("RGB")), image)


def test_without_fpng_pngs_go_through_pillow_at_level_1(tmp_path, monkeypatch):
    from gradcam.outputs import render

    image = np.random.default_rng(3).integers(0, 256, (33, 47, 3), dtype=np.uint8)
    monkeypatch.setattr(render, "fast_png_encoder", lambda: None)  # as on a platform without the wheel
    data = render.encode_png(image)
    assert data == render.encode_png(image, render.FALLBACK_ZLIB_LEVEL)
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(data)).convert("RGB")), image)
    render.save_png(tmp_path / "x.png", image)
    assert (tmp_path / "x.png").read_bytes() == data


def test_a_run_writes_the_same_pixels_with_and_without_fpng(tmp_path, tiny_model_file, monkeypatch):
    from conftest import assert_same_outputs, write_photo

    from gradcam.outputs import render
    from gradcam.cli import main

    photos = tmp_path / "photos"
    for i, size in enumerate([(64, 48), (33, 17), (101, 77)]):
        write_photo(photos / f"p{i}.png", size, seed=i)
    assert main(["--model", str(tiny_model_file), str(photos), "-o", str(tmp_path / "fast"), "--panel"]) == 0
    monkeypatch.setattr(render, "fast_png_encoder", lambda: None)
    assert main(["--model", str(tiny_model_file), str(photos), "-o", str(tmp_path / "slow"), "--panel"]) == 0
    assert len(assert_same_outputs(tmp_path / "fast", tmp_path / "slow")) == 3


@pytest.mark.parametrize("alpha, colormap", [(0.4, "jet"), (0.73, "viridis"), (1.0, "gray"), (0.0, "turbo")])
def test_the_one_pass_uint8_blend_equals_the_float32_formula_bit_for_bit(alpha, colormap):
    """The blend table gives exactly what the float32 formula gives pixel by pixel, every photo value
    against every colour index included."""
    from gradcam.outputs.colour import _colour_index, _scaled_table

    rng = np.random.default_rng(5)
    photo = np.repeat(np.arange(256, dtype=np.uint8)[None, :, None], 3, axis=2).repeat(40, axis=0)  # every value
    photo = np.concatenate([photo, rng.integers(0, 256, (17, 256, 3), dtype=np.uint8)])
    heatmap = np.linspace(0, 1, photo.shape[0] * 256, dtype=np.float32).reshape(photo.shape[:2])
    table = _scaled_table(colormap, alpha)
    expected = photo.astype(np.float32) * np.float32(1.0 - alpha) + np.take(
        table, _colour_index(heatmap, len(table)), axis=0)
    expected = np.clip(np.rint(expected), 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(overlay(photo, heatmap, alpha, colormap), expected)


def test_draw_outline_by_hand():
    from gradcam.outputs.render import draw_outline

    image = np.zeros((8, 8, 3), np.uint8)
    region = np.zeros((4, 4), bool)
    region[1:3, 1:3] = True  # photo rows and columns 2-5
    out = draw_outline(image, region, (255, 0, 0))
    red = np.all(out == (255, 0, 0), axis=-1)
    expected = np.zeros((8, 8), bool)
    expected[2:6, 2:6] = True
    expected[3:5, 3:5] = False  # the interior stays as it was
    np.testing.assert_array_equal(red, expected)
    assert not draw_outline(image, np.zeros((4, 4), bool)).any() and not image.any()  # not changed in place


def test_an_atomic_write_never_opens_an_existing_file_or_link_in_its_temporary_name(tmp_path, monkeypatch):
    """The temporary file is created exclusively (O_EXCL): a link planted under the name it draws first is
    neither followed nor replaced; the next name is drawn."""
    import os

    from gradcam.outputs.render import write_atomic

    draws = iter([b"\x01" * 6, b"\x01" * 6, b"\x02" * 6])
    monkeypatch.setattr(os, "urandom", lambda n: next(draws))
    target = tmp_path / "elsewhere.txt"
    target.write_text("keep me")
    planted = tmp_path / f".a.png.{'01' * 6}.part"
    planted.symlink_to(target)
    write_atomic(tmp_path / "a.png", b"data")
    assert (tmp_path / "a.png").read_bytes() == b"data" and target.read_text() == "keep me"
    assert planted.is_symlink() and sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["a.png", "elsewhere.txt", planted.name])
