"""fpng against the Huffman-only encoder (gradcam.outputs.png_huffman) on overlays of the sample photos:
CPU milliseconds (time.thread_time, median of interleaved rounds: each round encodes every photo once with
each encoder, so a busy neighbour slows both alike) and file sizes, each PNG decoded back and checked.

    python benchmarks/png_small.py                      # 640x480 and 1280x960, 30 rounds
    python benchmarks/png_small.py --size 640x480 --rounds 60 --parts

The overlay: each photo (sample_images/*.jpg) resized (bicubic) to the size and blended (alpha 0.4, jet) with a
diagonal gradient heatmap, as gradcam.outputs.colour.overlay does in a run. ``--parts`` also times the
encoder's pieces on the first photo (the compiled kernel, the checksums, the copy) for the report.
"""
from __future__ import annotations

import argparse
import io
import statistics
import time
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

PHOTOS = sorted((Path(__file__).resolve().parent.parent / "sample_images").glob("*.jpg"))


def overlays(width: int, height: int) -> dict[str, np.ndarray]:
    from gradcam.outputs.colour import overlay

    ramp = (np.add.outer(np.arange(height), np.arange(width)) / max(1, width + height - 2)).astype(np.float32)
    found = {}
    for path in PHOTOS:
        photo = np.asarray(Image.open(path).convert("RGB").resize((width, height), Image.BICUBIC))
        found[path.stem] = np.ascontiguousarray(overlay(photo, ramp))
    return found


def encoders() -> dict:
    from gradcam.outputs import fused, png, png_huffman
    from gradcam.outputs.render import fast_png_encoder

    fused.prepare()  # loads the compiled loops (cached machine code)
    rows = {}
    if fast_png_encoder() is not None:
        rows["fpng"] = fast_png_encoder().from_ndarray
    if png_huffman.kernels() is not None:
        checks = png.isal_zlib() or zlib
        rows["huffman"] = lambda image: png_huffman.encode_huffman(image, png.BLOCK_BYTES, checks)
    return rows


def cpu_ms(call) -> float:
    start = time.thread_time()
    call()
    return (time.thread_time() - start) * 1000


def compare(width: int, height: int, rounds: int) -> None:
    images, rows = overlays(width, height), encoders()
    sizes = {}
    for name, encode in rows.items():
        for photo, image in images.items():
            data = encode(image)
            assert np.array_equal(np.asarray(Image.open(io.BytesIO(data)).convert("RGB")), image), (name, photo)
            sizes[name, photo] = len(data)
    times = {key: [] for key in sizes}
    for _ in range(rounds):
        for photo, image in images.items():
            for name, encode in rows.items():
                times[name, photo].append(cpu_ms(lambda: encode(image)))
    print(f"\n{width}x{height}: CPU ms (median of {rounds} interleaved rounds), bytes")
    print("| photo | " + " | ".join(f"{name} ms | {name} bytes" for name in rows) + " |")
    print("|---|" + "---|---|" * len(rows))
    for photo in images:
        cells = [f"{statistics.median(times[name, photo]):.2f} | {sizes[name, photo]:,}" for name in rows]
        print(f"| {photo} | " + " | ".join(cells) + " |")


def parts(width: int, height: int, rounds: int) -> None:
    """The encoder's pieces on the first photo, interleaved, median CPU ms: the compiled kernel (Up filter,
    sampled counts, the code, the header, the bits) alone, the checksums, the copy into bytes."""
    from gradcam.outputs import png, png_huffman

    image = next(iter(overlays(width, height).values()))
    checks = png.isal_zlib() or zlib
    code, row = png_huffman.kernels(), 3 * width + 1
    filtered, scratch = np.empty(height * row, np.uint8), np.zeros(png_huffman.SCRATCH, np.uint8)
    out = np.empty(height * row * 15 // 64 + 100, np.uint64)
    data = png_huffman.encode_huffman(image, png.BLOCK_BYTES, checks)

    def kernel():
        code(image, 0, height, filtered, out, np.array([6, 0, 0, 1, 15, 1], np.uint64), scratch)

    pieces = {"the kernel (filter, counts, code, header, bits)": kernel,
              f"adler32 ({checks.__name__}) of the filtered rows": lambda: checks.adler32(filtered),
              f"crc32 ({checks.__name__}) of the file": lambda: checks.crc32(data),
              "the file copied into bytes": lambda: out.view(np.uint8)[: len(data)].tobytes(),
              "zlib.adler32, for comparison": lambda: zlib.adler32(filtered),
              "whole encoder": lambda: png_huffman.encode_huffman(image, png.BLOCK_BYTES, checks)}
    times = {name: [] for name in pieces}
    for _ in range(rounds):
        for name, piece in pieces.items():
            times[name].append(cpu_ms(piece))
    print(f"\n{width}x{height}, {PHOTOS[0].stem}: the pieces, CPU ms")
    for name in pieces:
        print(f"| {name} | {statistics.median(times[name]):.3f} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", action="append", metavar="WxH", help="default: 640x480 and 1280x960")
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--parts", action="store_true", help="also time the encoder's pieces")
    args = parser.parse_args()
    for size in args.size or ["640x480", "1280x960"]:
        width, height = (int(v) for v in size.lower().split("x"))
        compare(width, height, args.rounds)
        if args.parts:
            parts(width, height, args.rounds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
