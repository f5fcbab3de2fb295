"""Sizes read from a file's first bytes (inputs.headers): the same as Pillow's, for photo_bytes on the main thread."""
from __future__ import annotations

import io

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from gradcam.inputs import headers
from gradcam.inputs.headers import HEAD_BYTES, jpeg_frame_size, photo_bytes, png_frame_size


def _pillow_size(data: bytes):
    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.size
    except Exception:
        return None


def _jpeg(width: int, height: int, **options) -> bytes:
    pixels = np.random.default_rng(width * 7 + height).integers(0, 256, (height, width, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", **options)
    return buffer.getvalue()


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 300), st.integers(1, 300), st.booleans(), st.sampled_from([0, 1, 2]), st.booleans())
def test_a_jpeg_frame_size_is_pillows(width, height, progressive, subsampling, exif):
    extra = {}
    if exif:
        tags = Image.Exif()
        tags[0x0112], tags[0x010F] = 6, "camera"
        extra["exif"] = tags
    data = _jpeg(width, height, progressive=progressive, subsampling=subsampling, **extra)
    assert jpeg_frame_size(data[:HEAD_BYTES]) == _pillow_size(data) == (width, height)


def test_a_header_longer_than_the_head_read_or_cut_short_gives_none():
    data = _jpeg(20, 10)
    comment = b"\xff\xfe" + (65000).to_bytes(2, "big") + bytes(64998)  # a comment segment of 65 KB
    long_header = data[:2] + comment + data[2:]
    assert _pillow_size(long_header) == (20, 10)
    assert jpeg_frame_size(long_header[:HEAD_BYTES]) is None
    assert jpeg_frame_size(long_header) == (20, 10)
    scan = data.index(b"\xff\xda")
    assert jpeg_frame_size(data[:scan]) is None  # no scan yet: not known to be complete


def test_the_last_frame_before_the_scan_counts_as_in_pillow():
    data = _jpeg(20, 10)
    sof = data.index(b"\xff\xc0")
    length = int.from_bytes(data[sof + 2:sof + 4], "big")
    segment = bytearray(data[sof:sof + 2 + length])
    segment[5:9] = (7).to_bytes(2, "big") + (9).to_bytes(2, "big")
    twice = data[:sof] + bytes(segment) + data[sof:]
    assert jpeg_frame_size(twice) == _pillow_size(twice) == (20, 10)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_damaged_jpeg_headers_never_raise_and_any_size_given_is_pillows(data):
    original = bytearray(_jpeg(33, 17, progressive=True))
    scan = original.index(b"\xff\xda") + 12
    for _ in range(data.draw(st.integers(1, 4))):
        original[data.draw(st.integers(0, scan))] = data.draw(st.integers(0, 255))
    damaged = bytes(original[:data.draw(st.integers(0, len(original)))])
    size = jpeg_frame_size(damaged)
    if size is not None:
        assert min(size) >= 1
        pillow = _pillow_size(damaged)
        assert pillow is None or pillow == size


@given(st.binary(max_size=200))
def test_any_bytes_never_raise(data):
    for reader in (jpeg_frame_size, png_frame_size):
        size = reader(data)
        assert size is None or (isinstance(size, tuple) and min(size) >= 1)


@settings(max_examples=20, deadline=None)
@given(st.integers(1, 400), st.integers(1, 400), st.sampled_from(["RGB", "L", "RGBA", "P"]))
def test_a_png_frame_size_is_pillows(width, height, mode):
    buffer = io.BytesIO()
    Image.new(mode, (width, height)).save(buffer, "PNG")
    assert png_frame_size(buffer.getvalue()[:64]) == _pillow_size(buffer.getvalue()) == (width, height)


def test_photo_bytes_reads_jpeg_and_png_headers_without_pillow_and_falls_back_to_it(tmp_path, monkeypatch):
    jpeg, png, gif = tmp_path / "a.jpg", tmp_path / "b.png", tmp_path / "c.gif"
    jpeg.write_bytes(_jpeg(40, 30))
    Image.new("RGB", (50, 20)).save(png)
    Image.new("RGB", (11, 13)).save(gif)
    calls = []
    real = headers._header_size
    monkeypatch.setattr(headers, "_header_size", lambda path, upright: calls.append(path) or real(path, upright))
    assert (photo_bytes(jpeg), photo_bytes(png)) == (40 * 30 * 3, 50 * 20 * 3) and calls == []
    assert photo_bytes(gif) == 11 * 13 * 3 and calls == [gif]


def test_a_header_claiming_a_bomb_is_left_to_pillows_check(tmp_path):
    huge = tmp_path / "huge.png"
    buffer = io.BytesIO()
    Image.new("L", (1, 1)).save(buffer, "PNG")
    data = bytearray(buffer.getvalue())
    data[16:24] = (100_000).to_bytes(4, "big") + (100_000).to_bytes(4, "big")  # 10^10 pixels, CRC left wrong
    huge.write_bytes(bytes(data))
    assert png_frame_size(bytes(data)) == (100_000, 100_000)
    assert photo_bytes(huge) == 0  # Pillow refuses it at open


@pytest.mark.parametrize("name", ["cat.jpg", "astronaut.jpg", "coffee.jpg", "grace_hopper.jpg", "rocket.jpg"])
def test_the_sample_photos(name):
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "sample_images" / name
    data = path.read_bytes()
    assert jpeg_frame_size(data[:HEAD_BYTES]) == _pillow_size(data)


def test_a_fifo_in_place_of_a_photo_is_never_opened_for_its_size(tmp_path):
    import os

    fifo = tmp_path / "photo.jpg"
    os.mkfifo(fifo)
    assert headers._quick_size(fifo) is None  # returns at once: opening a FIFO to read would block


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from([b"\xff", b"\xda", b"\xff\xda", b"\x00", b"\xff\xff\xda", b"\xda\xff"]), max_size=60),
       st.integers(1, 9))
def test_scan_markers_count_what_bytes_count_counts_across_pieces(parts, piece):
    from gradcam.inputs.headers import scan_markers

    data = b"".join(parts)
    assert scan_markers(data, piece) == data.count(b"\xff\xda") == scan_markers(data)
