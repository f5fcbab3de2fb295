"""The fused render against the reference path (SciPy zoom, lookup-table colour, float32 blend): CPU
milliseconds per photo, medians of interleaved repeats, and the one-time costs of the compiled path (numba's
import, loading the cached kernels, compiling them with no cache), each in a fresh process.

    python benchmarks/fused.py                       # 640x480 and 4000x3000, 5 repeats
    python benchmarks/fused.py --sizes 640x480 --repeat 9 --skip-startup

Every fused result is checked against the reference, bit for bit, before it is timed.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

STARTUP = r"""
import json, os, sys, time
start = time.process_time(); wall = time.perf_counter()
import numba
imported, imported_wall = time.process_time(), time.perf_counter()
from gradcam.outputs import fused
assert fused.prepare(), fused.resample_fast.KERNEL.error
print(json.dumps({"import_cpu_ms": (imported - start) * 1e3, "import_wall_ms": (imported_wall - wall) * 1e3,
                  "kernels_cpu_ms": (time.process_time() - imported) * 1e3,
                  "kernels_wall_ms": (time.perf_counter() - imported_wall) * 1e3}))
"""


def startup(repeat: int) -> dict[str, float]:
    """numba's import and the kernels' load, cold (an empty cache folder: compiled) and cached, medians."""
    rows: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=os.path.join(cache, "shared"))
        subprocess.run([sys.executable, "-c", STARTUP], env=env, capture_output=True, check=True)  # fills the cache
        for i in range(repeat):
            for label in ("compiled, no cache", "from the cache"):
                folder = os.path.join(cache, str(i) if label.startswith("compiled") else "shared")
                done = subprocess.run([sys.executable, "-c", STARTUP], env=dict(os.environ, NUMBA_CACHE_DIR=folder),
                                      capture_output=True, text=True, check=True)
                for key, value in json.loads(done.stdout).items():
                    if key.startswith("import") and label.startswith("compiled"):
                        continue
                    rows.setdefault(f"{key} ({label})" if key.startswith("kernels") else key, []).append(value)
    return {key: statistics.median(values) for key, values in rows.items()}


def timed(function) -> float:
    start = time.thread_time()
    function()
    return (time.thread_time() - start) * 1e3


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="*", default=["640x480", "4000x3000"], metavar="WxH")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--cam", type=int, default=14, help="the map's side (default: %(default)s)")
    parser.add_argument("--skip-startup", action="store_true", help="only the per-photo times")
    args = parser.parse_args()
    from gradcam.explainers.heatmap import reference_upsample, upsample
    from gradcam.outputs import fused

    assert fused.prepare(), "the compiled path did not load: " + str(fused.resample_fast.KERNEL.error)
    rng = np.random.default_rng(0)
    cam = np.maximum(rng.normal(size=(args.cam, args.cam)), 0).astype(np.float32)
    print(f"| {args.cam}x{args.cam} map to the photo, CPU ms (median of {args.repeat}) | reference | fused | ratio |")
    print("|---|---|---|---|")
    for size in args.sizes:
        width, height = (int(v) for v in size.lower().split("x"))
        photo = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        small = fused.normalize(cam)[0]
        cases = {
            "upsample (float32 heatmap)": (lambda: reference_upsample(small, (height, width)),
                                           lambda: upsample(small, (height, width))),
            "upsample + colour + blend": (lambda: fused.reference_render(photo, cam, 0.4, "jet", False),
                                          lambda: fused.render(photo, cam, 0.4, "jet", False, scratch=True)),
            "the same, fresh output arrays": (lambda: fused.reference_render(photo, cam, 0.4, "jet", False),
                                              lambda: fused.render(photo, cam, 0.4, "jet", False)),
            "the same + the heatmap (--save-npy)": (lambda: fused.reference_render(photo, cam, 0.4, "jet", True),
                                                    lambda: fused.render(photo, cam, 0.4, "jet", True, scratch=True)),
        }
        for name, (reference, fast) in cases.items():
            expected, got = reference(), fast()
            if isinstance(expected, np.ndarray):
                expected, got = (expected,), (got,)
            for a, b in zip(expected[:2], got[:2]):  # the overlay and the heatmap (None without --save-npy)
                assert (a is None and b is None) or np.array_equal(a.view(np.uint8), b.view(np.uint8)), name
            times: dict[str, list[float]] = {"reference": [], "fused": []}
            for _ in range(args.repeat):  # interleaved: a busy machine slows both alike
                times["reference"].append(timed(reference))
                times["fused"].append(timed(fast))
            old, new = statistics.median(times["reference"]), statistics.median(times["fused"])
            print(f"| {name}, {width}x{height} | {old:.1f} | {new:.1f} | {old / new:.1f}x |")
    if not args.skip_startup:
        print("\n| one-time cost, fresh process (median of 3) | ms |\n|---|---|")
        for key, value in startup(3).items():
            print(f"| {key} | {value:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
