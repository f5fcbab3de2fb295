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
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from gradcam.outputs import png, png_huffman, render

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
    """From GIL_FREE_FROM_PIXELS pixels on the GIL-free encoders (the Huffman-only one where its loops are loaded,
    else ISA-L's), below it fpng (where installed); the same pixels either way."""
    needs_isal()
    monkeypatch.setattr(png, "GIL_FREE_FROM_PIXELS", 1000)
    small, large = photo_like(20, 49), photo_like(20, 50)  # 980 and 1000 pixels
    assert render.encode_png(large) == png.encode_large(large)
    fpng = render.fast_png_encoder()
    if fpng is not None:
        assert render.encode_png(small) == fpng.from_ndarray(np.ascontiguousarray(small))
    for image in (small, large):
        np.testing.assert_array_equal(decoded(render.encode_png(image)), image)
        # a zlib level asked for always goes through Pillow, at any size
        assert render.encode_png(image, 6) == render.encode_png(image, 6) != png.encode_gil_free(image)


def test_without_isal_the_large_images_go_through_fpng_or_pillow(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "isal", None)  # import isal -> ImportError, as without the wheel
    monkeypatch.setattr(png_huffman.PACK, "compiled", None)  # and the Huffman-only encoder not loaded
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


# --- the Huffman-only encoder (png_huffman): numba's loops, dynamic blocks, no matches ---

def needs_numba():
    from gradcam.outputs import fused

    if not fused.available():
        pytest.skip("numba is not installed or is switched off here")
    fused.prepare()  # loads the render's kernel, then the others: the Huffman encoder's two loops
    assert png_huffman.kernels() is not None, (png_huffman.HISTOGRAM.error, png_huffman.PACK.error)


def up_filtered(image: np.ndarray) -> np.ndarray:
    """The PNG's filtered rows worked out independently: filter byte 2, then each byte minus the one above."""
    flat = image.reshape(image.shape[0], -1).astype(np.int16)
    above = np.vstack([np.zeros((1, flat.shape[1]), np.int16), flat[:-1]])
    return np.hstack([np.full((len(flat), 1), 2), (flat - above) % 256]).astype(np.uint8)


@settings(max_examples=60, deadline=None)
@given(height=st.integers(1, 40), width=st.integers(1, 40), smooth=st.booleans(), seed=st.integers(0, 2**16),
       block_bytes=st.sampled_from([1, 50, 1 << 22]))
def test_huffman_png_reads_back_to_the_exact_pixels(height, width, smooth, seed, block_bytes):
    needs_numba()
    image = photo_like(height, width, seed) if smooth else np.random.default_rng(seed).integers(
        0, 256, (height, width, 3), np.uint8)
    data = png_huffman.encode_huffman(image, block_bytes)
    np.testing.assert_array_equal(decoded(data), image)
    found = chunks(data)
    assert [kind for kind, _ in found] == [b"IHDR", b"IDAT", b"IEND"]
    assert struct.unpack(">IIBBBBB", found[0][1]) == (width, height, 8, 2, 0, 0, 0)
    rows = np.frombuffer(zlib.decompress(found[1][1]), np.uint8)  # zlib checks the Adler-32 too
    np.testing.assert_array_equal(rows.reshape(height, -1), up_filtered(image))


@pytest.mark.parametrize("height, width", SIZES)
@pytest.mark.parametrize("content", ["photo", "flat", "noise"])
def test_huffman_png_sizes_and_contents(height, width, content):
    """One byte value only (a flat image: one literal and the end code), noise (every byte value), photos;
    the same filtered rows as ISA-L's encoder, whose files Pillow reads too."""
    needs_numba()
    rng = np.random.default_rng(height * width)
    image = {"photo": photo_like(height, width), "flat": np.zeros((height, width, 3), np.uint8),
             "noise": rng.integers(0, 256, (height, width, 3), np.uint8)}[content]
    data = png_huffman.encode_huffman(image, png.BLOCK_BYTES, isal_or_zlib())
    np.testing.assert_array_equal(decoded(data), image)
    if png.isal_zlib() is not None:
        isal_rows = zlib.decompress(chunks(png.encode_gil_free(image))[1][1])
        assert zlib.decompress(chunks(data)[1][1]) == isal_rows


def isal_or_zlib():
    return png.isal_zlib() or zlib


def test_huffman_png_of_a_view_leaves_it_unchanged():
    needs_numba()
    image = photo_like(60, 80)
    view, before = image[::2, 1::3], image.copy()
    np.testing.assert_array_equal(decoded(png_huffman.encode_huffman(view, 100)), view)
    np.testing.assert_array_equal(image, before)


def test_code_lengths_of_a_textbook_example():
    """CLRS's example (16.3): counts 45, 13, 12, 16, 9, 5 -> codes of 1, 3, 3, 3, 4, 4 bits."""
    lengths = png_huffman.code_lengths([45, 13, 12, 16, 9, 5, 0], 15)
    assert lengths.tolist() == [1, 3, 3, 3, 4, 4, 0]


@pytest.mark.parametrize("counts, limit", [
    ([0, 7, 0], 15),  # a lone symbol gets a partner: deflate's decoders want a complete code
    ([0, 0, 0], 7),
    ([1, 1] + [0] * 5, 7),
    ([1, 1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144, 233, 377, 610, 987, 1597, 2584, 4181], 7),  # Fibonacci: 18 bits
    ([1] + [10**9] * 256, 15),
])
def test_code_lengths_are_complete_and_within_the_limit(counts, limit):
    lengths = png_huffman.code_lengths(counts, limit)
    used = lengths[lengths > 0]
    assert len(used) >= 2 and used.max() <= limit
    assert sum(2.0 ** -int(n) for n in used) == 1.0  # Kraft: a complete prefix code
    assert all(lengths[i] > 0 for i, c in enumerate(counts) if c)  # every symbol that occurs has a code
    order = np.argsort(counts, kind="stable")  # rarer symbols never get shorter codes... up to the limit
    assert all(lengths[a] >= lengths[b] for a, b in zip(order, order[1:]) if counts[a] < counts[b] and counts[a])


def test_canonical_codes_of_rfc_1951s_example():
    """RFC 1951 3.2.2: lengths (3, 3, 3, 3, 3, 2, 4, 4) -> codes 010 011 100 101 110 00 1110 1111, stored
    bit-reversed (sent MSB first into an LSB-first stream) with the length from bit 24."""
    table = png_huffman.canonical_codes(np.array([3, 3, 3, 3, 3, 2, 4, 4]))
    expected = ["010", "011", "100", "101", "110", "00", "1110", "1111"]
    assert [int(entry) >> 24 for entry in table] == [len(code) for code in expected]
    assert [int(entry) & 0xFFFFFF for entry in table] == [int(code[::-1], 2) for code in expected]


def test_encode_large_takes_the_huffman_encoder_once_loaded(monkeypatch):
    """The Huffman-only encoder where its loops are loaded, ISA-L's while they are not; the same pixels."""
    needs_isal()
    needs_numba()
    image = photo_like(30, 50)
    huffman = png.encode_large(image)
    assert huffman == png_huffman.encode_huffman(image, png.BLOCK_BYTES, png.isal_zlib())
    assert huffman != png.encode_gil_free(image)
    np.testing.assert_array_equal(decoded(huffman), image)
    monkeypatch.setattr(png_huffman.PACK, "compiled", None)
    assert png_huffman.kernels() is None
    assert png.encode_large(image) == png.encode_gil_free(image)


def test_the_compiled_loops_count_and_refuse_what_would_overrun():
    needs_numba()
    histogram, pack = png_huffman.kernels()
    flat = np.random.default_rng(5).integers(0, 256, 10_007, dtype=np.uint8)
    counts = np.full(256, 3, np.int64)
    histogram(flat, counts)
    np.testing.assert_array_equal(counts, np.bincount(flat, minlength=256) + 3)
    table = png_huffman.canonical_codes(png_huffman.code_lengths(np.bincount(flat, minlength=256), 15))
    room = np.zeros((15 * flat.size) // 32 + 1, np.uint32)
    pack(flat, table, room, 0, 0, 0)  # just enough room for 15 bits a byte
    with pytest.raises(ValueError):
        pack(flat, table, room[:-1], 0, 0, 0)  # one word short: refused before the machine code writes
    with pytest.raises(ValueError):
        pack(flat, table | np.uint64(16 << 24), room, 0, 0, 0)  # a 16-bit code: longer than the room allows
    with pytest.raises(ValueError):
        histogram(flat, np.zeros(255, np.int64))