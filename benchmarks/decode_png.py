"""Decode + model input, and the PNG encoders, at one photo size: CPU milliseconds per photo (median),
how fast a pure-Python thread runs beside each (a stage that holds the GIL slows it down; see gil.py),
how much faster two threads run it than one (about 2x on two free cores when it releases the GIL, 1x
when it holds it), and the PNG's size. Each decoder's pixels, and each PNG decoded back, are checked
equal to the reference.

    python benchmarks/decode_png.py --size 640x480
    python benchmarks/decode_png.py --size 4000x3000 --repeat 3 --photo sample_images/cat.jpg --noise 3

The photo is the synthetic one of throughput.py (random colours at 1/8 scale, bilinear upscaled, JPEG
quality 90: a worst case for ISA-L's GIL-free PNG encoder, about 2x fpng's CPU time), or ``--photo``,
resized to ``--size`` (with ``--noise``) and saved as a JPEG (quality 90, 4:2:0).
"""
from __future__ import annotations

import argparse
import io
import statistics
import sys
import tempfile
import threading
import time
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gil import loops_per_second_beside  # noqa: E402
from throughput import make_folder  # noqa: E402


def cpu_ms(stage, repeat: int) -> float:
    """Median CPU milliseconds of this thread per call."""
    times = []
    for _ in range(repeat):
        start = time.thread_time()
        stage()
        times.append(time.thread_time() - start)
    return statistics.median(times) * 1000


def two_thread_speedup(stage, calls: int) -> float:
    """Calls per second in two threads over calls per second in one."""
    start = time.perf_counter()
    for _ in range(2 * calls):
        stage()
    alone = time.perf_counter() - start
    threads = [threading.Thread(target=lambda: [stage() for _ in range(calls)]) for _ in range(2)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return alone / (time.perf_counter() - start)


def array_and_back(path: Path, size: tuple[int, int]):
    """0.4.0's decode: Pillow -> RGB copy -> array, then an image again for the model's resize."""
    with Image.open(path) as image:
        image.load()
        photo = np.asarray(image.convert("RGB"))
    return photo, np.asarray(Image.fromarray(photo).resize(size[::-1], Image.BILINEAR), np.float32)


def decoders(path: Path) -> dict:
    from gradcam.inputs.images import load_for_model

    rows = {"Pillow, array and back (0.4.0)": lambda: array_and_back(path, (224, 224)),
            "Pillow, its image resized (the default)": lambda: load_for_model(path, (224, 224))}
    try:  # measured for issue 24 and not adopted: faster alone, slower in a whole run at 12 MP
        import simplejpeg
    except ImportError:
        return rows

    def libjpeg_turbo():
        photo = simplejpeg.decode_jpeg(path.read_bytes(), colorspace="RGB")
        return photo, np.asarray(Image.fromarray(photo).resize((224, 224), Image.BILINEAR), np.float32)

    rows["simplejpeg, then Pillow's resize (not adopted)"] = libjpeg_turbo
    return rows


def encoders() -> dict:
    from gradcam.outputs import png
    from gradcam.outputs.render import encode_png, fast_png_encoder

    rows = {}
    if fast_png_encoder() is not None:
        rows["fpng"] = lambda image: fast_png_encoder().from_ndarray(image)
    if png.isal_zlib() is not None:
        for level in (0, 1, 2):
            rows[f"Up filter + ISA-L level {level} (GIL-free)"] = lambda image, level=level: png.encode_gil_free(image, level)
    from gradcam.outputs import png_huffman

    if png_huffman.kernels() is not None:
        rows["Up filter + Huffman only, numba (GIL-free)"] = lambda image: png_huffman.encode_huffman(
            image, png.BLOCK_BYTES, png.isal_zlib() or zlib)
    rows["Pillow, zlib level 1 (the fallback)"] = lambda image: encode_png(image, 1)
    rows["default (encode_png)"] = encode_png
    return rows


def photo_file(folder: Path, size: tuple[int, int], photo: str | None, noise: float) -> Path:
    if photo is None:
        make_folder(folder, 1, size)
        return next(folder.glob("*.jpg"))
    path = folder / "photo.jpg"
    pixels = np.asarray(Image.open(photo).convert("RGB").resize(size, Image.BICUBIC), np.float32)
    pixels += np.random.default_rng(0).normal(0, noise, pixels.shape).astype(np.float32) if noise else 0
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path, quality=90)
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="640x480", metavar="WxH")
    parser.add_argument("--photo", default=None, help="a photo to resize instead of the synthetic one")
    parser.add_argument("--noise", type=float, default=0.0, metavar="SIGMA",
                        help="Gaussian noise added to --photo after resizing (a camera's grain; 2-4 is a phone's)")
    parser.add_argument("--repeat", type=int, default=9)
    args = parser.parse_args()
    from gradcam.explainers.heatmap import heatmap_at
    from gradcam.outputs.colour import overlay

    width, height = (int(v) for v in args.size.lower().split("x"))
    calls = max(1, args.repeat // 2)
    print(f"| {width}x{height} | CPU ms | Python thread beside it | 2 threads / 1 | PNG bytes |")
    print("|---|---|---|---|---|")
    idle = loops_per_second_beside(lambda: time.sleep(0.002))
    with tempfile.TemporaryDirectory() as tmp:
        path = photo_file(Path(tmp), (width, height), args.photo, args.noise)
        expected = array_and_back(path, (224, 224))
        for name, stage in decoders(path).items():
            photo, model_input = stage()
            assert np.array_equal(photo, expected[0]) and np.array_equal(model_input, expected[1]), name
            print(f"| decode: {name} | {cpu_ms(stage, args.repeat):.1f} | "
                  f"{loops_per_second_beside(stage) / idle:.0%} | {two_thread_speedup(stage, calls):.2f} | |")
    cam = np.random.default_rng(0).uniform(0, 1, (14, 14)).astype(np.float32)
    image = np.ascontiguousarray(overlay(expected[0], heatmap_at(cam, (height, width))[0]))
    for name, encode in encoders().items():
        data = encode(image)
        assert np.array_equal(np.asarray(Image.open(io.BytesIO(data)).convert("RGB")), image), name
        stage = lambda encode=encode: encode(image)  # noqa: E731
        print(f"| PNG: {name} | {cpu_ms(stage, args.repeat):.1f} | {loops_per_second_beside(stage) / idle:.0%} | "
              f"{two_thread_speedup(stage, calls):.2f} | {len(data):,} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
