"""Images per second past one process: a local run, 2 shards side by side, Ray with 1 and 2 actors.

Every configuration runs the real command line (VGG19, random weights, 640x480 JPEGs) on two
folder sizes; the marginal rate (N2 - N1) / (T2 - T1) cancels the fixed costs (TensorFlow import,
model build, Ray start), leaving the cost per image. Ray's overhead per image is its marginal
time per image against the local configuration with the same number of workers (1 actor vs one
process, 2 actors vs 2 shards).

    python benchmarks/distributed.py --small 16 --large 64
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from throughput import make_folder  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def command(folder: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "gradcam", str(folder), "-o", str(out), "--weights", "random",
            "--batch-size", "8", *extra]


def timed(commands: list[list[str]]) -> float:
    """Wall seconds until every command (run side by side) has finished."""
    env = dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="3")
    start = time.perf_counter()
    processes = [subprocess.Popen(c, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env) for c in commands]
    for process in processes:
        _, err = process.communicate()
        if process.returncode != 0:
            raise SystemExit(f"failed: {err.decode()[-2000:]}")
    return time.perf_counter() - start


CONFIGS = {
    "local run (1 process)": lambda f, o: [command(f, o)],
    "2 shards side by side": lambda f, o: [command(f, o, "--shard", "0/2"), command(f, o, "--shard", "1/2")],
    "Ray, 1 actor": lambda f, o: [command(f, o, "--ray", "--ray-workers", "1")],
    "Ray, 2 actors": lambda f, o: [command(f, o, "--ray", "--ray-workers", "2")],
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", type=int, default=16)
    parser.add_argument("--large", type=int, default=64)
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        folders = {}
        for size in (args.small, args.large):
            folders[size] = Path(tmp) / f"photos{size}"
            folders[size].mkdir()
            make_folder(folders[size], size)
        for number, (name, make) in enumerate(CONFIGS.items()):
            times = {size: timed(make(folders[size], Path(tmp) / f"out{number}-{size}"))
                     for size in (args.small, args.large)}
            marginal = (args.large - args.small) / (times[args.large] - times[args.small])
            results[name] = (times, marginal)
            print(f"{name:<24} {args.small} images {times[args.small]:6.1f} s, {args.large} images "
                  f"{times[args.large]:6.1f} s, marginal {marginal:5.2f} img/s", file=sys.stderr, flush=True)
    print(f"\n| configuration | {args.small} images (s) | {args.large} images (s) | marginal images/s | "
          f"vs the same workers without Ray |\n|---|---|---|---|---|")
    pairs = {"Ray, 1 actor": "local run (1 process)", "Ray, 2 actors": "2 shards side by side"}
    for name, (times, marginal) in results.items():
        versus = ""
        if name in pairs:
            base = results[pairs[name]][1]
            versus = f"{(1 / marginal) / (1 / base) - 1:+.1%} time per image"
        print(f"| {name} | {times[args.small]:.1f} | {times[args.large]:.1f} | {marginal:.2f} | {versus} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
