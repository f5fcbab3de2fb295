"""Command line: parses arguments, calls the library, prints, and picks exit codes.

Imports only the standard library at module level, so ``gradcam --help`` and
``gradcam --version`` answer without loading TensorFlow.
"""
from __future__ import annotations

import argparse
import contextlib
import signal
import sys
from pathlib import Path
from typing import Sequence

from . import __version__
from .errors import GradcamError, UsageError
from .images import DEFAULT_MAX_PIXELS, IMAGE_EXTENSIONS
from .names import (
    ARCHITECTURES,
    GALLERY_NAME,
    MANIFEST_NAME,
    METHOD_NAMES,
    SANITY_REPORT_NAME,
)

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


SUBCOMMANDS = {
    "evaluate": "Explain the inputs and score each heatmap's faithfulness: deletion and insertion AUC "
                "(Petsiuk et al., 2018) and average drop (Chattopadhay et al., 2018).",
    "sanity": "Model-randomisation sanity check (Adebayo et al., 2018): re-initialise the model's layers "
              "from the top down and report how much the heatmaps change.",
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gradcam" + (f" {command}" if command else ""),
        description=SUBCOMMANDS.get(command) or (
            "Explain an image classifier's predictions with Grad-CAM heatmaps laid over the photos. "
            "Also: 'gradcam evaluate INPUT...' (faithfulness scores) and 'gradcam sanity INPUT...' "
            "(model-randomisation test)."),
        epilog=(f"Image files read from folders: {' '.join(IMAGE_EXTENSIONS)} (any case); hidden files "
                "and other files are ignored. Exit status: 0 all explained, 1 some input failed or the "
                "model could not be loaded, 2 wrong arguments, 130 interrupted."),
    )
    parser.add_argument("inputs", nargs="*", metavar="INPUT", help="image files and/or folders")
    parser.add_argument("--version", action="version", version=f"gradcam {__version__}")
    parser.add_argument("-r", "--recursive", action="store_true", help="descend into sub-folders")
    parser.add_argument("-o", "--output", default="gradcam_output", metavar="DIR",
                        help="output folder (default: %(default)s)")
    model = parser.add_argument_group("model")
    model.add_argument("--model", default="vgg19", metavar="NAME|PATH",
                       help=f"{', '.join(ARCHITECTURES)}, or a saved .keras/.h5 model (default: %(default)s)")
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
    output = parser.add_argument_group("output")
    output.add_argument("--alpha", type=float, default=0.4, metavar="A",
                        help="opacity of the heatmap over the photo, 0-1 (default: %(default)s)")
    output.add_argument("--colormap", default="jet", metavar="NAME", help="matplotlib colormap (default: %(default)s)")
    output.add_argument("--save-npy", action="store_true",
                        help="also write the heatmap at the photo's size as float32 .npy in [0, 1]")
    output.add_argument("--panel", action="store_true",
                        help="save the photo and the overlay side by side, titled with class, probability, "
                             "layer and method, instead of the bare overlay")
    output.add_argument("--overwrite", action="store_true", help="redo outputs that already exist (default: skip them)")
    scores = parser.add_argument_group("faithfulness (gradcam evaluate)")
    scores.add_argument("--evaluate", action="store_true", default=command == "evaluate",
                        help="also compute deletion/insertion AUC and average drop for each heatmap")
    scores.add_argument("--steps", type=int, default=20, metavar="N",
                        help="deletion/insertion steps (default: %(default)s)")
    scores.add_argument("--plot", action="store_true", help="save the deletion/insertion curves as NAME.curves.png")
    run = parser.add_argument_group("run")
    run.add_argument("--batch-size", type=int, default=8, metavar="N", help="images per forward pass (default: %(default)s)")
    run.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS, metavar="N",
                     help="refuse images with more pixels than this (default: %(default)s)")
    run.add_argument("--verbose", action="store_true", help="show TensorFlow's own log messages")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv.pop(0) if argv and argv[0] in SUBCOMMANDS else None
    parser = build_parser(command)
    try:
        args = parser.parse_args(argv)
        args.command = command
    except SystemExit as exc:  # --help, --version, or an argparse error (already printed)
        return int(exc.code or 0)
    previous = signal.getsignal(signal.SIGTERM)
    try:
        signal.signal(signal.SIGTERM, _terminate)
    except ValueError:  # not the main thread
        previous = None
    try:
        return _run(args)
    except GradcamError as exc:
        print(f"gradcam: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("gradcam: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _terminate(signum, frame):
    raise KeyboardInterrupt


def _check_options(args: argparse.Namespace) -> None:
    if not 0.0 <= args.alpha <= 1.0:
        raise UsageError(f"--alpha must be between 0 and 1, not {args.alpha}")
    if args.steps < 1:
        raise UsageError(f"--steps must be at least 1, not {args.steps}")
    if args.top_k < 1:
        raise UsageError(f"--top-k must be at least 1, not {args.top_k}")
    if args.batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1, not {args.batch_size}")
    if args.max_channels is not None and args.max_channels < 1:
        raise UsageError(f"--max-channels must be at least 1, not {args.max_channels}")
    if args.extra_tokens is not None and args.extra_tokens < 0:
        raise UsageError(f"--extra-tokens cannot be negative, not {args.extra_tokens}")
    if args.max_pixels < 1:
        raise UsageError(f"--max-pixels must be at least 1, not {args.max_pixels}")
    if args.class_index is not None and args.class_index < 0:
        raise UsageError(f"class index {args.class_index} is out of range: it cannot be negative")
    from .render import get_colormap
    get_colormap(args.colormap)


def _run(args: argparse.Namespace) -> int:
    from .layers import describe_layers
    from .loading import load_classifier

    if args.list_layers:
        weights = "random" if args.weights == "imagenet" else args.weights  # the layers need no trained weights
        classifier = load_classifier(args.model, weights, args.preprocess, args.labels, args.verbose)
        print("\n".join(describe_layers(classifier.model)))
        return EXIT_OK
    if not args.inputs:
        raise UsageError("no input given: name image files or folders (see gradcam --help)")
    _check_options(args)

    from .images import discover_inputs
    from .pipeline import RunOptions, prepare_output_dir

    items = discover_inputs(args.inputs, args.recursive)
    output_dir = Path(args.output)
    prepare_output_dir(output_dir)
    if not items:
        print(f"gradcam: no images found in {', '.join(args.inputs)} "
              f"(add --recursive for sub-folders)", file=sys.stderr)
        return EXIT_FAILED

    from .cam import Explainer

    classifier = load_classifier(args.model, args.weights, args.preprocess, args.labels, args.verbose)
    explainer = Explainer(classifier, args.layer, args.method, top_k=args.top_k, eigen_smooth=args.eigen_smooth,
                          aug_smooth=args.aug_smooth, max_channels=args.max_channels,
                          extra_tokens=args.extra_tokens, batch_size=args.batch_size)
    if args.class_name is not None:
        from .classes import find_class

        args.class_index = find_class(args.class_name, classifier.class_names, classifier.class_synonyms)
    if args.class_index is not None:
        explainer.check_class_index(args.class_index)
    if explainer.head.kind == "output":
        classifier.notes.append("cannot tell whether the model's last layer gives probabilities or scores "
                                f"({type(explainer.head.layer).__name__}); explaining its output as it is")
    for note in classifier.notes:
        print(f"gradcam: note: {note}", file=sys.stderr)
    if args.command == "sanity":
        return _sanity(explainer, items, args, output_dir)
    how = "" if args.layer else " (default)"
    print(f"gradcam: {len(items)} image(s), model {classifier.name}, layer {explainer.layer_name}{how}, "
          f"method {args.method}, scores {explainer.head.kind}")
    _estimate_cost(explainer, len(items))
    options = RunOptions(output_dir=output_dir, batch_size=args.batch_size, alpha=args.alpha,
                         colormap=args.colormap, save_npy=args.save_npy, overwrite=args.overwrite,
                         class_index=args.class_index, top_k=args.top_k, panel=args.panel,
                         evaluate=args.evaluate or args.plot, steps=args.steps, plot=args.plot,
                         max_pixels=args.max_pixels)
    folders = any(Path(p).is_dir() for p in args.inputs)
    summary = _run_with_progress(explainer, items, options, show_each=not folders)
    return _report(summary, output_dir)


def _estimate_cost(explainer, count: int) -> None:
    """Before a long run (Score-CAM, Ablation-CAM, aug-smooth): time one forward pass, say what it will take."""
    passes = explainer.passes_per_image()
    if passes <= 1:
        return
    import time

    import numpy as np

    images = np.zeros((explainer.batch_size, *explainer.input_size, 3), np.float32)
    explainer.predict(images[:1])  # trace
    start = time.perf_counter()
    explainer.predict(images, batch_size=explainer.batch_size)
    per_pass = (time.perf_counter() - start) / len(images)
    seconds = per_pass * passes
    print(f"gradcam: {_method_label(explainer)} needs about {passes} forward passes per image: about "
          f"{_duration(seconds)} per image, {_duration(seconds * count)} for {count} image(s) on this machine")


def _method_label(explainer) -> str:
    extras = [name for name in ("eigen_smooth", "aug_smooth") if getattr(explainer, name)]
    return explainer.method + "".join(f" --{name.replace('_', '-')}" for name in extras)


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s" if seconds >= 1 else f"{seconds:.1f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _run_with_progress(explainer, items, options, show_each: bool):
    from tqdm import tqdm

    from .pipeline import run

    with tqdm(total=len(items), unit="img", file=sys.stderr, disable=None if not show_each else True,
              dynamic_ncols=True) as bar, _passes_bar(explainer):
        def on_record(record: dict) -> None:
            if record["rank"] in (None, 1):  # count inputs, not the top-k records of each
                bar.update(1)
            if show_each:
                print(_record_line(record, options.top_k))
        return run(explainer, items, options, on_record=on_record)


@contextlib.contextmanager
def _passes_bar(explainer):
    """Score-CAM/Ablation-CAM: a second bar for the forward passes of the image being explained."""
    if not explainer.perturbation:
        yield
        return
    from tqdm import tqdm

    with tqdm(total=0, unit="pass", file=sys.stderr, disable=None, leave=False, dynamic_ncols=True) as inner:
        def on_progress(done: int, total: int) -> None:
            if inner.total != total or done < inner.n:
                inner.reset(total=total)
            inner.update(done - inner.n)

        explainer.on_progress = on_progress
        try:
            yield
        finally:
            explainer.on_progress = None


def _record_line(record: dict, top_k: int = 1) -> str:
    rank = f"top {record['rank']}: " if top_k > 1 and record["rank"] is not None else ""
    if record["status"] == "error":
        return f"{record['input']}: {rank}error: {record['error']}"
    if record["status"] == "skipped":
        return (f"{record['input']}: {rank}skipped, {record['overlay']} exists with the same settings "
                "(use --overwrite to redo)")
    name = record["class_name"] if record["class_name"] is not None else "class"
    zero = " [heatmap is constant: drawn as zero everywhere]" if record["zero_heatmap"] else ""
    return (f"{record['input']}: {rank}{name} ({record['class_index']}), p={record['probability']:.3f} "
            f"-> {record['overlay']}{zero}")


def _sanity(explainer, items, args, output_dir: Path) -> int:
    import json

    from .render import write_atomic
    from .sanity import sanity_check

    report = sanity_check(explainer, items, args.class_index, args.max_pixels)
    for path, reason in report.failures:
        print(f"failed: {path}: {reason}", file=sys.stderr)
    print(f"Model-randomisation test (Adebayo et al., 2018) on {len(report.inputs)} image(s), layer "
          f"{report.layer}, method {report.method}. Spearman rank correlation of each heatmap with the "
          "original, as the layers are re-initialised from the top down:")
    for number, step in enumerate(report.steps, 1):
        print(f"  {number:3d}. up to {step.layer:<40} {step.rank_correlation:+.3f}")
    final = report.final_correlation
    if report.passed:
        print(f"PASS: the heatmaps change as the weights are destroyed (rank correlation {final:+.2f} once "
              "every layer is random), so they depend on what the model learned.")
    else:
        print(f"FAIL: the heatmaps stay similar (rank correlation {final:+.2f}) even with every layer random, "
              "so they show the image or the architecture more than what the model learned.")
    write_atomic(output_dir / SANITY_REPORT_NAME, json.dumps(report.as_dict(), indent=2).encode("utf-8"))
    print(f"gradcam: report in {output_dir}/{SANITY_REPORT_NAME}")
    return EXIT_OK if report.passed else EXIT_FAILED


def _report(summary, output_dir: Path) -> int:
    if summary.failures and summary.failed <= 20 and summary.total > 1:
        for path, reason in summary.failures:
            print(f"failed: {path}: {reason}", file=sys.stderr)
    stopped = f" (interrupted after {summary.done} of {summary.total})" if summary.interrupted else ""
    redone = ""
    if summary.redone:
        why = ", ".join(f"{reason} ({count})" if count != summary.redone else reason
                        for reason, count in summary.redo_reasons.most_common())
        redone = f" ({summary.redone} redone: outputs existed, made with other settings or incomplete: {why})"
    print(f"gradcam: {summary.explained} explained{redone}, {summary.skipped} skipped, {summary.failed} failed"
          f"{stopped}; outputs in {output_dir}/ ({MANIFEST_NAME}, {GALLERY_NAME})")
    means = summary.means()
    if means:
        print("gradcam: faithfulness means: " + ", ".join(
            f"{key.replace('_', ' ')} {value:.3f}" + ("%" if key == "average_drop" else "")
            for key, value in means.items()))
    if summary.interrupted:
        return EXIT_INTERRUPTED
    return EXIT_FAILED if summary.failed else EXIT_OK
