"""Throughput and memory of a whole gradcam folder run against bare model.predict.

Builds N synthetic JPEG photos in a temporary folder, times
  1. bare forward: ``model.predict`` of VGG19 on the same batch size, and
  2. the full pipeline (decode, resize, forward + gradient + weighted sum,
     upsample, colour, PNG encode, atomic write, manifest),
and prints images/s for both, their ratio and the peak resident memory.
Start-up (imports, model build, the first compiled batch) is excluded from
both. Random weights: speed does not depend on the values. Works offline.

    python benchmarks/throughput.py --images 64 --batch-size 8
    python benchmarks/throughput.py --memory 32 512   # peak RSS of separate runs
    python benchmarks/throughput.py --images 32 --size 4000x3000   # 12-megapixel phone photos
    python benchmarks/throughput.py --model tiny --images 192      # the pipeline's own ceiling

``--model tiny`` is a near-free classifier (one 8-channel convolution at 224 x 224, global pooling, 1000
classes): what is left is the work after the model (decode, resize, zoom, colour, PNG, manifest),
reported as CPU milliseconds per photo. With c cores for that work and a model that keeps up (a GPU),
a run tops out near 1000 c / (core-ms per photo) photos per second.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image


def make_folder(folder: Path, count: int, size=(640, 480)) -> None:
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (size[1] // 8, size[0] // 8, 3), dtype=np.uint8)
    for i in range(count):
        tile = np.roll(base, i, axis=1)
        photo = Image.fromarray(tile).resize(size, Image.BILINEAR)
        photo.save(folder / f"photo_{i:05d}.jpg", quality=90)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def tiny_classifier():
    """A near-free classifier at 224 x 224: its forward and backward pass cost next to nothing."""
    from gradcam._tf import import_tf
    from gradcam.models.loading import Classifier

    _, keras = import_tf()
    keras.utils.set_random_seed(0)
    inputs = keras.Input((224, 224, 3))
    x = keras.layers.Conv2D(8, 3, strides=16, activation="relu", name="last_conv")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(1000, activation="softmax")(x), name="tiny")
    return Classifier(model, "tiny", (224, 224), "none")


#: CPU seconds of the run's finished threads, by thread name without its number ("gradcam-render", ...)
THREAD_CPU: dict[str, float] = {}


def count_thread_cpu() -> None:
    """From now on, every thread that ends adds its CPU time (time.thread_time) to THREAD_CPU: the pools'
    threads end when the run shuts them down, so the run's stages can be told apart."""
    import threading

    run_thread = threading.Thread.run

    def run_and_count(self):
        try:
            return run_thread(self)
        finally:
            name = self.name.rstrip("0123456789_")
            THREAD_CPU[name] = THREAD_CPU.get(name, 0.0) + time.thread_time()

    threading.Thread.run = run_and_count


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure(count: int, batch_size: int, model_name: str, skip_bare: bool, size=(640, 480), **run_options) -> dict:
    from gradcam.explainers.explainer import Explainer
    from gradcam.inputs.discovery import discover_inputs
    from gradcam.models.loading import load_classifier
    from gradcam.runs.pipeline import RunOptions, run

    with tempfile.TemporaryDirectory() as tmp:
        folder, out = Path(tmp) / "photos", Path(tmp) / "out"
        folder.mkdir()
        make_folder(folder, count, size)
        classifier = tiny_classifier() if model_name == "tiny" else load_classifier(model_name, "random")
        explainer = Explainer(classifier)
        h, w = classifier.input_size
        result = {"images": count, "photo_size": f"{size[0]}x{size[1]}", "batch_size": batch_size,
                  "model": model_name, **run_options}

        if not skip_bare:
            from gradcam.models.loading import preprocess_function

            batch = preprocess_function(classifier.preprocess)(
                np.random.default_rng(1).uniform(0, 255, (count, h, w, 3)).astype(np.float32))
            classifier.model.predict(batch[:batch_size], batch_size=batch_size, verbose=0)  # warm-up
            start = time.perf_counter()
            classifier.model.predict(batch, batch_size=batch_size, verbose=0)
            result["bare_predict_images_per_s"] = count / (time.perf_counter() - start)
            # a second, stricter baseline: the model called in one tf.function per batch, no predict() overhead
            import tensorflow as tf

            forward = tf.function(lambda x: classifier.model(x, training=False),
                                  input_signature=[tf.TensorSpec((None, h, w, 3), tf.float32)])
            forward(tf.constant(batch[:batch_size]))
            start = time.perf_counter()
            for i in range(0, count, batch_size):
                forward(tf.constant(batch[i : i + batch_size])).numpy()
            result["bare_compiled_images_per_s"] = count / (time.perf_counter() - start)
            result["bare_images_per_s"] = max(result["bare_predict_images_per_s"], result["bare_compiled_images_per_s"])
            del batch

        explainer.explain_batch(np.zeros((batch_size, h, w, 3), np.float32))  # trace once, as a run would
        items = discover_inputs([folder])
        first_batch_done: list[float] = []
        explain_batch = explainer.explain_batch

        def timed_explain_batch(*args, **kwargs):
            result_ = explain_batch(*args, **kwargs)
            if not first_batch_done:
                first_batch_done.append(time.perf_counter())
            return result_

        explainer.explain_batch = timed_explain_batch
        THREAD_CPU.clear()
        start, cpu_start, main_start = time.perf_counter(), cpu_seconds(), time.thread_time()
        run(explainer, items, RunOptions(output_dir=out, batch_size=batch_size, **run_options))
        end, cpu_end, main_end = time.perf_counter(), cpu_seconds(), time.thread_time()
        result["cpu_ms_per_image"] = (cpu_end - cpu_start) / count * 1000
        # where that CPU time went: the decode pool, the render pool, the main thread (batches, model
        # calls, manifest) and the rest (TensorFlow's own threads)
        stages = {f"cpu_ms_{name.replace('gradcam-', '')}": seconds / count * 1000
                  for name, seconds in sorted(THREAD_CPU.items()) if name.startswith("gradcam-")}
        stages["cpu_ms_main"] = (main_end - main_start) / count * 1000
        stages["cpu_ms_other"] = result["cpu_ms_per_image"] - sum(stages.values())
        result.update(stages)
        total = end - start
        # steady state: every image after the first batch, from the end of the first model step
        # until the last output is written (rendering of all batches included)
        steady = (count - batch_size) / (end - first_batch_done[0])
        result["pipeline_images_per_s"] = steady
        result["pipeline_wall_images_per_s"] = count / total
        if "bare_images_per_s" in result:
            result["ratio"] = steady / result["bare_images_per_s"]
        result["peak_rss_mb"] = peak_rss_mb()
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--model", default="vgg19")
    parser.add_argument("--memory", type=int, nargs="*", metavar="N",
                        help="run the pipeline alone in a fresh process for each N and compare peak RSS")
    parser.add_argument("--size", default="640x480", metavar="WxH", help="photo size (default: %(default)s)")
    parser.add_argument("--png-compression", type=int, default=None, metavar="LEVEL")
    parser.add_argument("--max-size", type=int, default=None, metavar="N")
    parser.add_argument("--json", action="store_true", help="print one JSON line")
    parser.add_argument("--skip-bare", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if args.memory:
        peaks = {}
        for n in args.memory:
            done = subprocess.run([sys.executable, __file__, "--images", str(n), "--batch-size", str(args.batch_size),
                                   "--model", args.model, "--size", args.size, "--skip-bare", "--json"],
                                  capture_output=True, text=True, check=True)
            peaks[n] = json.loads(done.stdout.strip().splitlines()[-1])["peak_rss_mb"]
            print(f"{n:6d} images: peak RSS {peaks[n]:8.1f} MB")
        low, high = min(peaks), max(peaks)
        print(f"growth from {low} to {high} images: {peaks[high] - peaks[low]:+.1f} MB")
        return 0
    count_thread_cpu()
    from gradcam._tf import import_tf

    tf, _ = import_tf()
    width, height = (int(v) for v in args.size.lower().split("x"))
    run_options = {key: value for key, value in (("png_compression", args.png_compression),
                                                 ("max_size", args.max_size)) if value is not None}
    result = measure(args.images, args.batch_size, args.model, args.skip_bare, (width, height), **run_options)
    result["machine"] = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    result["gpus"] = [d.name for d in tf.config.list_physical_devices("GPU")]
    if args.json:
        print(json.dumps(result))
        return 0
    for key, value in result.items():
        print(f"{key:>28}: {value:.2f}" if isinstance(value, float) else f"{key:>28}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
