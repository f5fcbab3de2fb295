"""The GIL-free PNG encoder (Up filter in NumPy + ISA-L deflate): Pillow reads its files back to exactly
the pixels given, every chunk is well formed, and encode_png picks it, fpng or Pillow by size and by
what is installed."""
from __future__ import annotations

import io
import struct
import sys
import zlib

import numpy as np
import pytest
from PIL import Image

from gradcam.outputs import png, render

SIZES = [(1, 1), (1, 7), (7, 1), (5, 3), (37, 101), (480, 640), (481, 641), (300, 4001), (4001, 3)]


def needs_isal():
    if png.isal_zlib() is None:
        pytest.skip("python-isal is not installed on this platform: the fallbacks are tested below")


def photo_like(height, width, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (max(1, height // 8), max(1, width // 8), 3), np.uint8)
    smooth = np.asarray(Image.fromarray(small).resize((width, height), Image.BILINEAR))
    noise = rng.integers(0, 256, (height, width, 3), np.uint8)
    return np.where(rng.random((height, width, 1)) < 0.2, noise, smooth)


def decoded(data: bytes) -> np.ndarray:
    image = Image.open(io.BytesIO(data))
    image.load()
    assert image.format == "PNG" and image.mode == "RGB"
    return np.asarray(image)


def chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """(type, data) of each chunk, each CRC checked with zlib's own crc32."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    found, at = [], 8
    while at < len(data):
        (length,) = struct.unpack(">I", data[at : at + 4])
        kind, body = data[at + 4 : at + 8], data[at + 8 : at + 8 + length]
        (crc,) = struct.unpack(">I", data[at + 8 + length : at + 12 + length])
        assert crc == zlib.crc32(kind + body), kind
        found.append((kind, body))
        at += 12 + length
    return found


@pytest.mark.parametrize("height, width", SIZES)
def test_pillow_reads_back_the_exact_pixels(height, width):
    needs_isal()
    image = photo_like(height, width, seed=height + width)
    np.testing.assert_array_equal(decoded(png.encode_gil_free(image)), image)


@pytest.mark.parametrize("block_bytes", [1, 100, 3 * 41 + 1, 5000])  # a row a block, a row and a part, ...
def test_blocks_of_rows_join_up(monkeypatch, block_bytes):
    """The rows deflated a block at a time: each block's first row filtered against the last of the one
    before, whatever the block size."""
    needs_isal()
    monkeypatch.setattr(png, "BLOCK_BYTES", block_bytes)
    image = photo_like(53, 41, seed=block_bytes)
    data = png.encode_gil_free(image)
    np.testing.assert_array_equal(decoded(data), image)
    # the filtered rows by hand: the filter byte 2 ("Up"), then each byte minus the one above it
    idat = b"".join(body for kind, body in chunks(data) if kind == b"IDAT")
    rows = np.frombuffer(zlib.decompress(idat), np.uint8).reshape(53, 1 + 41 * 3)
    assert np.all(rows[:, 0] == 2)
    flat = image.reshape(53, -1).astype(np.int16)
    above = np.vstack([np.zeros((1, flat.shape[1]), np.int16), flat[:-1]])
    np.testing.assert_array_equal(rows[:, 1:], (flat - above) % 256)


def test_the_chunks_are_well_formed():
    needs_isal()
    data = png.encode_gil_free(photo_like(9, 13))
    found = chunks(data)
    assert [kind for kind, _ in found] == [b"IHDR", b"IDAT", b"IEND"]
    assert struct.unpack(">IIBBBBB", found[0][1]) == (13, 9, 8, 2, 0, 0, 0)
    assert found[2][1] == b""


@pytest.mark.parametrize("pixels", [0, 255])
def test_extreme_values_and_a_view_are_encoded_and_left_unchanged(pixels):
    needs_isal()
    image = np.full((40, 60, 3), pixels, np.uint8)
    image[::3, ::5] = 255 - pixels
    view = image[:, ::2]  # not contiguous
    before = image.copy()
    np.testing.assert_array_equal(decoded(png.encode_gil_free(view)), view)
    np.testing.assert_array_equal(image, before)


def test_encode_png_picks_the_encoder_by_size(monkeypatch):
    """From GIL_FREE_FROM_PIXELS pixels on the GIL-free encoder, below it fpng (where installed); the
    same pixels either way."""
    needs_isal()
    monkeypatch.setattr(png, "GIL_FREE_FROM_PIXELS", 1000)
    small, large = photo_like(20, 49), photo_like(20, 50)  # 980 and 1000 pixels
    assert render.encode_png(large) == png.encode_gil_free(large)
    fpng = render.fast_png_encoder()
    if fpng is not None:
        assert render.encode_png(small) == fpng.from_ndarray(np.ascontiguousarray(small))
    for image in (small, large):
        np.testing.assert_array_equal(decoded(render.encode_png(image)), image)
        # a zlib level asked for always goes through Pillow, at any size
        assert render.encode_png(image, 6) == render.encode_png(image, 6) != png.encode_gil_free(image)


def test_without_isal_the_large_images_go_through_fpng_or_pillow(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "isal", None)  # import isal -> ImportError, as without the wheel
    png.isal_zlib.cache_clear()
    try:
        assert png.isal_zlib() is None
        image = photo_like(30, 40)
        assert png.encode_gil_free(image) is None
        monkeypatch.setattr(png, "GIL_FREE_FROM_PIXELS", 0)
        np.testing.assert_array_equal(decoded(render.encode_png(image)), image)
        monkeypatch.setattr(render, "fast_png_encoder", lambda: None)  # and without fpng: Pillow, at level 1
        assert render.encode_png(image) == render.encode_png(image, render.FALLBACK_ZLIB_LEVEL)
        render.save_png(tmp_path / "x.png", image)
        np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "x.png").convert("RGB")), image)
    finally:
        png.isal_zlib.cache_clear()
