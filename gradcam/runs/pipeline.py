"""The folder run: decoding ahead of the model, rendering behind it, manifest and resume.

Stages, each bounded so memory does not grow with the folder:
decode pool (Pillow) -> batches -> one compiled step per batch (main thread)
-> render pool (zoom, colour, PNG/.npy writes) -> manifest line + progress.
"""
from __future__ import annotations

import collections
import os
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from ..errors import HeatmapError, ImageError, UsageError, first_line
from ..outputs.gallery import write_gallery
from ..explainers.heatmap import box_region, check_finite, check_region, heatmap_at, mask_region
from ..inputs.discovery import InputImage, is_volume_name
from ..inputs.images import DEFAULT_MAX_PIXELS, image_size, load_for_model, photo_bytes
from ..inputs.masks import load_mask
from ..inputs.volumes import load_volume_for_model
from ..errors import OutputError
from ..outputs.manifest import (
    ManifestWriter,
    changed_settings,
    end_record,
    file_identity,
    files_unchanged,
    manifest_name,
    new_record,
    read_trusted,
    request_files,
    run_settings,
    start_record,
)
from ..inputs.identity import DIGESTS, same_content
from ..names import DEFAULT_BATCH_SIZE
from ..inputs.medical import is_nifti_name, nifti_bytes, to_display
from ..outputs.paths import output_paths, prepare_output_dir, relative_path, select_shard, sibling_path
from ..outputs.render import (
    DEFAULT_PNG_COMPRESSION,
    panel_title,
    render_outputs,
    render_volume_outputs,
    save_npy,
    write_atomic,
)
from .status import Summary

__all__ = ["RunOptions", "Summary", "run"]  # Summary: re-exported from status


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
    request: dict | None = None  # what was asked for (the command line's options, files' identities): lets a
    # rerun whose outputs are all up to date skip them without loading the model (see skip_if_up_to_date)
    workers: int = field(default_factory=lambda: max(2, min(4, os.cpu_count() or 2)))


#: scores one map: (predict, model input (h, w, 3), heatmap (h, w), class index, steps, deletion baseline (3,))
#: -> an object with ``as_record()`` and the curves that ``render`` draws (a metrics.faithfulness.Faithfulness)
Scorer = Callable[..., object]

#: photos held between the stages of a run, in bytes, before it waits (12 megapixels: 36 MB a photo)
PENDING_BYTES = 512 * 2**20


@dataclass
class _Decoded:
    """An input ready for the model: the photo uint8 (H, W, 3) and the model input float32 (h, w, 3); for
    a volume, the volume float32 (D, H, W, C), the model input (d, h, w, C) and its NIfTI affine."""

    item: InputImage
    photo: np.ndarray
    model_input: np.ndarray
    affine: np.ndarray | None = None  # a NIfTI volume's voxel-to-millimetre affine (4, 4)
    region: np.ndarray | None = None  # segmentation: --region or --mask on the model's output grid, float32 (h, w)
    source: dict | None = None  # the input file's identity (gradcam.identity), taken before it was read


class _FolderRun:
    """One folder run's state and its stages, in the order an input meets them:

    :meth:`plan` (skip, redo or explain) -> :meth:`_take_decoded` (decoded photos into batches)
    -> :meth:`_explain` (one compiled step per batch, per image on failure) -> :meth:`_finish_render`
    (written outputs into manifest records) -> :meth:`_emit` (summary, manifest, callback).
    """

    def __init__(self, explainer, options: RunOptions, on_record: Callable[[dict], None] | None, total: int,
                 previous: dict[str, dict] | None = None, scorer: Scorer | None = None):
        self.explainer = explainer
        self.options = options
        if options.evaluate and scorer is None:
            raise UsageError("faithfulness scores need a scorer: gradcam.run supplies gradcam.faithfulness_scores")
        self.scorer = scorer
        self.on_record = on_record
        self.summary = Summary(total=total)
        self.run_id = new_run_id()
        self.batch_size = max(1, options.batch_size)
        check_run_options(explainer, options)
        self.mask = load_mask(options.mask) if options.mask is not None else None
        self.settings = run_settings(explainer, options)
        self.common = {"layer": explainer.layer_name, "method": explainer.method, "model": explainer.classifier.name}
        prepare_output_dir(options.output_dir)
        if options.overwrite:
            previous = {}
        self.previous = read_trusted(Path(options.output_dir)) if previous is None else previous
        self.manifest = ManifestWriter(options.output_dir, manifest_name(options.shard)) \
            if options.write_manifest else None
        self.root = Path(options.output_dir).resolve()
        self.common["request"] = options.request
        self.decode_pool = ThreadPoolExecutor(options.workers, thread_name_prefix="gradcam-decode")
        self.render_pool = ThreadPoolExecutor(options.workers, thread_name_prefix="gradcam-render")
        self.decoding: collections.deque[tuple[InputImage, Future, int]] = collections.deque()
        self.rendering: collections.deque[tuple[InputImage, Future, dict, int]] = collections.deque()
        self.batch: list[_Decoded] = []

    # -- records
    def _emit(self, record: dict) -> None:
        """Append a record to the manifest, count it in the summary and pass it to ``on_record`` (a record
        the manifest could not take is not counted)."""
        if self.manifest is not None:
            self.manifest.write(record)
        self.summary.count(record)
        if self.on_record is not None:
            self.on_record(record)

    def _error(self, item: InputImage, message: str, rank: int | None = None, touched: list | None = None) -> None:
        """An error record; ``touched``: the outputs (relative paths) a failed write may have replaced."""
        self._emit(new_record(item.path, "error", self.run_id, error=message, rank=rank, settings=self.settings,
                              touched=touched or None, **self.common))

    # -- stage 1: skip, redo or explain
    def plan(self, item: InputImage) -> None:
        """Skip an input whose outputs all exist as recorded by a record made with these settings;
        otherwise queue it for decoding (counting it as redone when some of its outputs existed)."""
        options = self.options
        decision = _resume_decision(item, options, self.root, self.previous, self.settings)
        if decision.skip:
            for k, trusted in enumerate(decision.trusted):
                self._emit(_skipped_record(item, trusted, self.run_id, k + 1, options.request, decision.source))
            return
        if decision.reasons:
            self.summary.redone += 1
            self.summary.redo_reasons.update(decision.reasons)
        if self.explainer.volumetric:
            future = self.decode_pool.submit(_identify_and_read, load_volume_for_model, item.path,
                                             self.explainer.input_size, self.explainer.channels, options.max_pixels)
        else:
            future = self.decode_pool.submit(_identify_and_read, load_for_model, item.path, self.explainer.input_size,
                                             options.max_pixels, options.max_size, options.window)
        self.decoding.append((item, future, photo_bytes(item.path)))
        self._take_decoded(2 * self.batch_size)
        self._relieve()

    # -- stage 2: decoded photos into batches
    def _take_decoded(self, limit: int) -> None:
        """Collect decoded photos until at most ``limit`` are pending; explain each full batch."""
        while len(self.decoding) > limit:
            item, future, _ = self.decoding.popleft()
            try:
                source, (photo, model_input, *affine) = future.result()
                region = self._region_of(item, photo)
            except ImageError as exc:
                self._error(item, str(exc))
                continue
            except MemoryError:
                self._error(item, "not enough memory to read this input")
                continue
            except Exception as exc:  # a reader's own error that no check foresaw: this input fails alone
                self._error(item, f"cannot read: {first_line(exc)}")
                continue
            self.batch.append(_Decoded(item, photo, model_input, affine[0] if affine else None, region, source))
            if len(self.batch) == self.batch_size:
                self._explain(self.batch)
                self.batch = []

    def _region_of(self, item: InputImage, photo: np.ndarray) -> np.ndarray | None:
        """The --region box or --mask of a photo on the model's output grid; None without either. Both
        refer to the photo's own pixels (before --max-size)."""
        if self.options.region is None and self.mask is None:
            return None
        size = image_size(item.path)
        size = size[::-1] if size else photo.shape[:2]
        grid = self.explainer.output_size
        if self.options.region is not None:
            return box_region(self.options.region, size, grid)
        return mask_region(self.mask, size, grid)

    # -- stage 3: the model
    def _explain(self, pending: list[_Decoded]) -> None:
        """One compiled step for the batch; if it fails, each image alone, recording those that still fail."""
        regions = np.stack([entry.region for entry in pending]) if pending[0].region is not None else None
        try:
            result = self.explainer.explain_batch(np.stack([entry.model_input for entry in pending]),
                                                  self.options.class_index, regions)
        except Exception as exc:
            if len(pending) == 1:
                self._error(pending[0].item, f"cannot explain: {first_line(exc)}")
                return
            for entry in pending:
                self._explain([entry])
            return
        probability = result.ranked_probability
        for i, entry in enumerate(pending):
            for k in range(self.options.top_k):
                region = result.regions[i, k] if result.regions is not None else None
                self._render(entry, result.ranked_cams[i, k], int(result.ranked_class_index[i, k]),
                             float(probability[i, k]), k + 1, region)
        self._finish_render(2 * self.batch_size * self.options.top_k)

    # -- stage 4: outputs
    def _render(self, entry: _Decoded, cam: np.ndarray, class_index: int, probability: float, rank: int,
                region: np.ndarray | None = None) -> None:
        """Check one map (finite; a segmentation region that is not empty), and queue its outputs for
        writing (a photo's scored first when asked: :meth:`_submit_photo`)."""
        options, explainer = self.options, self.explainer
        try:
            check_finite(cam)
            check_region(region, options.region is not None or options.mask is not None, class_index)
        except HeatmapError as exc:
            self._error(entry.item, str(exc), rank)
            return
        paths = _outputs_of(entry.item, options, rank, explainer.volumetric)
        values = dict(self.common, class_index=class_index, class_name=explainer.class_name(class_index),
                      probability=probability, rank=rank, settings=self.settings, source=entry.source,
                      **{key: relative_path(self.root, path) for key, path in paths.items()
                         if path is not None or key in ("overlay", "heatmap")})
        written = [path for path in paths.values() if path is not None]
        if explainer.volumetric:
            future = self.render_pool.submit(_render_volume_and_identify, self.root, written, entry.photo, cam,
                                             entry.affine, paths, panel_title(values), options.alpha,
                                             options.colormap, options.png_compression)
        else:
            future = self._submit_photo(entry, cam, class_index, region, paths, values, written)
        self.rendering.append((entry.item, future, values, entry.photo.nbytes))

    def _submit_photo(self, entry: _Decoded, cam: np.ndarray, class_index: int, region: np.ndarray | None,
                      paths: dict[str, Path | None], values: dict, written: list[Path]) -> Future:
        """A photo's faithfulness scores when asked (added to ``values``; none for a constant map: it ranks
        no pixel, so it gets no curves either), then its writes queued: the render's Future."""
        options, explainer = self.options, self.explainer
        curves = None
        if options.evaluate:
            heatmap, constant = heatmap_at(cam, explainer.input_size)
            if not constant:
                scores = self.scorer(explainer.predict, entry.model_input, heatmap, class_index,
                                             options.steps, explainer.deletion_baseline())
                values.update(scores.as_record())
                if options.plot:
                    curves = (paths["curves"], scores, panel_title(values))
        if curves is None and "curves" in values:
            del values["curves"]
            written.remove(paths["curves"])
        title = panel_title(values) if options.panel else None
        stale = _stale_outputs(entry.item, options, values["rank"], paths)
        return self.render_pool.submit(_render_and_identify, self.root, written, stale, entry.photo, cam,
                                       paths["overlay"],
                                       paths["heatmap"], options.alpha, options.colormap, title, curves,
                                       options.png_compression, region)

    # -- memory: queues bounded in bytes as well as in photos
    def _pending_bytes(self) -> int:
        """Bytes of the photos held between stages: being decoded (estimated from their headers),
        waiting in the batch, and being written."""
        return (sum(entry[2] for entry in self.decoding) + sum(e.photo.nbytes for e in self.batch)
                + sum(entry[3] for entry in self.rendering))

    def _relieve(self) -> None:
        """While more than :data:`PENDING_BYTES` are held, wait for the oldest write, else take decoded
        photos (a full batch goes through the model): big photos cannot pile up."""
        while self._pending_bytes() > PENDING_BYTES:
            if self.rendering:
                self._finish_render(len(self.rendering) - 1)
            elif self.decoding:
                self._take_decoded(len(self.decoding) - 1)
            else:
                break  # only the batch being assembled: it must fill

    def _finish_render(self, limit: int) -> None:
        """Turn finished writes into records until at most ``limit`` are pending."""
        while len(self.rendering) > limit:
            item, future, values, _ = self.rendering.popleft()
            try:
                zero, files = future.result()
            except Exception as exc:  # disk full, permission denied...
                touched = [values[key] for key in OUTPUT_KEYS if values.get(key)]
                self._error(item, f"cannot write output: {exc}", values["rank"], touched)
                continue
            self._emit(new_record(item.path, "ok", self.run_id, zero_heatmap=zero, files=files, **values))

    def finish(self) -> None:
        """Drain every stage: the last decodes, the last (partial) batch, the last writes."""
        self._take_decoded(0)
        if self.batch:
            self._explain(self.batch)
            self.batch = []
        self._finish_render(0)

    def interrupt(self) -> None:
        """Stop early, keeping the records of outputs that already finished writing. Writes still
        running get no record: their files then match no record, so a rerun makes them again."""
        self.summary.interrupted = True
        for _, future, _ in self.decoding:
            future.cancel()
        for item, future, values, _ in list(self.rendering):
            if future.done() and not future.cancelled() and future.exception() is None:
                zero, files = future.result()
                self._emit(new_record(item.path, "ok", self.run_id, zero_heatmap=zero, files=files, **values))

    def close(self) -> None:
        self.decode_pool.shutdown(wait=False, cancel_futures=True)
        self.render_pool.shutdown(wait=not (self.summary.interrupted or self.summary.stopped), cancel_futures=True)
        if self.manifest is not None:
            self.manifest.close()
            write_gallery_safely(self.options.output_dir, self.summary)


def new_run_id() -> str:
    """A run's id: its UTC start time (an id only: records are ordered by their ``seq``)."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


#: the record keys of an input's output files (relative paths, or None): the overlay (a volume's montage),
#: the heatmap .npy, the deletion/insertion curves, a volume's three-plane panel and its NIfTI heatmap
OUTPUT_KEYS = ("overlay", "heatmap", "curves", "planes", "nifti")


def _outputs_of(item: InputImage, options: RunOptions, rank: int, volume: bool) -> dict[str, Path | None]:
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


def _stale_outputs(item: InputImage, options: RunOptions, rank: int, paths: dict[str, Path | None]) -> list[Path]:
    """A photo's optional outputs (.npy heatmap, deletion/insertion curves) that this run does not write:
    left by an earlier run with other settings, they would no longer belong to the overlay beside them."""
    npy_path = output_paths(item, options.output_dir, rank, options.top_k)[1]
    candidates = {"heatmap": npy_path, "curves": sibling_path(paths["overlay"], ".curves.png")}
    return [path for key, path in candidates.items() if paths[key] is None]


def _render_and_identify(root: Path, written: list[Path], stale: list[Path], *args) -> tuple[bool, dict]:
    """Remove the ``stale`` outputs of an earlier run, :func:`~gradcam.render.render_outputs`, then the
    identity (size, mtime) of each file written, by its path relative to ``root``: (is_constant, files)."""
    for path in stale:
        path.unlink(missing_ok=True)
    zero = render_outputs(*args)
    return zero, {relative_path(root, path): file_identity(path) for path in written}


def _render_volume_and_identify(root: Path, written: list[Path], volume: np.ndarray, cam: np.ndarray,
                                affine: np.ndarray | None, paths: dict[str, Path | None], title: str, alpha: float,
                                colormap: str, compress_level: int | None) -> tuple[bool, dict]:
    """A volume's outputs: the heatmap at the volume's size as .npy (and, for a NIfTI input, as .nii.gz
    with its affine), the montage and the three-plane panel (drawn in the viewer's orientation); then
    (is_constant, files) as :func:`_render_and_identify`."""
    heatmap, constant = heatmap_at(cam, volume.shape[:3])
    save_npy(paths["heatmap"], heatmap)
    if paths["nifti"] is not None:
        write_atomic(paths["nifti"], nifti_bytes(heatmap, affine))
    shown_volume, shown_heatmap = to_display(affine, volume, heatmap)
    render_volume_outputs(shown_volume, shown_heatmap, paths["overlay"], paths["planes"], title, alpha, colormap,
                          compress_level)
    return constant, {relative_path(root, path): file_identity(path) for path in written}


def write_gallery_safely(output_dir: Path, summary: Summary) -> None:
    """Write OUTPUT/index.html; a failure (disk full) is kept in ``summary.gallery_error``, not raised."""
    try:
        write_gallery(output_dir)
    except OSError as exc:
        summary.gallery_error = f"cannot write the gallery in {output_dir}: {exc.strerror or exc}"


def _identify_and_read(read: Callable, path, *args) -> tuple[dict | None, tuple]:
    """(the input's identity, taken first, ``read(path, *args)``): a file changed while it is read
    then matches no record, and is explained again by the next run."""
    return DIGESTS.identity(path), read(path, *args)


@dataclass
class _Resume:
    """What to do with one input: ``skip`` it (its outputs are up to date, ``trusted`` their records,
    one per rank; ``source`` the input's identity now), else redo it, for ``reasons`` (empty when
    none of its outputs existed)."""

    skip: bool
    trusted: list[dict]
    reasons: list[str]
    source: dict | None = None


def _resume_decision(item: InputImage, options: RunOptions, root: Path, previous: dict[str, dict],
                     settings: dict | None) -> _Resume:
    """Skip an input when every output it needs exists, is as its newest record says (size and
    modification time), that record was made from an input of the same content (digest) and with
    ``settings`` (or, with ``settings`` None, with the same ``options.request``)."""
    ranked = [_outputs_of(item, options, k + 1, is_volume_name(item.path)) for k in range(options.top_k)]
    wanted = [path for paths in ranked for path in paths.values() if path is not None]
    if options.overwrite or not any(path.exists() for path in wanted):
        return _Resume(False, [], [])
    reasons: list[str] = []
    trusted = []
    source = None
    for paths in ranked:
        record = previous.get(relative_path(root, paths["overlay"]))
        trusted.append(record)
        if record is None:
            changed = ["no record of the outputs"]
        elif settings is None:
            changed = [] if record.get("request") == options.request else ["settings"]
        elif not isinstance(record.get("settings"), dict):
            changed = ["no recorded settings"]
        else:
            changed = changed_settings(record["settings"], settings)
        if record is not None and not changed and not files_unchanged(root, record.get("files")):
            changed = ["outputs changed since recorded"]
        if record is not None and not changed:
            source = source or DIGESTS.identity(item.path)
            if not same_content(record.get("source"), source):
                changed = ["input changed" if isinstance(record.get("source"), dict) else "no record of the input"]
        reasons.extend(reason for reason in changed if reason not in reasons)
    if not reasons and not all(path.exists() for path in wanted):
        reasons.append("some outputs missing")
    return _Resume(not reasons, trusted, reasons, source)


def _skipped_record(item: InputImage, trusted: dict, run_id: str, rank: int, request: dict | None,
                    source: dict | None) -> dict:
    """A "skipped" record that carries the result, settings and output identities of the record it
    trusts, this run's ``request`` (its settings equal the trusted record's, so it makes the same
    outputs) and the input's identity now (``source``: same content, perhaps another path or inode)."""
    keep = {key: value for key, value in trusted.items()
            if key not in ("input", "status", "run", "seq", "error", "touched")}
    return new_record(item.path, "skipped", run_id, **{**keep, "rank": rank, "request": request, "source": source})


def skip_if_up_to_date(items: Iterable[InputImage], options: RunOptions,
                       on_record: Callable[[dict], None] | None = None,
                       previous: dict[str, dict] | None = None) -> Summary | None:
    """A rerun's fast path, without TensorFlow or the model: when every input's outputs are up to date
    (they exist as recorded by records of the same ``options.request``), write their "skipped"
    records, the run's start and end records and the gallery, and return the Summary; otherwise
    None (nothing is written), and the run must load the model. ``previous``: :func:`trusted_outputs`
    of the output folder, when the caller has read it already (to hand on to :func:`run`).
    """
    if options.request is None or options.overwrite or not options.write_manifest:
        return None
    items = select_shard(items, options.shard)
    root = Path(options.output_dir).resolve()
    previous = read_trusted(root) if previous is None else previous
    if not previous:
        return None
    run_id = new_run_id()
    records = []
    for item in items:
        decision = _resume_decision(item, options, root, previous, None)
        if not decision.skip:
            return None
        records += [_skipped_record(item, trusted, run_id, k + 1, options.request, decision.source)
                    for k, trusted in enumerate(decision.trusted)]
    from .._version import __version__

    summary = Summary(total=len(items))
    manifest = ManifestWriter(root, manifest_name(options.shard))
    try:
        manifest.write_many([start_record(run_id, len(items), options.shard, __version__,
                                          request_files(options.request)), *records])
        for record in records:
            summary.count(record)
            if on_record is not None:
                on_record(record)
        manifest.write(end_record(run_id, summary.explained, summary.skipped, summary.failed))
    except OutputError as exc:
        summary.stopped = str(exc)
    finally:
        manifest.close()
    write_gallery_safely(root, summary)
    return summary


def run(explainer, items: Iterable[InputImage], options: RunOptions,
        on_record: Callable[[dict], None] | None = None, previous: dict[str, dict] | None = None,
        run_id: str | None = None, scorer: Scorer | None = None) -> Summary:
    """Explain every input, writing outputs and manifest lines as they finish.

    The manifest gets a start record (how many inputs are planned) first and an end record once every
    input has its record, so ``gradcam status`` can tell a finished run from a killed one.
    With ``options.shard`` = (I, N) only the inputs of shard I are explained, and the records go to
    that shard's manifest. A KeyboardInterrupt stops the run cleanly: finished work is in the
    manifest and ``Summary.interrupted`` is set. A manifest that cannot be written (disk full) stops
    the run with ``Summary.stopped`` set. ``previous`` (overlay path -> its newest record) replaces
    reading every manifest of the output folder, for callers that run many small batches;
    ``run_id`` stamps the records (default: this run's start time). ``scorer`` scores each map when
    ``options.evaluate`` asks (:func:`gradcam.metrics.faithfulness.faithfulness_scores`: the metrics
    stage, handed in from above, as ``gradcam.run`` and the CLI do).
    """
    from .._version import __version__

    items = select_shard(items, options.shard)
    folder_run = _FolderRun(explainer, options, on_record, len(items), previous, scorer)
    if run_id is not None:
        folder_run.run_id = run_id
    try:
        if folder_run.manifest is not None:
            classifier = explainer.classifier
            named = request_files(options.request) or [classifier.name, classifier.weights, options.mask]
            folder_run.manifest.write(start_record(folder_run.run_id, len(items), options.shard, __version__, named))
        for item in items:
            folder_run.plan(item)
        folder_run.finish()
        if folder_run.manifest is not None:
            summary = folder_run.summary
            folder_run.manifest.write(end_record(folder_run.run_id, summary.explained, summary.skipped,
                                                 summary.failed))
    except KeyboardInterrupt:
        folder_run.interrupt()
    except OutputError as exc:  # the manifest itself cannot be written
        folder_run.summary.stopped = str(exc)
    finally:
        folder_run.close()
    return folder_run.summary
