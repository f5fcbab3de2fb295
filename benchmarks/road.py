"""ROAD's imputation (gradcam/metrics/road_solver.py): CPU milliseconds per percentile and per 224x224 photo,
LU (SciPy's SuperLU with its MMD ordering, the solver before) against LU in nested-dissection order (lu_nd), the
multigrid-preconditioned conjugate gradients (numba) and ``solve`` (what ``noisy_linear_impute`` runs: lu_nd for
small systems, multigrid for the others), medians of
interleaved repeats; the largest difference to LU in grey levels; and the one-time costs of the fast path
in fresh processes (numba's import and the cached kernels' load; a compile with an empty cache).

    python benchmarks/road.py                  # the sample photos, 3 repeats
    python benchmarks/road.py --photos cat.jpg --repeat 5 --skip-startup

The heatmaps are Grad-CAM-like: a 7x7 grid of ReLU'd normal values zoomed to 224x224 (ties at 0 drawn at
random, as ``road_masks`` does by default), MoRF and LeRF at the default nine percentiles.
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
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
STARTUP = r"""
import json, time
import numpy as np
start = time.process_time()
from gradcam.metrics import road_solver
from gradcam.metrics.road import NEIGHBOUR_WEIGHTS
from gradcam.metrics.road_kernels import compiled
compiled()
loaded = time.process_time()
removed = np.random.default_rng(0).random((40, 40)) < 0.9
road_solver.solve_multigrid(*road_solver.system(np.ones((40, 40, 3), np.float32), removed, NEIGHBOUR_WEIGHTS),
                            removed)
print(json.dumps({"import_ms": (loaded - start) * 1e3, "first_solve_ms": (time.process_time() - loaded) * 1e3}))
"""


def photo(name: str, size: int = 224) -> np.ndarray:
    from PIL import Image

    with Image.open(ROOT / "sample_images" / name) as image:
        return np.asarray(image.convert("RGB").resize((size, size)), np.float32)


def heatmap(seed: int, size: int = 224) -> np.ndarray:
    from scipy import ndimage

    small = np.maximum(np.random.default_rng(seed).standard_normal((7, 7)) + 0.3, 0)
    big = ndimage.zoom(small, size / 7, order=1, grid_mode=True, mode="nearest")
    return (big / max(big.max(), 1e-12)).astype(np.float32)


def cpu_ms(function, *args):
    start = time.process_time()
    result = function(*args)
    return result, (time.process_time() - start) * 1e3


def startup(repeat: int) -> dict[str, float]:
    """numba's import + the kernels' load from the cache, and the first solve, each in a fresh process; and
    the same with an empty cache (the compile), medians."""
    rows: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as cache:
        shared = os.path.join(cache, "shared")
        subprocess.run([sys.executable, "-c", STARTUP], env=dict(os.environ, NUMBA_CACHE_DIR=shared), check=True,
                       capture_output=True)
        for i in range(repeat):
            for label, folder in (("cached", shared), ("empty cache", os.path.join(cache, str(i)))):
                done = subprocess.run([sys.executable, "-c", STARTUP], env=dict(os.environ, NUMBA_CACHE_DIR=folder),
                                      check=True, capture_output=True, text=True)
                for key, value in json.loads(done.stdout.strip().splitlines()[-1]).items():
                    rows.setdefault(f"{key} ({label})", []).append(value)
    return {key: statistics.median(values) for key, values in rows.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--photos", nargs="+", default=["cat.jpg", "astronaut.jpg", "coffee.jpg"])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--skip-startup", action="store_true")
    args = parser.parse_args()
    from gradcam.metrics import road_solver
    from gradcam.metrics.road import DEFAULT_PERCENTILES, NEIGHBOUR_WEIGHTS, road_masks

    if not args.skip_startup:
        for key, value in startup(args.repeat).items():
            print(f"{key:32s} {value:8.0f} ms CPU")
    assert road_solver.available(), "numba is not installed (or GRADCAM_NO_JIT is set)"
    solvers = {"lu": lambda *system: road_solver.solve_lu(*system, order="mmd"), "lu_nd": road_solver.solve_lu,
               "multigrid": road_solver.solve_multigrid, "solve": road_solver.solve}
    times = {(order, p, name): [] for order in ("morf", "lerf") for p in DEFAULT_PERCENTILES for name in solvers}
    worst = {name: 0.0 for name in solvers}
    warm = np.random.default_rng(0).random((40, 40)) < 0.9
    road_solver.solve_multigrid(*road_solver.system(np.ones((40, 40, 3), np.float32), warm, NEIGHBOUR_WEIGHTS), warm)
    road_solver.dissection(224, 224)
    for index, name in enumerate(args.photos):
        image, hot = photo(name), heatmap(index)
        for order in ("morf", "lerf"):
            masks = road_masks(hot, DEFAULT_PERCENTILES, order == "morf", "random", np.random.default_rng(index))
            for p, removed in zip(DEFAULT_PERCENTILES, masks):
                for _ in range(args.repeat):
                    answers = {}
                    for solver, function in solvers.items():  # interleaved: the machine's load hits all alike
                        answers[solver], ms = cpu_ms(lambda: function(*road_solver.system(image, removed,
                                                                                          NEIGHBOUR_WEIGHTS), removed))
                        times[order, p, solver].append(ms)
                    for solver in solvers:
                        worst[solver] = max(worst[solver], float(np.abs(answers[solver] - answers["lu"]).max()))
    print(f"{'order':5s} {'pct':>4s} {'removed':>8s} " + " ".join(f"{name:>10s}" for name in solvers)
          + "   (CPU ms per imputation, medians)")
    totals = dict.fromkeys(solvers, 0.0)
    for order in ("morf", "lerf"):
        for p in DEFAULT_PERCENTILES:
            medians = {name: statistics.median(times[order, p, name]) for name in solvers}
            for name in solvers:
                totals[name] += medians[name]
            print(f"{order:5s} {p:4d} {1 - p / 100:8.0%} "
                  + " ".join(f"{medians[name]:10.1f}" for name in solvers))
    print("per photo (the 18 imputations' medians added up): "
          + ", ".join(f"{name} {totals[name] / 1e3:.2f} s" for name in solvers))
    print("speed-up over LU: " + ", ".join(f"{name} {totals['lu'] / totals[name]:.2f}x" for name in solvers))
    print("largest difference to LU, grey levels (0-255): "
          + ", ".join(f"{name} {worst[name]:.1e}" for name in solvers if name != "lu"))


if __name__ == "__main__":
    main()
