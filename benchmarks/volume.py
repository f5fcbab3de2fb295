"""Cost of explaining one 3-D volume: a small Conv3D classifier (random weights) on a 128^3 volume,
Grad-CAM of its last convolution, the map upsampled to 128^3 with scipy.ndimage.zoom, and the montage;
then the folder run on one NIfTI volume (read, resample, explain, write the .npy, .nii.gz, montage and
three-plane panel, manifest), the model already loaded.

    python benchmarks/volume.py --side 128 --repeats 3
"""
from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--side", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras

    from gradcam.explainers.explainer import Explainer
    from gradcam.explainers.heatmap import heatmap_at
    from gradcam.outputs.render import montage

    keras.utils.set_random_seed(0)
    side = args.side
    inputs = keras.Input((side, side, side, 1))
    x = inputs
    for filters in (16, 32, 64):
        x = keras.layers.Conv3D(filters, 3, strides=2, padding="same", activation="relu")(x)
    x = keras.layers.Conv3D(64, 3, padding="same", activation="relu", name="last_conv")(x)
    x = keras.layers.GlobalAveragePooling3D()(x)
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(x))
    volume = np.random.default_rng(0).uniform(0, 1, (1, side, side, side, 1)).astype(np.float32)
    explainer = Explainer(model)
    explainer.explain_batch(volume)  # trace
    rows = {"explain (forward, gradient, map)": [], "upsample to the volume (zoom, 3-D)": [], "montage (8 slices)": []}
    for _ in range(args.repeats):
        start = time.perf_counter()
        cam = explainer.explain_batch(volume).cams[0]
        rows["explain (forward, gradient, map)"].append(time.perf_counter() - start)
        start = time.perf_counter()
        heatmap, _ = heatmap_at(cam, (side,) * 3)
        rows["upsample to the volume (zoom, 3-D)"].append(time.perf_counter() - start)
        start = time.perf_counter()
        montage(volume[0], heatmap)
        rows["montage (8 slices)"].append(time.perf_counter() - start)
    rows["folder run of one .nii.gz (read + explain + all outputs)"] = _folder_runs(explainer, volume[0], args.repeats)
    print(f"{side}^3 volume, map {explainer.map_size}, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores; median of {args.repeats}")
    for name, times in rows.items():
        print(f"| {name} | {sorted(times)[len(times) // 2]:.3f} s |")
    return 0


def _folder_runs(explainer, volume: np.ndarray, repeats: int) -> list[float]:
    """Seconds of :func:`gradcam.runs.pipeline.run` on one NIfTI volume, a fresh output folder each time."""
    import tempfile
    from pathlib import Path

    import nibabel

    from gradcam.inputs.discovery import discover_inputs
    from gradcam.runs.pipeline import RunOptions, run

    times = []
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "volume.nii.gz"
        nibabel.save(nibabel.Nifti1Image(volume[..., 0], np.diag([1.0, 1.0, 1.0, 1.0])), path)
        items = discover_inputs([path])
        for repeat in range(repeats + 1):  # the first run warms the render threads up: not counted
            start = time.perf_counter()
            summary = run(explainer, items, RunOptions(output_dir=Path(folder) / f"out{repeat}"))
            assert summary.explained == 1, summary.failures
            times.append(time.perf_counter() - start)
    return times[1:]


if __name__ == "__main__":
    raise SystemExit(main())
