"""A run's settings (:class:`RunOptions`), the checks of them against a model, a run's id, and the output
files of an input by record key: what the run loop, its stages and the resume decisions share."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from ..errors import UsageError
from ..inputs.discovery import InputImage
from ..inputs.images import DEFAULT_MAX_PIXELS
from ..inputs.medical import is_nifti_name
from ..names import DEFAULT_BATCH_SIZE
from ..outputs.paths import output_paths, sibling_path
from ..outputs.render import DEFAULT_PNG_COMPRESSION


@dataclass
class RunOptions:
    """Settings of one run (the CLI's options)."""

    output_dir: Path
    batch_size: int = DEFAULT_BATCH_SIZE  # photos per forward pass
    alpha: float = 0.4
    colormap: str = "jet"
    save_npy: bool = False
    overwrite: bool = False
    class_index: int | None = None
    top_k: int = 1
    panel: bool = False
    evaluate: bool = False
    steps: int = 20
    plot: bool = False
    max_pixels: int = DEFAULT_MAX_PIXELS
    png_compression: int | None = DEFAULT_PNG_COMPRESSION  # zlib level 0-9; None: the fastest encoder
    max_size: int | None = None  # cap the overlay's (and .npy's) longer side; None: the photo's own size
    shard: tuple[int, int] | None = None  # (I, N): explain only shard I of N, into its own manifest
    region: tuple[int, int, int, int] | None = None  # segmentation: (x0, y0, x1, y1) in each photo's pixels
    mask: str | None = None  # segmentation: an image file whose non-zero pixels are the region, over each photo
    window: tuple[float, float] | None = None  # DICOM: (centre, width) instead of each file's own window
    write_manifest: bool = True  # False: records go to on_record only, and no gallery (Ray workers)
    evaluation: dict | None = None  # with evaluate: what is scored and how (metrics.evaluation.EvaluationSettings,
    # as_record()); None: deletion/insertion/average drop at ``steps`` steps, nothing else
    request: dict | None = None  # what was asked for (the command line's options, files' identities): lets a
    # rerun whose outputs are all up to date skip them without loading the model (see skip_if_up_to_date)
    workers: int = field(default_factory=lambda: max(2, min(4, os.cpu_count() or 2)))


#: scores one map: (explainer, the Decoded input, its raw map, heatmap float32 (h, w) in [0, 1] at the input size,
#: class index) -> an object with ``as_record()`` (the record's score keys) and ``faithfulness``, the curves
#: that ``render`` draws for --plot or None (a metrics.evaluation.Evaluator and its Evaluation)
Scorer = Callable[..., object]

#: the record keys of an input's output files (relative paths, or None): the overlay (a volume's montage),
#: the heatmap .npy, the deletion/insertion curves, a volume's three-plane panel and its NIfTI heatmap
OUTPUT_KEYS = ("overlay", "heatmap", "curves", "planes", "nifti")


def new_run_id() -> str:
    """A run's id: its UTC start time (an id only: records are ordered by their ``seq``)."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def outputs_of(item: InputImage, options: RunOptions, rank: int, volume: bool) -> dict[str, Path | None]:
    """The output files of one input and rank, by record key (:data:`OUTPUT_KEYS`); None for those this
    run does not write. A volume always gets its .npy and planes, a NIfTI volume its .nii.gz too."""
    overlay_path, npy_path = output_paths(item, options.output_dir, rank, options.top_k)
    nifti = volume and is_nifti_name(item.path)
    return {"overlay": overlay_path, "heatmap": npy_path if options.save_npy or volume else None,
            "curves": sibling_path(overlay_path, ".curves.png") if options.plot else None,
            "planes": sibling_path(overlay_path, ".planes.png") if volume else None,
            "nifti": sibling_path(overlay_path, ".nii.gz") if nifti else None}


def check_run_options(explainer, options: RunOptions) -> None:
    """Options that do not fit the model: raises a one-line UsageError."""
    if options.region is not None and options.mask is not None:
        raise UsageError("give either --region or --mask, not both")
    if (options.region is not None or options.mask is not None) and not explainer.segmentation:
        flag = "--region" if options.region is not None else "--mask"
        raise UsageError(f"{flag} applies to segmentation models (output (batch, height, width, classes))")
    if explainer.segmentation and options.evaluate:
        raise UsageError("faithfulness scores (--evaluate) need a classifier, not a segmentation model")
    if explainer.volumetric:
        refused = [flag for flag, given in (("--evaluate", options.evaluate), ("--max-size", options.max_size),
                                            ("--window", options.window)) if given]
        if refused:
            raise UsageError(f"{', '.join(refused)} applies to 2-D images, not to volumes (a 3-D model)")
