"""How long a rerun takes when every output is up to date: it must not load TensorFlow or the model.

Makes N small photos and a small .keras classifier in a temporary folder, explains them once, then
times `python -m gradcam ...` again on the same folder (a fresh process, as a user's rerun) and says
whether TensorFlow was imported.

    python benchmarks/resume.py --images 1000
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        photos = tmp / "photos"
        photos.mkdir()
        rng = np.random.default_rng(0)
        for i in range(args.images):
            Image.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)).save(photos / f"p{i:05d}.png")
        import keras

        inputs = keras.Input((32, 32, 3))
        x = keras.layers.Conv2D(4, 3, activation="relu", name="conv")(inputs)
        model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(keras.layers.GlobalAveragePooling2D()(x)))
        model.save(tmp / "model.keras")
        command = [sys.executable, "-m", "gradcam", "--model", str(tmp / "model.keras"), str(photos), "-o",
                   str(tmp / "out")]
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True, env=env)
        print(f"first run ({args.images} images): {time.perf_counter() - start:.1f} s")
        probe = ("import runpy, sys; sys.argv = ['gradcam'] + sys.argv[1:]\n"
                 "try:\n    runpy.run_module('gradcam', run_name='__main__')\n"
                 "except SystemExit as exit:\n    print('tensorflow imported:', 'tensorflow' in sys.modules)\n"
                 "    raise")
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            done = subprocess.run([sys.executable, "-c", probe, *command[3:]], capture_output=True, text=True, env=env)
            times.append(time.perf_counter() - start)
        print(done.stdout.strip().splitlines()[-2])
        print(done.stdout.strip().splitlines()[-1])
        print(f"rerun, every output up to date: {', '.join(f'{t:.2f}' for t in times)} s "
              f"(median {sorted(times)[len(times) // 2]:.2f} s, exit {done.returncode})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
