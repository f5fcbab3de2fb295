"""What the command line can check and record before any model loads: the model's names, files and
classes, and the request that identifies a run's outputs."""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from ..errors import UsageError
from ..names import MODEL_NAMES

#: the classes of the built-in (ImageNet) models
IMAGENET_CLASSES = 1000


def check_model_options(args: argparse.Namespace) -> None:
    """What can be checked of --model, --weights, --preprocess, --labels, --layer, --class, --class-index
    and --top-k without loading the model (and TensorFlow): unknown names (layers from the model file's
    configuration or the built-in model's shipped list), missing or broken files, class indices and
    ranks past the known classes, class names not among the known ones."""
    from ..models.classes import read_labels
    from ..models.loading import check_model_request

    check_model_request(args.model, args.weights, args.preprocess)
    builtin = args.model.lower() in MODEL_NAMES
    classes = None
    if args.labels is not None:
        classes = len(read_labels(args.labels))
    elif builtin:
        classes = IMAGENET_CLASSES
    if classes is not None and args.top_k > classes:
        raise UsageError(f"--top-k must be between 1 and the number of classes ({classes}), not {args.top_k}")
    if builtin and args.class_index is not None and args.class_index >= IMAGENET_CLASSES:
        raise UsageError(f"class index {args.class_index} is out of range: the model has {IMAGENET_CLASSES} "
                         f"classes (0-{IMAGENET_CLASSES - 1})")
    if args.class_name is not None and (builtin or args.labels is not None):
        from ..models.classes import find_class, imagenet_synonyms

        if args.labels is not None:
            find_class(args.class_name, read_labels(args.labels))
        else:
            synonyms = imagenet_synonyms()
            find_class(args.class_name, [group[0] for group in synonyms], synonyms)
    if args.layer is not None:
        from ..models.model_config import builtin_layer_names, check_layer_name, config_layer_names, read_config

        check_layer_name(args.layer, builtin_layer_names(args.model) if builtin
                         else config_layer_names(read_config(args.model)))


def request_of(args: argparse.Namespace) -> dict:
    """Everything the command line asked for that shapes the outputs, with the content digest of every
    file it names and the versions of gradcam, TensorFlow and Keras: two runs with equal requests make
    the same outputs (from the same inputs), so a rerun can skip up-to-date outputs without loading
    the model."""
    from .._version import __version__ as version  # read now: the installed version
    from .._version import library_versions
    from ..outputs.manifest import describe_file

    builtin = args.model.lower() in MODEL_NAMES
    model = args.model.lower() if builtin else args.model
    return {
        "version": version, **library_versions(), "model": model,
        "model_file": None if builtin else describe_file(args.model),
        "weights": args.weights, "weights_file": describe_file(args.weights), "preprocess": args.preprocess,
        "labels": args.labels, "labels_file": describe_file(args.labels), "layer": args.layer,
        "output": args.model_output, "region": list(args.region) if args.region else None,
        "mask": args.mask, "mask_file": describe_file(args.mask),
        "window": list(args.window) if args.window else None,
        "method": args.method, "eigen_smooth": args.eigen_smooth, "aug_smooth": args.aug_smooth,
        "max_channels": args.max_channels, "extra_tokens": args.extra_tokens, "class_index": args.class_index,
        "class_name": args.class_name, "top_k": args.top_k, "alpha": args.alpha, "colormap": args.colormap,
        "panel": args.panel, "save_npy": args.save_npy, "png_compression": args.png_compression,
        "max_size": args.max_size, "evaluate": bool(args.evaluate or args.plot),
        "steps": args.steps if (args.evaluate or args.plot) else None, "plot": args.plot,
        "evaluation": getattr(args, "evaluation", None),
    }


def evaluation_settings(args: argparse.Namespace):
    """``gradcam evaluate``'s :class:`~gradcam.metrics.evaluation.EvaluationSettings` from its options
    (checked: one line for a wrong value, before any model loads); None for the other commands, whose
    ``--evaluate`` and ``--plot`` score deletion, insertion and average drop alone."""
    if args.command != "evaluate":
        return None
    from ..metrics.evaluation import EvaluationSettings, default_families

    for flag, name, kind in (("--boxes", args.boxes, "file"), ("--masks", args.masks, "folder")):
        if name is None or (Path(name).is_file() if kind == "file" else Path(name).is_dir()):
            continue
        if not os.path.lexists(name):
            raise UsageError(f"{flag}: no such {kind}: {name}")
        raise UsageError(f"{flag}: {name} is not {'a regular file' if kind == 'file' else 'a folder'}")
    if args.masks is not None and args.output is not None:
        masks, output = Path(args.masks).resolve(), Path(args.output).resolve()
        if output == masks or masks in output.parents:  # overlays read as masks, the folder's digest never stable
            raise UsageError(f"--masks: the output folder {args.output} lies in the masks folder {args.masks}: "
                             "write the outputs elsewhere")
    families = args.metrics or default_families(bool(args.boxes or args.masks))
    extra = {} if args.road_percentiles is None else {"road_percentiles": args.road_percentiles}
    if args.sensitivity_radius is not None:
        extra["sensitivity_radius"] = args.sensitivity_radius
    settings = EvaluationSettings(families=tuple(families), steps=args.steps, tolerance=args.tolerance,
                                  sensitivity_samples=args.sensitivity_samples, baselines=args.baselines,
                                  boxes=args.boxes, masks=args.masks, seed=args.seed, **extra)
    if settings.boxes is not None:
        from ..inputs.ground_truth import read_boxes

        read_boxes(settings.boxes)  # a broken file: its one line now, not after the model loads
    return settings
