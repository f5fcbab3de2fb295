"""A PNG encoder that lets other threads run while it works: each row filtered against the row above
(PNG's "Up" filter) in NumPy, the rows deflated by ISA-L (python-isal, PSF-2.0; Intel's BSD-licensed
ISA-L), a few megabytes at a time. NumPy's subtraction, ISA-L's deflate and its CRC all release the
GIL; fpng holds it for its whole call. :func:`encode_large` takes the faster Huffman-only encoder of
:mod:`.png_huffman` instead once its kernel is loaded. :func:`gradcam.outputs.render.encode_png` picks."""
from __future__ import annotations

import struct
import zlib
from functools import lru_cache

import numpy as np

from . import png_huffman
from .png_huffman import SIGNATURE, chunk

#: ISA-L's level 1 of 0-3: files about 5-20 % smaller than fpng's; level 0 makes them 20-50 % larger
ISAL_LEVEL = 1

#: images of at least this many pixels go through :func:`encode_large` (the Huffman-only encoder where its kernel
#: is loaded), smaller ones through fpng (:func:`gradcam.outputs.render.encode_png`). Overlays of the sample
#: photos (benchmarks/png_small.py, interleaved CPU medians, isal's checksums): 0.80-0.82 against fpng's
#: 1.26-1.47 ms at 640x480, 3.2-3.3 against 5.5-6.3 ms at 1280x960 (files 3-11 % smaller), 32-42 against
#: 103-132 ms at 4000x3000 (files 8 % smaller to 20 % larger: photos upscaled 6-13x, which fpng's matches
#: suit); 0.85-0.9x fpng's at 360x270 (97,200 pixels), equal at 320x240, 7x its 0.02 ms at 64x64 (the code's
#: fixed cost). With zlib's checksums (no python-isal) ~0.35 ms more at 640x480, still below fpng's.
GIL_FREE_FROM_PIXELS = 100_000

#: below this many pixels, :func:`encode_large` does not fall back to ISA-L's encoder while the Huffman-only one
#: is not loaded (fpng is faster there). Measured on photos (benchmarks/
#: decode_png.py): at 640x480 this encoder takes 2-3x fpng's CPU time (3 against 1.2 ms); at 6-8 MP
#: 1.1-1.4x; at 12 MP 0.75-1x (65-80 against 80-105 ms, fpng holding the GIL all along), files 15-19 %
#: smaller. Noise-like pictures cost it about 2x fpng's time at any size. Remeasured for issue 24 (overlays,
#: interleaved, 2 shared cores): 12 MP photos (sample_images upscaled, noise 2-3) 0.9-1.35x fpng, files 15-17 %
#: smaller; benchmarks/throughput.py's synthetic photo ~1.9x (ISA-L deflates its mostly-literal residuals
#: slowly), files 9 % smaller; 640x480 2.5-3x.
#:
#: Tried for issue 24 and not taken (same decoded pixels; CPU against this encoder): the Sub filter (about the
#: same time, files 1-6 % larger), the Average filter (files 3-7 % smaller, +5-20 % time: 5 uint8 passes in
#: NumPy), Paeth (files up to 13 % smaller on the synthetic photo, but ~650 ms in NumPy), ISA-L levels 0
#: (no faster, files 10-50 % larger), 2 and 3 (slower, files < 1 % smaller), memLevel 1-9 (1 is 1.5-2x slower,
#: 5-9 the same), blocks of 64 kB-16 MB (within the noise), zlib's Z_RLE and Z_HUFFMAN_ONLY (3-4x slower) and
#: OpenCV's PNG (6x). What won: Huffman-only coding of the same residuals (:mod:`.png_huffman`).
ISAL_FROM_PIXELS = 8_000_000

#: filtered bytes deflated per call: the filtered copy of a 12-megapixel photo is never whole in memory
BLOCK_BYTES = 1 << 22


@lru_cache(maxsize=1)
def isal_zlib():
    """python-isal's ``isal.isal_zlib`` module, or None where it is not installed or does not load."""
    try:
        from isal import isal_zlib as module
    except Exception:  # not installed, no wheel for this platform, a broken build
        return None
    return module


def up_filtered_blocks(image: np.ndarray, block_bytes: int):
    """The PNG rows of a uint8 (H, W, 3) image, each "Up"-filtered (filter byte 2, then each byte minus the byte
    above it, modulo 256; zeros above the first row), about ``block_bytes`` at a time: yields (uint8 (rows,
    3 W + 1) filtered rows, whether they are the last), in one buffer reused from block to block (the filtered
    copy of a 12-megapixel photo is never whole in memory). ``image`` is only read."""
    height, width, _ = image.shape
    rows = np.ascontiguousarray(image).reshape(height, 3 * width)
    step = max(1, block_bytes // (3 * width + 1))
    filtered = np.empty((min(step, height), 3 * width + 1), np.uint8)
    filtered[:, 0] = 2  # PNG filter type 2, "Up"
    for start in range(0, height, step):
        block = rows[start : start + step]
        out = filtered[: len(block)]
        if start == 0:  # the row above the first is zeros
            out[0, 1:] = block[0]
            np.subtract(block[1:], block[:-1], out=out[1:, 1:])
        else:
            np.subtract(block, rows[start - 1 : start - 1 + len(block)], out=out[:, 1:])
        yield out, start + step >= height


def encode_gil_free(image: np.ndarray, level: int = ISAL_LEVEL) -> bytes | None:
    """A uint8 (H, W, 3) image as an 8-bit RGB PNG (every row "Up"-filtered, ISA-L deflate at ``level``),
    or None where python-isal is not installed. ``image`` is only read."""
    isal = isal_zlib()
    if isal is None:
        return None
    height, width, _ = image.shape
    compressor = isal.compressobj(level)
    parts = [compressor.compress(filtered) for filtered, _ in up_filtered_blocks(image, BLOCK_BYTES)]
    parts.append(compressor.flush())
    crc = isal.crc32(b"IDAT")
    for part in parts:
        crc = isal.crc32(part, crc)
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8 bits, RGB, deflate, filtered, no interlace
    size = sum(len(part) for part in parts)
    return b"".join([SIGNATURE, chunk(isal, b"IHDR", header), struct.pack(">I", size), b"IDAT", *parts,
                     struct.pack(">I", crc), chunk(isal, b"IEND", b"")])


def encode_large(image: np.ndarray) -> bytes | None:
    """A uint8 (H, W, 3) image as a PNG without holding the GIL: through :mod:`.png_huffman` where its kernel is
    loaded (with the render's, in a run of many pixels), else through :func:`encode_gil_free` from
    :data:`ISAL_FROM_PIXELS` pixels on; None otherwise (python-isal missing, or a smaller image: fpng's then).
    The same pixels either way. Only reads ``image``."""
    data = png_huffman.encode_huffman(image, BLOCK_BYTES, isal_zlib() or zlib)  # None: its kernel not loaded
    if data is None and image.shape[0] * image.shape[1] >= ISAL_FROM_PIXELS:
        data = encode_gil_free(image)
    return data
