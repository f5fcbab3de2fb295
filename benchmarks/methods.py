"""Cost of every CAM method and option: images per second on VGG19 at 224 x 224 (random weights).

Each method explains a few batches after one warm-up batch (tracing excluded); Score-CAM and
Ablation-CAM, which need about one forward pass per channel, explain one image after a
warm-up. tf-keras-vis ``Scorecam`` is timed on the same model and image, side by side with
ours, with all channels and with ``max_N`` / ``--max-channels``. Prints a Markdown table.

    python benchmarks/methods.py                 # every row (about 8 minutes on 2 CPU cores)
    python benchmarks/methods.py --quick         # fewer images, no full-channel rows
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import numpy as np


def rate(explainer, images: np.ndarray, batch_size: int) -> float:
    """Images per second of explain_batch over ``images``, after one warm-up batch."""
    explainer.explain_batch(images[:batch_size])
    start = time.perf_counter()
    for i in range(0, len(images), batch_size):
        explainer.explain_batch(images[i : i + batch_size])
    return len(images) / (time.perf_counter() - start)


def perturbation_rate(explainer, image: np.ndarray) -> float:
    """Images per second for one image, after a warm-up on the same image with 2 channels."""
    full = explainer.max_channels
    explainer.max_channels = 2
    explainer.explain_batch(image[None])
    explainer.max_channels = full
    start = time.perf_counter()
    explainer.explain_batch(image[None])
    return 1.0 / (time.perf_counter() - start)


def tf_keras_vis_rate(model, image: np.ndarray, class_index: int, max_n: int | None, batch_size: int) -> float:
    from tf_keras_vis.scorecam import Scorecam
    from tf_keras_vis.utils.model_modifiers import ReplaceToLinear
    from tf_keras_vis.utils.scores import CategoricalScore

    from gradcam.models.loading import preprocess_function

    scorecam = Scorecam(model, model_modifier=ReplaceToLinear(), clone=True)
    seed = np.asarray(preprocess_function("vgg19")(image[None].copy()))
    score = CategoricalScore([class_index])
    scorecam(score, seed, penultimate_layer="block5_conv4", max_N=2, batch_size=batch_size)  # warm-up
    start = time.perf_counter()
    scorecam(score, seed, penultimate_layer="block5_conv4", max_N=max_n or -1, batch_size=batch_size)
    return 1.0 / (time.perf_counter() - start)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=24, help="images for the one-pass methods")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", metavar="FILE", help="also write the rows as JSON")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from gradcam._tf import import_tf
    from gradcam.explainers.explainer import Explainer
    from gradcam.models.loading import load_classifier
    from gradcam.explainers.methods import METHODS

    import_tf()
    classifier = load_classifier("vgg19", "random")
    count = 8 if args.quick else args.images
    images = np.random.default_rng(0).uniform(0, 255, (count, 224, 224, 3)).astype(np.float32)
    rows: list[tuple[str, str, float]] = []

    def add(method: str, options: str, value: float) -> None:
        rows.append((method, options, value))
        print(f"{method:<16} {options:<28} {value:10.4f} img/s", file=sys.stderr, flush=True)

    for method in METHODS:
        add(method, "", rate(Explainer(classifier, method=method), images, args.batch_size))
    add("gradcam", "--eigen-smooth", rate(Explainer(classifier, eigen_smooth=True), images, args.batch_size))
    add("gradcam", "--aug-smooth", rate(Explainer(classifier, aug_smooth=True), images, args.batch_size))
    channel_options = [64] if args.quick else [None, 64]
    for max_channels in channel_options:
        label = f"--max-channels {max_channels}" if max_channels else "all 512 channels"
        for method in ("scorecam", "ablationcam"):
            explainer = Explainer(classifier, method=method, max_channels=max_channels, batch_size=32)
            add(method, label, perturbation_rate(explainer, images[0]))
        class_index = int(Explainer(classifier).explain_batch(images[:1]).class_index[0])
        add("tf-keras-vis Scorecam", label.replace("--max-channels", "max_N"),
            tf_keras_vis_rate(classifier.model, images[0], class_index, max_channels, 32))

    print(f"VGG19 (random weights), 224 x 224, batch size {args.batch_size} (masks: 32), "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, TensorFlow on CPU\n")
    print("| method | options | images/s | seconds/image |\n|---|---|---|---|")
    for method, options, value in rows:
        print(f"| `{method}` | {options} | {value:.3g} | {1 / value:.3g} |")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump([{"method": m, "options": o, "images_per_s": v} for m, o, v in rows], handle, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
