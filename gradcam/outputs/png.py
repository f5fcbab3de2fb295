"""A PNG encoder that lets other threads run while it works: each row filtered against the row above
(PNG's "Up" filter) in NumPy, the rows deflated by ISA-L (python-isal, PSF-2.0; Intel's BSD-licensed
ISA-L), a few megabytes at a time. NumPy's subtraction, ISA-L's deflate and its CRC all release the
GIL; fpng holds it for its whole call. :func:`encode_large` takes the faster Huffman-only encoder of
:mod:`.png_huffman` instead once its loops are loaded. :func:`gradcam.outputs.render.encode_png` picks."""
from __future__ import annotations

import struct
import zlib
from functools import lru_cache

import numpy as np

from . import png_huffman
from .png_huffman import SIGNATURE, chunk

#: ISA-L's level 1 of 0-3: files about 5-20 % smaller than fpng's; level 0 makes them 20-50 % larger
ISAL_LEVEL = 1

#: images of at least this many pixels go through :func:`encode_gil_free` (where python-isal is installed),
#: smaller ones through fpng (:func:`gradcam.outputs.render.encode_png`). Measured on photos (benchmarks/
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
GIL_FREE_FROM_PIXELS = 8_000_000

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


def encode_gil_free(image: np.ndarray, level: int = ISAL_LEVEL) -> bytes | None:
    """A uint8 (H, W, 3) image as an 8-bit RGB PNG (every row "Up"-filtered, ISA-L deflate at ``level``),
    or None where python-isal is not installed. ``image`` is only read."""
    isal = isal_zlib()
    if isal is None:
        return None
    height, width, _ = image.shape
    compressor = isal.compressobj(level)
    parts = [compressor.compress(filtered) for filtered, _ in png_huffman.up_filtered_blocks(image, BLOCK_BYTES)]
    parts.append(compressor.flush())
    crc = isal.crc32(b"IDAT")
    for part in parts:
        crc = isal.crc32(part, crc)
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8 bits, RGB, deflate, filtered, no interlace
    size = sum(len(part) for part in parts)
    return b"".join([SIGNATURE, chunk(isal, b"IHDR", header), struct.pack(">I", size), b"IDAT", *parts,
                     struct.pack(">I", crc), chunk(isal, b"IEND", b"")])


def encode_large(image: np.ndarray) -> bytes | None:
    """A uint8 (H, W, 3) image as a PNG without holding the GIL: through :mod:`.png_huffman` where its loops are
    loaded (with the render's kernel, in a run of many pixels), else through :func:`encode_gil_free`; None where
    neither is available. The same pixels either way. Only reads ``image``."""
    data = png_huffman.encode_huffman(image, BLOCK_BYTES, isal_zlib() or zlib)  # None: its loops not loaded
    return data if data is not None else encode_gil_free(image)
