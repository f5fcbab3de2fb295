"""The commands that read output folders: ``gradcam status``, ``gradcam atlas`` and ``gradcam compare``."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable

from ..errors import UsageError
from .codes import EXIT_FAILED, EXIT_OK


def _parse(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace | int:
    try:
        return parser.parse_args(argv)
    except SystemExit as exc:  # --help or an argparse error (already printed)
        return int(exc.code or 0)


def _folder(name: str) -> Path:
    if not Path(name).is_dir():
        raise UsageError(f"no such folder: {name}")
    return Path(name)


def status_main(argv: list[str]) -> int:
    """``gradcam status OUTPUT``: counts per shard; exit 1 while a shard has failures or is missing."""
    parser = argparse.ArgumentParser(prog="gradcam status", description=(
        "Counts of explained, skipped and failed inputs in every manifest of an output folder (one per "
        "--shard), and the shards that have written nothing. Exit status: 0 complete, 1 failures or "
        "missing shards, 2 no such folder or no manifest."))
    parser.add_argument("output", metavar="OUTPUT", help="an output folder")
    args = _parse(parser, argv)
    if isinstance(args, int):
        return args
    from ..runs.status import folder_status

    status = folder_status(_folder(args.output))
    if not status.manifests:
        raise UsageError(f"no manifest in {args.output}")
    print("\n".join(status.lines()))
    return EXIT_OK if status.complete else EXIT_FAILED


def atlas_main(argv: list[str]) -> int:
    """``gradcam atlas OUTPUT``: where the model looks, class by class, and the shortcut candidates."""
    parser = argparse.ArgumentParser(prog="gradcam atlas", description=(
        "Across a whole output folder (a run with --save-npy): per predicted class the mean heatmap, the "
        "share of attention on the border band (and outside the object, where 'gradcam evaluate --boxes/"
        "--masks' scored it), and the images most unlike their class or mostly on the border: candidates "
        "for shortcut learning. Writes OUTPUT/atlas.html (linked from the gallery) and OUTPUT/atlas.json. "
        "Exit status: 0 written, 1 some maps could not be read, 2 no such folder, manifest or maps."))
    parser.add_argument("output", metavar="OUTPUT", help="an output folder of a run with --save-npy")
    parser.add_argument("--border", type=float, default=0.1, metavar="SHARE",
                        help="width of the border band as a share of each side (default: %(default)s)")
    parser.add_argument("--top", type=int, default=10, metavar="N",
                        help="shortcut candidates listed and shown (default: %(default)s)")
    args = _parse(parser, argv)
    if isinstance(args, int):
        return args
    from ..metrics.atlas import build_atlas

    atlas = build_atlas(_folder(args.output), border=args.border, top=args.top)
    html_path, json_path = atlas.write(Path(args.output))
    _link_from_gallery(Path(args.output))
    print("\n".join(atlas.lines()))
    print(f"gradcam: atlas in {html_path} and {json_path}")
    return _skipped_status(atlas.skipped)


def compare_main(argv: list[str]) -> int:
    """``gradcam compare OUTPUT_A OUTPUT_B``: where two runs over the same inputs look differently."""
    parser = argparse.ArgumentParser(prog="gradcam compare", description=(
        "Two runs over the same inputs (two models, two methods, before and after fine-tuning), each with "
        "--save-npy: per image the rank correlation of the maps, the IoU of their top regions and whether "
        "the classes agree; the images where they disagree most, side by side. Inputs are matched by their "
        "recorded content (SHA-256), never by name. Exit status: 0 written, 1 some inputs could not be "
        "compared, 2 no such folder or nothing to match."))
    parser.add_argument("first", metavar="OUTPUT_A", help="the first output folder")
    parser.add_argument("second", metavar="OUTPUT_B", help="the second output folder")
    parser.add_argument("-o", "--output", default=None, metavar="DIR",
                        help="where compare.html and compare.json go (default: OUTPUT_B/compare-with-NAME, NAME "
                             "being OUTPUT_A's folder name)")
    parser.add_argument("--top-share", type=float, default=0.2, metavar="SHARE",
                        help="the share of each map's pixels whose regions are compared by IoU (default: %(default)s)")
    args = _parse(parser, argv)
    if isinstance(args, int):
        return args
    from ..metrics.compare import compare_runs, default_destination

    first, second = _folder(args.first), _folder(args.second)
    comparison = compare_runs(first, second, top_share=args.top_share)
    destination = Path(args.output) if args.output else default_destination(first, second)
    if destination.exists() and not destination.is_dir():
        raise UsageError(f"-o: {destination} exists and is not a folder")
    html_path, json_path = comparison.write(destination)
    _link_from_gallery(second)
    print("\n".join(comparison.lines()))
    print(f"gradcam: comparison in {html_path} and {json_path}")
    if not comparison.pairs:
        print("gradcam: error: no input of one run has the same content as an input of the other", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def _link_from_gallery(output: Path) -> None:
    """Rewrite OUTPUT/index.html so that it links the page just written (best effort: the page stands alone)."""
    from ..outputs.gallery import write_gallery

    try:
        write_gallery(output)
    except OSError:
        pass


def _skipped_status(skipped: list[tuple[str, str]]) -> int:
    """1 when the report had to leave inputs out (each named on stderr, at most 20), else 0."""
    for name, reason in skipped[:20]:
        print(f"skipped: {name}: {reason}", file=sys.stderr)
    if len(skipped) > 20:
        print(f"skipped: ... and {len(skipped) - 20} more (see the JSON)", file=sys.stderr)
    return EXIT_FAILED if skipped else EXIT_OK


#: the subcommands that read output folders, by name
REPORTS: dict[str, Callable[[list[str]], int]] = {"status": status_main, "atlas": atlas_main, "compare": compare_main}
