"""JPEG file -> uint8 (H, W, 3) array: gradcam's Pillow decode (images._decode + _array_of, i.e. open, load,
_packed_rgb) against gradcam.inputs.jpeg_fast.decode_jpeg (simplejpeg; reading the file and all its checks
included), CPU milliseconds of this thread per photo, median of many calls, the two taking turns call by
call (a shared machine slows both alike). Each photo's two arrays are checked equal first. The last lines split
decode_jpeg's cost into its steps.

    python benchmarks/decode_jpeg.py                          # 640x480 and 4000x3000 as throughput.py makes them
    python benchmarks/decode_jpeg.py --photos sample_images/*.jpg --sizes
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from throughput import make_folder  # noqa: E402

from gradcam.inputs import jpeg_fast  # noqa: E402
from gradcam.inputs.images import DEFAULT_MAX_PIXELS, _array_of, _decode  # noqa: E402


def pillow(path) -> np.ndarray:
    return _array_of(_decode(path, DEFAULT_MAX_PIXELS))


def fast(path) -> np.ndarray:
    return jpeg_fast.decode_jpeg(path, DEFAULT_MAX_PIXELS)


def interleaved_ms(stages: dict, path, rounds: int, calls: int) -> dict[str, float]:
    """Median of each stage's CPU ms per call over ``rounds`` x ``calls`` calls, the stages taking turns
    call by call (a busy spell of the shared machine slows them alike)."""
    times: dict[str, list[float]] = {name: [] for name in stages}
    for _ in range(rounds * calls):
        for name, stage in stages.items():
            start = time.thread_time()
            stage(path)
            times[name].append((time.thread_time() - start) * 1000)
    return {name: statistics.median(values) for name, values in times.items()}


def steps_ms(path, rounds: int, calls: int) -> dict[str, float]:
    """decode_jpeg's steps on one file: read, our header parse, simplejpeg's header, Pillow's header, decode."""
    import simplejpeg

    data = Path(path).read_bytes()
    width, height, components, _ = jpeg_fast._frame(data)
    mode = "RGB" if components == 3 else "L"
    return interleaved_ms({
        "read file": lambda p: jpeg_fast._read(p, DEFAULT_MAX_PIXELS),
        "marker parse": lambda p: jpeg_fast._frame(data),
        "simplejpeg header": lambda p: simplejpeg.decode_jpeg_header(data),
        "Pillow header + EXIF": lambda p: jpeg_fast._pillow_takes(data, (width, height), mode),
        "simplejpeg decode": lambda p: simplejpeg.decode_jpeg(data, fastdct=False, fastupsample=False),
    }, path, rounds, calls)


def report(label: str, path, rounds: int, calls: int, steps: bool) -> None:
    reference, ours = pillow(path), fast(path)
    if ours is None:
        print(f"{label}: refused by jpeg_fast (Pillow decodes it)")
        return
    assert np.array_equal(reference, ours), f"{label}: pixels differ"
    ms = interleaved_ms({"pillow": pillow, "jpeg_fast": fast}, path, rounds, calls)
    print(f"{label}: Pillow {ms['pillow']:.3f} ms, decode_jpeg {ms['jpeg_fast']:.3f} ms "
          f"({100 * (ms['jpeg_fast'] / ms['pillow'] - 1):+.0f} %)")
    if steps:
        print("   " + ", ".join(f"{name} {value:.3f}" for name, value in steps_ms(path, rounds, calls).items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", nargs="*", default=[], help="JPEG files (default: synthetic ones)")
    parser.add_argument("--sizes", action="store_true", help="also the synthetic 640x480 and 4000x3000")
    parser.add_argument("--rounds", type=int, default=21)
    args = parser.parse_args()
    assert jpeg_fast.enabled(), "simplejpeg missing, GRADCAM_NO_FAST_JPEG set, or the self-check failed"
    with tempfile.TemporaryDirectory() as folder:
        synthetic = []
        if args.sizes or not args.photos:
            for size in ((640, 480), (4000, 3000)):
                sub = Path(folder) / f"{size[0]}x{size[1]}"
                sub.mkdir()
                make_folder(sub, 1, size)
                synthetic.append((f"{size[0]}x{size[1]}", next(sub.iterdir())))
        for label, path in synthetic + [(Path(p).name, p) for p in args.photos]:
            pixels = np.prod(pillow(path).shape[:2])
            calls = max(1, int(3e6 // pixels))  # about 3 megapixels a round (rounds x calls calls in all)
            report(label, path, args.rounds, calls, steps=True)


if __name__ == "__main__":
    main()
