"""Milliseconds per photo of each stage after the model, one thread, for a photo size.

    python benchmarks/stages.py --size 640x480
    python benchmarks/stages.py --size 4000x3000 --repeat 3
"""
from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from throughput import make_folder  # noqa: E402


def timed(function, repeat: int) -> tuple[float, object]:
    best, value = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        value = function()
        best = min(best, time.perf_counter() - start)
    return best * 1000, value


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="640x480", metavar="WxH")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    from gradcam.explainers.heatmap import heatmap_at
    from gradcam.inputs.images import load_image, resize_for_model
    from gradcam.outputs.render import colorize, overlay, save_png

    width, height = (int(v) for v in args.size.lower().split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        make_folder(Path(tmp), 1, (width, height))
        path = next(Path(tmp).glob("*.jpg"))
        rows = {}
        rows["decode (Pillow)"], photo = timed(lambda: load_image(path), args.repeat)
        rows["resize to 224 x 224"], _ = timed(lambda: resize_for_model(photo, (224, 224)), args.repeat)
        cam = np.random.default_rng(0).uniform(0, 1, (14, 14)).astype(np.float32)
        rows["normalise + zoom to the photo"], heatmap = timed(lambda: heatmap_at(cam, photo.shape[:2])[0], args.repeat)
        rows["colour (lookup table)"], _ = timed(lambda: colorize(heatmap), args.repeat)
        rows["colour + blend (overlay)"], image = timed(lambda: overlay(photo, heatmap), args.repeat)
        from gradcam.outputs.render import fast_png_encoder

        if fast_png_encoder() is not None:
            def encode_fast():
                save_png(Path(tmp) / "out.png", image)
                return (Path(tmp) / "out.png").stat().st_size

            milliseconds, size = timed(encode_fast, args.repeat)
            rows[f"PNG, fpng, the default ({size / 1e6:.2f} MB)"] = milliseconds
        for level in (0, 1, 3, 6, 9):
            def encode(level=level):
                save_png(Path(tmp) / "out.png", image, level)
                return (Path(tmp) / "out.png").stat().st_size

            milliseconds, size = timed(encode, max(1, args.repeat // 2))
            rows[f"PNG, matplotlib imsave, level {level} ({size / 1e6:.2f} MB)"] = milliseconds
        buffer = io.BytesIO()
        rows[".npy (float32)"], _ = timed(lambda: np.save(buffer, heatmap), args.repeat)
        from gradcam.inputs.images import photo_bytes
        from gradcam.outputs.manifest import ManifestWriter

        rows["header read (memory bound)"], _ = timed(lambda: photo_bytes(path), args.repeat)
        writer = ManifestWriter(Path(tmp))
        record = {"input": str(path), "status": "ok", "settings": {f"key{i}": i for i in range(25)}}
        rows["manifest record (locked, fsynced)"], _ = timed(lambda: writer.write(dict(record)), args.repeat)
        writer.close()
    print(f"| stage, {width} x {height} photo | ms |\n|---|---|")
    for name, milliseconds in rows.items():
        print(f"| {name} | {milliseconds:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
