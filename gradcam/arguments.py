"""The command line's arguments: the parser of each subcommand, and the checks argparse cannot make.

Imports only the standard library and light modules, so ``gradcam --help`` answers without TensorFlow.
"""
from __future__ import annotations

import argparse

from ._version import __version__
from .errors import UsageError
from .inputs.images import DEFAULT_MAX_PIXELS
from .inputs.medical import parse_window
from .names import (
    METRIC_FAMILIES,
    DEFAULT_BATCH_SIZE,
    IMAGE_EXTENSIONS,
    METHOD_NAMES,
    MODEL_NAMES,
    PERTURBATION_METHOD_NAMES,
    VOLUME_EXTENSIONS,
)

SUBCOMMANDS = {
    "evaluate": "Explain the inputs and score each heatmap: faithfulness (deletion, insertion, average drop), "
                "ROAD, complexity, and with --boxes or --masks localisation (pointing game, energy pointing "
                "game, relevance mass and rank); max-sensitivity on request; each beside a random and a Sobel "
                "edge map of the same photo. --methods ranks several methods metric by metric.",
    "sanity": "Model-randomisation sanity check (Adebayo et al., 2018): re-initialise the model's layers "
              "from the top down and report how much the heatmaps change.",
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gradcam" + (f" {command}" if command else ""),
        description=SUBCOMMANDS.get(command) or (
            "Explain an image classifier's predictions with Grad-CAM heatmaps laid over the photos. "
            "Also: 'gradcam evaluate INPUT...' (scores, method ranking), 'gradcam sanity INPUT...' "
            "(model-randomisation test), 'gradcam status OUTPUT' (progress of sharded runs), 'gradcam atlas "
            "OUTPUT' (where the model looks across a dataset) and 'gradcam compare A B' (two runs' maps)."),
        epilog=(f"Image files read from folders: {' '.join(IMAGE_EXTENSIONS)} (any case; for a volumetric "
                f"(3-D) model, volumes: {' '.join(VOLUME_EXTENSIONS)}); hidden files "
                "and other files are ignored. Exit status: 0 all explained, 1 some input failed or the "
                "model could not be loaded, 2 wrong arguments, 130 interrupted."),
    )
    parser.add_argument("inputs", nargs="*", metavar="INPUT",
                        help="image files (DICOM too) and/or folders; volumes (.npy, NIfTI) for 3-D models")
    parser.add_argument("--version", action="version", version=f"gradcam {__version__}")
    parser.add_argument("-r", "--recursive", action="store_true", help="descend into sub-folders")
    parser.add_argument("-o", "--output", default="gradcam_output", metavar="DIR",
                        help="output folder (default: %(default)s)")
    model = parser.add_argument_group("model")
    model.add_argument("--model", default="vgg19", metavar="NAME|PATH",
                       help=f"{', '.join(MODEL_NAMES)}, or a saved .keras/.h5 model (default: %(default)s)")
    model.add_argument("--weights", default="imagenet", metavar="imagenet|random|PATH",
                       help="imagenet (downloaded and cached by Keras on first use), a local weights file "
                            "(.h5 or .weights.h5) for offline use, or random (untrained, for testing)")
    model.add_argument("--preprocess", default=None, metavar="NAME",
                       help="keras.applications preprocessing family (vgg19, resnet, ...) or none; "
                            "default: the architecture's own, none for model files")
    model.add_argument("--labels", default=None, metavar="FILE", help="class names, one per line")
    explain = parser.add_argument_group("explanation")
    explain.add_argument("--layer", default=None, metavar="NAME",
                         help="layer to explain, by name or nested path (default: the last convolutional "
                              "feature map, e.g. block5_conv4 for VGG19)")
    explain.add_argument("--list-layers", action="store_true", help="list the layers that can be explained and exit")
    classes = explain.add_mutually_exclusive_group()
    classes.add_argument("--class-index", type=int, default=None, metavar="N",
                         help="explain class N instead of the top-1 prediction")
    classes.add_argument("--class", dest="class_name", default=None, metavar="NAME",
                         help="explain the class with this name (ImageNet names, or --labels names)")
    classes.add_argument("--top-k", type=int, default=1, metavar="K",
                         help="one heatmap for each of the K most probable classes (files NAME.top1.png ...)")
    explain.add_argument("--model-output", dest="model_output", default=None, metavar="NAME",
                         help="for a model with several outputs: the one to explain (a one-unit linear output "
                              "is a regression, explained as its value)")
    explain.add_argument("--region", type=parse_box, default=None, metavar="X0,Y0,X1,Y1",
                         help="segmentation models: explain the class over this box of each photo (pixels, "
                              "x0 <= x < x1, y0 <= y < y1); default: the pixels the model assigns to the class")
    explain.add_argument("--mask", default=None, metavar="FILE",
                         help="segmentation models: explain the class over the non-black pixels of this image, "
                              "stretched over each photo (of the same aspect ratio)")
    explain.add_argument("--method", default="gradcam", choices=METHOD_NAMES, help="CAM method (default: gradcam)")
    explain.add_argument("--eigen-smooth", action="store_true",
                         help="the first principal component of the weighted activations instead of their sum")
    explain.add_argument("--aug-smooth", action="store_true",
                         help="average the maps over horizontal flip x brightness 1.0/1.1/0.9 (6x the cost)")
    explain.add_argument("--max-channels", type=int, default=None, metavar="N",
                         help="scorecam/ablationcam: use only the N channels of largest activation variance "
                              "(Faster Score-CAM); default: all")
    explain.add_argument("--extra-tokens", type=int, default=None, metavar="K",
                         help="transformer layers: the K leading tokens that are not image patches (class, "
                              "distillation); default: detected as the K that leaves a square grid")
    explain.add_argument("--window", type=_window, default=None, metavar="CENTRE,WIDTH",
                         help="DICOM: the grey-level window (e.g. 40,400; a negative centre as --window=-600,1500), "
                              "instead of each file's own VOI LUT or window (or, without either, its "
                              "range without padding)")
    output = parser.add_argument_group("output")
    output.add_argument("--alpha", type=float, default=0.4, metavar="A",
                        help="opacity of the heatmap over the photo, 0-1 (default: %(default)s)")
    output.add_argument("--colormap", default="jet", metavar="NAME", help="matplotlib colormap (default: %(default)s)")
    output.add_argument("--save-npy", action="store_true",
                        help="also write the heatmap at the photo's size as float32 .npy in [0, 1]")
    output.add_argument("--panel", action="store_true",
                        help="save the photo and the overlay side by side, titled with class, probability, "
                             "layer and method, instead of the bare overlay")
    output.add_argument("--png-compression", type=int, default=None, metavar="LEVEL",
                        help="write PNGs through Pillow at this zlib level, 0 (fastest, largest) to 9 (slowest, "
                             "smallest); default: the fpng encoder where installed (much faster, same pixels), "
                             "else level 1")
    output.add_argument("--max-size", type=int, default=None, metavar="N",
                        help="cap the longer side of the overlay (and the .npy) at N pixels, keeping the aspect "
                             "ratio; default: the photo's own size")
    output.add_argument("--overwrite", action="store_true", help="redo outputs that already exist (default: skip them)")
    scores = parser.add_argument_group("faithfulness (gradcam evaluate)")
    scores.add_argument("--evaluate", action="store_true", default=command == "evaluate",
                        help="also compute deletion/insertion AUC and average drop for each heatmap")
    scores.add_argument("--steps", type=int, default=20, metavar="N",
                        help="deletion/insertion steps (default: %(default)s)")
    scores.add_argument("--plot", action="store_true", help="save the deletion/insertion curves as NAME.curves.png")
    if command == "evaluate":
        _evaluation_arguments(parser.add_argument_group("evaluation (gradcam evaluate)"))
    if command == "sanity":
        sanity = parser.add_argument_group("model randomisation (gradcam sanity)")
        sanity.add_argument("--draws", type=_at_least_one, default=3, metavar="N",
                            help="independent random re-initialisations of the cascade, each with its own seeds: "
                                 "the verdict's confidence interval covers images and draws (default: %(default)s; "
                                 "each draw costs one explanation of every image per layer with weights)")
        sanity.add_argument("--seed", type=int, default=0, metavar="S",
                            help="seed of the random weights and of the bootstrap interval (default: %(default)s)")
    run = parser.add_argument_group("run")
    run.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE, metavar="N",
                     help="model inputs per forward pass: photos, or for scorecam/ablationcam the masked or "
                          "ablated copies of one photo (default: %(default)s)")
    run.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS, metavar="N",
                     help="refuse images with more pixels than this (default: %(default)s)")
    run.add_argument("--shard", type=parse_shard, default=None, metavar="I/N",
                     help="explain only shard I of N (0 <= I < N), chosen by a stable hash of each input's path, "
                          "into OUTPUT/manifest.shard-I-of-N.jsonl: for job arrays (see 'gradcam status')")
    run.add_argument("--ray", nargs="?", const="", default=None, metavar="ADDRESS",
                     help="run on a Ray cluster with Ray Data: ADDRESS, else RAY_ADDRESS, else a local Ray "
                          "started for the run (needs Ray: pip install \"ray[data]\")")
    run.add_argument("--ray-workers", type=int, default=None, metavar="N",
                     help="with --ray: actors, each holding one explainer (default: one per GPU, else 1)")
    run.add_argument("--verbose", action="store_true", help="show TensorFlow's own log messages")
    return parser


def _evaluation_arguments(group) -> None:
    group.add_argument("--metrics", type=_words, default=None, metavar="LIST",
                       help=f"metric families, comma-separated, from {', '.join(METRIC_FAMILIES)} (default: "
                            "faithfulness,road,complexity, and localisation with --boxes or --masks)")
    group.add_argument("--boxes", default=None, metavar="FILE",
                       help="ground truth: a CSV of image,x0,y0,x1,y1[,class] or a COCO JSON, boxes in each "
                            "original photo's (upright) pixels")
    group.add_argument("--masks", default=None, metavar="DIR",
                       help="ground truth: a folder with a mask image per input (same relative path), non-zero "
                            "on the object")
    group.add_argument("--tolerance", type=float, default=15.0, metavar="PX",
                       help="pointing game: a hit within this many photo pixels of the object (default: %(default)s)")
    group.add_argument("--road-percentiles", type=_numbers, default=None, metavar="LIST",
                       help="ROAD: the percentages of pixels removed, comma-separated (default: 10,20,...,90)")
    group.add_argument("--sensitivity-samples", type=int, default=10, metavar="N",
                       help="max-sensitivity (--metrics ...,robustness): noisy copies explained per image "
                            "(default: %(default)s)")
    group.add_argument("--sensitivity-radius", type=float, default=None, metavar="R",
                       help="max-sensitivity: uniform noise in [-R, R] on pixels of 0-255")
    group.add_argument("--no-baselines", dest="baselines", action="store_false",
                       help="do not also score a random map and a Sobel edge map of each photo")
    group.add_argument("--methods", type=_words, default=None, metavar="LIST",
                       help="rank these methods (comma-separated) on the inputs: each into OUTPUT/METHOD/, the "
                            "table into OUTPUT/ranking.csv and ranking.png")
    group.add_argument("--seed", type=int, default=0, metavar="S",
                       help="seed of the random baseline, ROAD's noise and max-sensitivity's (default: %(default)s)")


def _words(text: str) -> tuple[str, ...]:
    """'a,b, c' -> ('a', 'b', 'c'); an empty list is a usage error."""
    words = tuple(word.strip().lower() for word in text.split(",") if word.strip())
    if not words:
        raise argparse.ArgumentTypeError(f"{text!r} names nothing (a comma-separated list)")
    return words


def _numbers(text: str) -> tuple[float, ...]:
    """'10,20.5' -> (10.0, 20.5); anything else is a usage error."""
    try:
        return tuple(float(word) for word in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of numbers") from None


def parse_box(text: str) -> tuple[int, int, int, int]:
    """'X0,Y0,X1,Y1' -> a box of whole pixels with x0 < x1 and y0 < y1; anything else is a usage error."""
    parts = text.split(",")
    if len(parts) != 4 or not all(part.strip().lstrip("-").isdigit() for part in parts):
        raise argparse.ArgumentTypeError(f"{text!r} is not X0,Y0,X1,Y1 (four whole numbers, e.g. 10,20,110,220)")
    x0, y0, x1, y1 = (int(part) for part in parts)
    if not (x0 < x1 and y0 < y1):
        raise argparse.ArgumentTypeError(f"{text!r}: the box needs x0 < x1 and y0 < y1")
    return x0, y0, x1, y1


def _at_least_one(text: str) -> int:
    """A whole number >= 1 (gradcam sanity --draws); anything else is a usage error."""
    if not text.strip().isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return int(text)


def _window(text: str) -> tuple[float, float]:
    try:
        return parse_window(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def parse_shard(text: str) -> tuple[int, int]:
    """'I/N' -> (I, N) with 0 <= I < N; anything else is a usage error."""
    index, _, count = text.partition("/")
    if not (index.isdigit() and count.isdigit()) or not 0 <= int(index) < int(count):
        raise argparse.ArgumentTypeError(f"{text!r} is not I/N with 0 <= I < N (e.g. 0/4)")
    return int(index), int(count)




def check_options(args: argparse.Namespace) -> None:
    """Values argparse cannot check alone.

    Raises:
        UsageError: the first wrong value.
    """
    if not 0.0 <= args.alpha <= 1.0:
        raise UsageError(f"--alpha must be between 0 and 1, not {args.alpha}")
    if not 1 <= args.steps <= 1000:  # each step is two model inputs of one batch
        raise UsageError(f"--steps must be from 1 to 1000, not {args.steps}")
    if args.top_k < 1:
        raise UsageError(f"--top-k must be at least 1, not {args.top_k}")
    if args.batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1, not {args.batch_size}")
    if args.max_channels is not None and args.max_channels < 1:
        raise UsageError(f"--max-channels must be at least 1, not {args.max_channels}")
    if args.extra_tokens is not None and args.extra_tokens < 0:
        raise UsageError(f"--extra-tokens cannot be negative, not {args.extra_tokens}")
    if args.png_compression is not None and not 0 <= args.png_compression <= 9:
        raise UsageError(f"--png-compression must be between 0 and 9, not {args.png_compression}")
    if args.max_size is not None and args.max_size < 1:
        raise UsageError(f"--max-size must be at least 1, not {args.max_size}")
    if args.ray_workers is not None and args.ray_workers < 1:
        raise UsageError(f"--ray-workers must be at least 1, not {args.ray_workers}")
    if args.max_pixels < 1:
        raise UsageError(f"--max-pixels must be at least 1, not {args.max_pixels}")
    if args.class_index is not None and args.class_index < 0:
        raise UsageError(f"class index {args.class_index} is out of range: it cannot be negative")
    if args.max_channels is not None and args.method not in PERTURBATION_METHOD_NAMES:
        raise UsageError(f"--max-channels applies to {' and '.join(PERTURBATION_METHOD_NAMES)} only, not to "
                         f"--method {args.method}")
    if args.ray_workers is not None and args.ray is None:
        raise UsageError("--ray-workers applies to runs on Ray only: add --ray")
    if args.mask is not None and args.region is not None:
        raise UsageError("give either --region or --mask, not both")
    if args.mask is not None:
        from .inputs.masks import load_mask
        load_mask(args.mask)  # readable, not empty
    from .outputs.render import get_colormap
    get_colormap(args.colormap)
