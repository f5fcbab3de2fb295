"""Which render and decode stages hold the GIL: a pure-Python thread counts loops for one second while
the main thread runs a stage over and over; a stage that releases the GIL leaves it about as fast as
while the main thread sleeps, one that holds it slows it down.

    python benchmarks/gil.py --size 640x480
"""
from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path

import numpy as np


def loops_per_second_beside(stage, seconds: float = 1.0) -> float:
    """Loops a second of a pure-Python counting thread while ``stage`` runs again and again here."""
    stop, counts = threading.Event(), []

    def count() -> None:
        n = 0
        while not stop.is_set():
            n += 1
        counts.append(n)

    thread = threading.Thread(target=count)
    thread.start()
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        stage()
    stop.set()
    thread.join()
    return counts[0] / seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="640x480", metavar="WxH")
    args = parser.parse_args()
    from PIL import Image

    from gradcam.explainers.heatmap import heatmap_at
    from gradcam.inputs.images import load_image, resize_for_model
    from gradcam.outputs.render import encode_png, fast_png_encoder, overlay

    width, height = (int(v) for v in args.size.lower().split("x"))
    rng = np.random.default_rng(0)
    photo = np.asarray(Image.fromarray(rng.integers(0, 256, (height // 8, width // 8, 3), dtype=np.uint8))
                       .resize((width, height), Image.BILINEAR))
    cam = rng.uniform(0, 1, (14, 14)).astype(np.float32)
    heatmap, _ = heatmap_at(cam, (height, width))
    blended = overlay(photo, heatmap)
    with tempfile.TemporaryDirectory() as folder:
        jpeg = Path(folder) / "photo.jpg"
        Image.fromarray(photo).save(jpeg, quality=90)
        stages = {
            "main thread asleep (the reference)": lambda: time.sleep(0.002),
            "decode (Pillow)": lambda: load_image(jpeg),
            "resize for the model (Pillow)": lambda: resize_for_model(photo, (224, 224)),
            "normalise + zoom (scipy)": lambda: heatmap_at(cam, (height, width)),
            "colour + blend (NumPy)": lambda: overlay(photo, heatmap),
            f"PNG ({'fpng' if fast_png_encoder() else 'Pillow'})": lambda: encode_png(blended),
        }
        rows = {name: loops_per_second_beside(stage) for name, stage in stages.items()}
    reference = rows["main thread asleep (the reference)"]
    print(f"| stage ({width}x{height}) running in the main thread | a Python thread's loops/s beside it | share |")
    print("|---|---|---|")
    for name, rate in rows.items():
        print(f"| {name} | {rate / 1e6:.1f} M | {rate / reference:.0%} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
