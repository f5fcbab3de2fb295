"""The model input's resize: Pillow's ``Image.resize(size, BILINEAR)`` against the compiled copy of it
(gradcam/inputs/resize_fast.py), CPU milliseconds of this thread a call, the two interleaved (medians of
``--rounds`` rounds of ``--repeat`` calls), for a random photo; each pass alone too (the horizontal pass to
the model's width, the vertical to its height). The compiled path's pixels are checked equal to Pillow's.

    python benchmarks/resize.py --size 640x480
    python benchmarks/resize.py --size 4000x3000 --repeat 3
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
from PIL import Image

from gradcam.inputs import resize_fast


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="640x480", metavar="WxH", help="photo size (default: %(default)s)")
    parser.add_argument("--to", default="224x224", metavar="WxH", help="model input size (default: %(default)s)")
    parser.add_argument("--repeat", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))
    out_w, out_h = (int(v) for v in args.to.lower().split("x"))
    resize_fast.KERNEL.compile()
    assert resize_fast.KERNEL.compiled is not None, resize_fast.KERNEL.error
    photo = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    image = Image.fromarray(photo)
    cases = {}
    for label, (h, w) in (("both passes", (out_h, out_w)), ("horizontal", (height, out_w)),
                          ("vertical", (out_h, width))):
        expected = np.asarray(image.resize((w, h), Image.BILINEAR))
        assert np.array_equal(resize_fast.resize(photo, (h, w)), expected), "the compiled resize differs from Pillow"
        cases[f"Pillow, {label}"] = lambda h=h, w=w: image.resize((w, h), Image.BILINEAR)
        cases[f"compiled, {label}"] = lambda h=h, w=w: resize_fast.resize(photo, (h, w))
    times = {name: [] for name in cases}
    for _ in range(args.rounds):
        for name, call in cases.items():
            start = time.thread_time()
            for _ in range(args.repeat):
                call()
            times[name].append((time.thread_time() - start) / args.repeat * 1000)
    print(f"{width}x{height} -> {out_w}x{out_h}, CPU ms a call (median of {args.rounds} rounds):")
    for name, values in times.items():
        print(f"  {name:28s} {statistics.median(values):8.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
