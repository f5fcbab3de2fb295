"""``gradcam INPUT...``, ``gradcam evaluate`` and ``gradcam sanity``: the run of a model over inputs,
from parsed arguments to the exit status (the command line's only printing, with the rest of this package)."""
from __future__ import annotations

import argparse
import contextlib
import sys
import warnings
from pathlib import Path

from ..arguments import check_options
from ..errors import UsageError
from ..messages import estimate_line, means_line, record_line, shard_prefix, shards_line, summary_line
from ..names import SANITY_REPORT_NAME
from .codes import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK


def run_command(args: argparse.Namespace) -> int:
    """Explain (evaluate, sanity-check) ``args.inputs`` as the parsed arguments say; the exit status."""
    return _run(args)


def _run(args: argparse.Namespace) -> int:
    from .checks import check_model_options, evaluation_settings, request_of
    from ..explainers.explainer import SignedActivationsWarning
    from ..models.layers import describe_layers
    from ..models.loading import load_classifier

    if args.list_layers:
        weights = "random" if args.weights == "imagenet" else args.weights  # the layers need no trained weights
        classifier = load_classifier(args.model, weights, args.preprocess, args.labels, args.verbose)
        print("\n".join(describe_layers(classifier.model)))
        return EXIT_OK
    if not args.inputs:
        raise UsageError("no input given: name image files or folders (see gradcam --help)")
    check_options(args)
    evaluation = evaluation_settings(args)
    args.evaluation = evaluation.as_record() if evaluation else None  # recorded: request and settings

    from ..inputs.discovery import discover_inputs
    from ..models.loading import peek_input_rank
    from ..inputs.medical import check_readers
    from ..names import MODEL_NAMES
    from ..outputs.paths import prepare_output_dir, select_shard
    from ..outputs.manifest import read_trusted
    from ..runs.pipeline import RunOptions, check_run_options
    from ..inputs.precheck import unreadable_inputs

    # a volumetric (3-D) model reads volumes from folders: told from the model file's configuration
    rank = 4 if args.model.lower() in MODEL_NAMES else peek_input_rank(args.model)
    volumes = rank == 5
    items = discover_inputs(args.inputs, args.recursive, volumes)
    output_dir = Path(args.output)
    prepare_output_dir(output_dir)
    check_model_options(args)  # no model loaded yet: names, files, --top-k against known classes
    if not items:
        what = "volumes" if volumes else "images"
        print(f"gradcam: no {what} found in {', '.join(args.inputs)} "
              f"(add --recursive for sub-folders)", file=sys.stderr)
        return EXIT_FAILED
    check_readers([item.path for item in items])  # DICOM and NIfTI need the medical extra: one line
    # the outputs the folder's manifests vouch for: read once, for the fast path and the run (the digests
    # they record spare hashing unchanged files again, the request's included)
    previous = {} if args.overwrite or args.command == "sanity" else read_trusted(output_dir)
    options = RunOptions(output_dir=output_dir, batch_size=args.batch_size, alpha=args.alpha,
                         colormap=args.colormap, save_npy=args.save_npy, overwrite=args.overwrite,
                         class_index=args.class_index, top_k=args.top_k, panel=args.panel,
                         evaluate=args.evaluate or args.plot, steps=args.steps, plot=args.plot,
                         max_pixels=args.max_pixels, shard=args.shard, png_compression=args.png_compression,
                         max_size=args.max_size, request=request_of(args), region=args.region, mask=args.mask,
                         window=args.window, evaluation=args.evaluation)
    show_each = not any(Path(p).is_dir() for p in args.inputs)
    planned = len(select_shard(items, args.shard))
    shard = shard_prefix(args.shard, planned)
    if args.command != "sanity":
        from ..runs.pipeline import skip_if_up_to_date

        skipped: list[dict] = []
        summary = skip_if_up_to_date(items, options, skipped.append, previous)
        if summary is not None:
            print(f"gradcam: {shard}{len(items)} image(s): every output is up to date (same settings, files as "
                  "recorded); the model was not loaded")
            for record in skipped:
                _show(record, options.top_k, show_each)
            return _report(summary, output_dir, show_each, args)

    unreadable = unreadable_inputs(select_shard(items, args.shard), None if rank is None else volumes)
    if unreadable:  # nothing to explain: said now, not after loading the model
        for path, reason in unreadable:
            print(f"failed: {path}: {reason}", file=sys.stderr)
        print(f"gradcam: 0 explained, 0 skipped, {len(unreadable)} failed: no input could be read "
              "(the model was not loaded)", file=sys.stderr)
        return EXIT_FAILED

    from ..explainers.explainer import Explainer

    classifier = load_classifier(args.model, args.weights, args.preprocess, args.labels, args.verbose)
    explainer = Explainer(classifier, **_explainer_options(args))
    if args.class_name is not None:
        from ..models.classes import find_class

        args.class_index = options.class_index = find_class(args.class_name, classifier.class_names,
                                                            classifier.class_synonyms)
    if args.class_index is not None:
        explainer.check_class_index(args.class_index)
    check_run_options(explainer, options)
    if explainer.volumetric != volumes:  # the file's configuration did not tell: the folders again
        items = discover_inputs(args.inputs, args.recursive, explainer.volumetric)
        check_readers([item.path for item in items])
        planned = len(select_shard(items, args.shard))
        shard = shard_prefix(args.shard, planned)
    if explainer.head.kind == "output":
        classifier.notes.append("cannot tell whether the model's last layer gives probabilities or scores "
                                f"({type(explainer.head.layer).__name__}); explaining its output as it is")
    for note in classifier.notes:
        print(f"gradcam: note: {note}", file=sys.stderr)
    if args.command == "sanity":
        if explainer.volumetric:
            raise UsageError("gradcam sanity checks 2-D image models, not volumetric (3-D) ones")
        return _sanity(explainer, items, args, output_dir)
    how = "" if args.layer else " (default)"
    noun = "volume(s)" if explainer.volumetric else "image(s)"
    print(f"gradcam: {shard}{len(items)} {noun}, model {classifier.name}, layer {explainer.layer_name}{how}, "
          f"method {args.method}, scores {explainer.head.kind}")
    estimate = estimate_line(explainer, planned)  # before a long run (Score-CAM, Ablation-CAM, aug-smooth)
    if estimate:
        print(estimate)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SignedActivationsWarning)  # said once below, as a note
        if args.ray is not None:
            summary = _run_on_ray(args, items, options, show_each)
        else:
            summary = _run_with_progress(explainer, items, options, show_each, previous)
    note = explainer.signed_note()
    if note:
        print(f"gradcam: note: {note}", file=sys.stderr)
    return _report(summary, output_dir, show_each, args)


def _explainer_options(args) -> dict:
    """The Explainer's keyword arguments from the command line (the local run and Ray actors alike)."""
    return {"layer": args.layer, "method": args.method, "top_k": args.top_k, "eigen_smooth": args.eigen_smooth,
            "aug_smooth": args.aug_smooth, "max_channels": args.max_channels, "extra_tokens": args.extra_tokens,
            "batch_size": args.batch_size, "output": args.model_output}


def _run_on_ray(args, items, options, show_each: bool):
    from ..runs.distributed import import_ray, run_on_ray

    import_ray()  # a clear message before anything starts
    loader = {"model": args.model, "weights": args.weights, "preprocess": args.preprocess, "labels": args.labels}

    def on_record(record: dict) -> None:
        _show(record, options.top_k, show_each)

    from ..api import scorer_for

    return run_on_ray(items, options, loader, _explainer_options(args), args.ray or None, args.ray_workers, on_record,
                      verbose=args.verbose, scorer=scorer_for(options))


def _run_with_progress(explainer, items, options, show_each: bool, previous: dict[str, dict] | None = None):
    from tqdm import tqdm

    from ..api import run

    with tqdm(total=len(items), unit="img", file=sys.stderr, disable=None if not show_each else True,
              dynamic_ncols=True) as bar, _passes_bar(explainer):
        def on_record(record: dict) -> None:
            if record["rank"] in (None, 1):  # count inputs, not the top-k records of each
                bar.update(1)
            _show(record, options.top_k, show_each)
        return run(explainer, items, options, on_record=on_record, previous=previous)


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


def _show(record: dict, top_k: int, show_each: bool) -> None:
    """Print a record's line when inputs were named one by one (not for folders)."""
    if show_each:
        print(record_line(record, top_k))


def _sanity(explainer, items, args, output_dir: Path) -> int:
    import json

    from ..outputs.render import write_atomic
    from ..metrics.sanity import sanity_check

    report = sanity_check(explainer, items, args.class_index, args.max_pixels, args.draws, args.seed)
    for path, reason in report.failures:
        print(f"failed: {path}: {reason}", file=sys.stderr)
    print("\n".join(report.lines()))
    write_atomic(output_dir / SANITY_REPORT_NAME, json.dumps(report.as_dict(), indent=2).encode("utf-8"))
    print(f"gradcam: report in {output_dir}/{SANITY_REPORT_NAME}")
    return EXIT_OK if report.passed and not report.failures else EXIT_FAILED  # NO VERDICT: 1, as FAIL


def _report(summary, output_dir: Path, show_each: bool, args: argparse.Namespace) -> int:
    """Print the summary (and the failures not yet printed one by one); the exit status."""
    if summary.failures and summary.failed <= 20 and not show_each:
        for path, reason in summary.failures:
            print(f"failed: {path}: {reason}", file=sys.stderr)
    for error in (summary.stopped, summary.gallery_error):
        if error:
            print(f"gradcam: error: {error}", file=sys.stderr)
    print(summary_line(summary, output_dir, args.shard is not None))
    from ..runs.status import metric_means, folder_status

    if args.evaluate or args.plot:  # the folder's means: the images explained earlier count too
        means = means_line("score means over the output folder", metric_means(output_dir))
        if means:
            print(means)
    if args.shard is not None:  # the folder as a whole, every shard's manifest read
        print(shards_line(folder_status(output_dir), output_dir))
    if summary.interrupted:
        return EXIT_INTERRUPTED
    return EXIT_FAILED if summary.failed or summary.stopped or summary.gallery_error else EXIT_OK
