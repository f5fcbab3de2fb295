"""The GIL-free PNG encoders (Up filter + ISA-L deflate; the compiled Huffman-only one): Pillow reads their
files back to exactly the pixels given, every chunk is well formed, the Huffman code is optimal, complete,
within its limit and canonical (against hand-worked examples and an independent heapq Huffman), the kernel
refuses what would overrun, and encode_png picks an encoder by size and by what is installed."""
from __future__ import annotations

import heapq
import io
import struct
import subprocess
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
    """From GIL_FREE_FROM_PIXELS pixels on the Huffman-only encoder (its kernel loaded), below it fpng (where
    installed); the same pixels either way."""
    needs_numba()
    monkeypatch.setattr(png, "GIL_FREE_FROM_PIXELS", 1000)
    small, large = photo_like(20, 49), photo_like(20, 50)  # 980 and 1000 pixels
    assert render.encode_png(large) == png_huffman.encode_huffman(large, png.BLOCK_BYTES, isal_or_zlib())
    fpng = render.fast_png_encoder()
    if fpng is not None:
        assert render.encode_png(small) == fpng.from_ndarray(np.ascontiguousarray(small))
    for image in (small, large):
        np.testing.assert_array_equal(decoded(render.encode_png(image)), image)
        # a zlib level asked for always goes through Pillow, at any size
        assert render.encode_png(image, 6) == render.encode_png(image, 6) != png.encode_large(image)


def test_without_the_huffman_kernel_isal_takes_only_the_largest(monkeypatch):
    """While the Huffman-only kernel is not loaded, encode_large gives ISA-L's PNG from ISAL_FROM_PIXELS on and None
    below it, so that encode_png takes fpng (faster there) or Pillow."""
    needs_isal()
    monkeypatch.setattr(png_huffman.BLOCK, "compiled", None)
    monkeypatch.setattr(png, "GIL_FREE_FROM_PIXELS", 1000)
    image = photo_like(20, 50)
    assert png.encode_large(image) is None
    fpng = render.fast_png_encoder()
    expected = fpng.from_ndarray(image) if fpng else render.encode_png(image, render.FALLBACK_ZLIB_LEVEL)
    assert render.encode_png(image) == expected
    monkeypatch.setattr(png, "ISAL_FROM_PIXELS", 1000)
    assert png.encode_large(image) == png.encode_gil_free(image) == render.encode_png(image)
    np.testing.assert_array_equal(decoded(png.encode_large(image)), image)


def test_without_isal_the_large_images_go_through_fpng_or_pillow(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "isal", None)  # import isal -> ImportError, as without the wheel
    monkeypatch.setattr(png_huffman.BLOCK, "compiled", None)  # and the Huffman-only encoder not loaded
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


# --- the Huffman-only encoder (png_huffman): one compiled kernel, dynamic blocks, no matches ---

def needs_numba():
    from gradcam.outputs import fused

    if not fused.available():
        pytest.skip("numba is not installed or is switched off here")
    fused.prepare()  # loads the render's kernel, then the others: the Huffman encoder's
    assert png_huffman.kernels() is not None, png_huffman.BLOCK.error


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


def test_bytes_the_counts_never_saw_still_have_codes():
    """The code is chosen from one group of 4 bytes in SAMPLE: rows of 16 filtered bytes whose sampled group
    (the filter byte and the first pixel's three residuals, all 0 below the first row) never holds the other
    bytes' values; they still have codes (every byte value is counted once more), at most 15 bits each."""
    needs_numba()
    assert png_huffman.SAMPLE == 4
    image = np.random.default_rng(7).integers(0, 256, (200, 5, 3), np.uint8)  # rows of 1 + 15 bytes
    image[:, 0] = 9  # the first pixel's residuals: 0 below the first row
    data = png_huffman.encode_huffman(image, png.BLOCK_BYTES)
    np.testing.assert_array_equal(decoded(data), image)
    assert len(data) < 200 * 16 * 15 // 8 + 400


def reference_code_lengths(counts) -> list[int]:
    """Huffman code lengths by the textbook heap method (no length limit), independent of the kernel's sorted
    leaves and two queues; a lone symbol gets length 1."""
    heap = [(count, [symbol]) for symbol, count in enumerate(counts) if count]
    lengths = [0] * len(counts)
    if len(heap) == 1:
        lengths[heap[0][1][0]] = 1
    heapq.heapify(heap)
    while len(heap) > 1:
        (first, a), (second, b) = heapq.heappop(heap), heapq.heappop(heap)
        for symbol in a + b:
            lengths[symbol] += 1
        heapq.heappush(heap, (first + second, a + b))
    return lengths


def reference_canonical_codes(lengths) -> list[str]:
    """RFC 1951 3.2.2's canonical codes as strings of bits, MSB first ("" for an unused symbol)."""
    codes, code = [""] * len(lengths), 0
    for length in range(1, max(lengths) + 1):
        for symbol in [s for s, n in enumerate(lengths) if n == length]:
            codes[symbol] = f"{code:0{length}b}"
            code += 1
        code <<= 1
    return codes


def test_the_references_on_hand_worked_examples():
    """CLRS 16.3: counts 45, 13, 12, 16, 9, 5 -> 1, 3, 3, 3, 4, 4 bits; RFC 1951 3.2.2: lengths (3, 3, 3, 3, 3,
    2, 4, 4) -> codes 010 011 100 101 110 00 1110 1111."""
    assert reference_code_lengths([45, 13, 12, 16, 9, 5, 0]) == [1, 3, 3, 3, 4, 4, 0]
    expected = ["010", "011", "100", "101", "110", "00", "1110", "1111"]
    assert reference_canonical_codes([3, 3, 3, 3, 3, 2, 4, 4]) == expected


def test_the_kernels_code_of_the_hand_worked_examples():
    """The same examples through the compiled kernel: CLRS's lengths, and counts 2, 2, 2, 2, 2, 4, 1, 1 (G and H
    merged first, then five pairs of 2: worked by hand to RFC 1951's lengths) -> RFC 1951's codes, stored
    bit-reversed (deflate sends Huffman codes MSB first into an LSB-first stream)."""
    needs_numba()
    lengths, _ = png_huffman.huffman_code([45, 13, 12, 16, 9, 5, 0])
    assert lengths.tolist() == [1, 3, 3, 3, 4, 4, 0]
    lengths, codes = png_huffman.huffman_code([2, 2, 2, 2, 2, 4, 1, 1])
    expected = ["010", "011", "100", "101", "110", "00", "1110", "1111"]
    assert lengths.tolist() == [len(code) for code in expected]
    assert codes.tolist() == [int(code[::-1], 2) for code in expected]


FIBONACCI = [1, 1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144, 233, 377, 610, 987, 1597, 2584, 4181, 6765, 10946,
             17711, 28657, 46368, 75025]  # unlimited Huffman: 24 bits for the rarest


@pytest.mark.parametrize("counts, limit", [
    ([0, 7, 0], 15),  # a lone symbol gets a partner: deflate's decoders want a complete code
    ([0, 0, 0], 7),
    ([1, 1] + [0] * 5, 7),
    (FIBONACCI[:19], 7),  # 18 bits unlimited
    (FIBONACCI, 15),  # 24 bits unlimited: the literal code's limit
    (FIBONACCI + [0] * 200 + [1] * 32, 15),
    ([1] + [10**9] * 256, 15),
    ([2**40] * 257, 15),
])
def test_code_lengths_are_complete_and_within_the_limit(counts, limit):
    needs_numba()
    lengths, _ = png_huffman.huffman_code(counts, limit)
    used = lengths[lengths > 0]
    assert len(used) >= 2 and used.max() <= limit
    assert sum(2.0 ** -int(n) for n in used) == 1.0  # Kraft: a complete prefix code
    assert all(lengths[i] > 0 for i, c in enumerate(counts) if c)  # every symbol that occurs has a code
    least = max(1, sum(counts) >> (limit - 1))  # rarer counts are raised to it (ties then): the others
    order = np.argsort(counts, kind="stable")  # rarer symbols never get shorter codes
    assert all(lengths[a] >= lengths[b] for a, b in zip(order, order[1:]) if least <= counts[a] < counts[b])


@settings(max_examples=80, deadline=None)
@given(st.lists(st.integers(0, 100), min_size=2, max_size=40))
def test_the_code_costs_as_few_bits_as_the_reference_huffman(counts):
    """Small counts (no length limit reached, no count raised): the same total bits as the heap method's optimal
    code (lengths may differ between equal counts), complete, and canonical: each code is RFC 1951's for the
    kernel's lengths."""
    needs_numba()
    lengths, codes = png_huffman.huffman_code(counts, 15)
    reference = reference_code_lengths(counts)
    if max(reference) <= 12:  # far from the limit: no halving
        assert int(np.dot(lengths, counts)) == int(np.dot(reference, counts))
    assert sum(2.0 ** -int(n) for n in lengths if n) == 1.0
    expected = reference_canonical_codes(lengths.tolist())
    assert codes.tolist() == [int(code[::-1], 2) if code else 0 for code in expected]


@pytest.mark.parametrize("counts, limit", [([-1, 5], 15), ([2**40 + 1, 5], 15), ([1, 2], 0), ([1, 2], 16),
                                           ([1] * 257, 7), ([1] * 258, 15)])
def test_the_code_refuses_bad_counts_and_limits(counts, limit):
    """Negative or huge counts, a limit outside 1-15 or too short for the symbols (257 need 9 bits), too many."""
    needs_numba()
    with pytest.raises(ValueError):
        png_huffman.huffman_code(counts, limit)


def test_encode_large_takes_the_huffman_encoder_once_loaded(monkeypatch):
    """The Huffman-only encoder where its kernel is loaded, ISA-L's while it is not (from ISAL_FROM_PIXELS); the
    same pixels."""
    needs_isal()
    needs_numba()
    image = photo_like(30, 50)
    huffman = png.encode_large(image)
    assert huffman == png_huffman.encode_huffman(image, png.BLOCK_BYTES, png.isal_zlib())
    assert huffman != png.encode_gil_free(image)
    np.testing.assert_array_equal(decoded(huffman), image)
    monkeypatch.setattr(png_huffman.BLOCK, "compiled", None)
    monkeypatch.setattr(png, "ISAL_FROM_PIXELS", 0)
    assert png_huffman.kernels() is None
    assert png.encode_large(image) == png.encode_gil_free(image)


def block_arguments(image, room: int):
    """Arrays for one block of all of ``image``'s rows with ``room`` words beyond the kernel's bound."""
    height, width, _ = image.shape
    size = height * (3 * width + 1)
    out = np.full(6 + ((2000 + 15 * size) >> 6) + 2 + room, 7, np.uint64)
    return (np.empty(size, np.uint8), out, np.array([6, 0, 0, 1, 15, 1], np.uint64),
            np.zeros(png_huffman.SCRATCH, np.uint8))


def test_the_block_coder_refuses_what_would_overrun():
    """The kernel checks its own bounds (room for 15 bits a byte and the header, the filtered rows' size, the
    rows, the state) and refuses before it writes to ``out``; its caller refuses other arrays."""
    needs_numba()
    code = png_huffman.kernels()
    image = photo_like(23, 31)
    filtered, out, state, scratch = block_arguments(image, 0)
    code(image, 0, 23, filtered, out, state, scratch)  # just enough room
    np.testing.assert_array_equal(filtered.reshape(23, -1), up_filtered(image))
    stream = out.view(np.uint8)[48 : 8 * int(state[0]) + 8].tobytes()
    assert zlib.decompressobj(-15).decompress(stream) == up_filtered(image).tobytes()
    bad = {"one word short": lambda f, o, s: (image, 0, 23, f, o[:-1], s),
           "filtered one byte short": lambda f, o, s: (image, 0, 23, f[:-1], o, s),
           "rows past the image": lambda f, o, s: (image, 0, 24, f, o, s),
           "stop before start": lambda f, o, s: (image, 5, 4, f, o, s),
           "a start before the image": lambda f, o, s: (image, -1, 3, f, o, s),
           "pending bits >= 64": lambda f, o, s: (image, 0, 23, f, o, s + np.array([0, 0, 64, 0, 0, 0], np.uint64)),
           "a word past the end": lambda f, o, s: (image, 0, 23, f, o, s + np.array([2**63, 0, 0, 0, 0, 0], np.uint64)),
           "a limit of 16 bits": lambda f, o, s: (image, 0, 23, f, o, s + np.array([0, 0, 0, 0, 1, 0], np.uint64))}
    for name, arguments in bad.items():
        filtered, out, state, scratch = block_arguments(image, 0)
        with pytest.raises(ValueError):
            code(*arguments(filtered, out, state), scratch)
        assert np.all(out == 7), name
    filtered, out, state, scratch = block_arguments(image, 0)
    for arguments in [(image[:, ::2], 0, 23, filtered, out, state, scratch),  # not contiguous
                      (image, 0, 23, filtered, out.view(np.int64), state, scratch),
                      (image, 0, 23, filtered, out, state[:5], scratch),
                      (image, 0, 23, filtered, out, state, scratch[:-1]),
                      (image.astype(np.uint16), 0, 23, filtered, out, state, scratch)]:
        with pytest.raises(ValueError):
            code(*arguments)


def test_the_cached_kernel_runs_in_a_process_without_numba(tmp_path):
    """A fresh process loads the cached machine code with llvmlite alone (numba not imported) and encodes: the
    kernel calls nothing outside itself (an 8 kB zeroing loop compiled to memset, or max() with its exception
    path, left calls to symbols such a process leaves unresolved: a crash)."""
    needs_numba()
    if png_huffman.BLOCK.origin == "compiled, not cached":
        pytest.skip("no writable cache folder here")
    script = ("import sys\nimport numpy as np\nfrom gradcam.inputs import resample_fast\n"
              "from gradcam.outputs import png_huffman\nresample_fast.load(wait=True)\n"
              "assert png_huffman.BLOCK.origin == 'cache' and 'numba' not in sys.modules, png_huffman.BLOCK.origin\n"
              "image = np.arange(60 * 70 * 3, dtype=np.uint32).astype(np.uint8).reshape(60, 70, 3)\n"
              "sys.stdout.buffer.write(png_huffman.encode_huffman(image, 1000))\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    expected = np.arange(60 * 70 * 3, dtype=np.uint32).astype(np.uint8).reshape(60, 70, 3)
    np.testing.assert_array_equal(decoded(done.stdout), expected)
