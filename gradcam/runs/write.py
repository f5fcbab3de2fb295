"""The render/write stage of a folder run: each map checked, a photo's faithfulness scored when asked, its
outputs (zoom, colour, PNG/.npy/NIfTI writes) made in a thread pool behind the model, and each finished
write turned into the input's "ok" record (or an error record)."""
from __future__ import annotations

import collections
import concurrent.futures
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np

from ..errors import GradcamError, HeatmapError
from ..explainers.heatmap import check_finite, check_region, heatmap_at
from ..inputs.discovery import InputImage
from ..inputs.medical import nifti_bytes, to_display
from ..outputs.manifest import file_identity
from ..outputs.paths import relative_path
from ..outputs.render import panel_title, render_outputs, render_volume_outputs, save_npy, write_atomic
from .decode import Decoded
from .options import OUTPUT_KEYS, RunOptions, Scorer, outputs_of
from .records import RunRecords
from .resume import stale_outputs


#: how long the record of a finished write may wait for those of the writes after it, to share their append
GATHER_SECONDS = 0.1


def _done_by(future: Future, deadline: float) -> bool:
    """Whether ``future`` finishes before ``deadline`` (time.monotonic()), waiting until then at most."""
    return bool(concurrent.futures.wait([future], timeout=max(0.0, deadline - time.monotonic())).done)


class WriteStage:
    """Writes the outputs of maps in its pool; :meth:`finish` records them in submission order.
    ``pending``: (input, its writes' Future, its record's values, the photo's bytes) for each not recorded."""

    def __init__(self, explainer, options: RunOptions, scorer: Scorer | None, records: RunRecords, root: Path):
        self.explainer = explainer
        self.options = options
        self.scorer = scorer
        self.records = records
        self.root = root  # the output folder, resolved: records name outputs relative to it
        self.pool = ThreadPoolExecutor(options.workers, thread_name_prefix="gradcam-render")
        self.pending: collections.deque[tuple[InputImage, Future, dict, int]] = collections.deque()

    def submit(self, entry: Decoded, cam: np.ndarray, class_index: int, probability: float, rank: int,
               region: np.ndarray | None = None) -> None:
        """Check one map (finite; a segmentation region that is not empty), and queue its outputs for
        writing (a photo's scored first when asked: :meth:`_submit_photo`)."""
        options, explainer, records = self.options, self.explainer, self.records
        try:
            check_finite(cam)
            check_region(region, options.region is not None or options.mask is not None, class_index)
        except HeatmapError as exc:
            records.error(entry.item, str(exc), rank)
            return
        paths = outputs_of(entry.item, options, rank, explainer.volumetric)
        values = dict(records.common, class_index=class_index, class_name=explainer.class_name(class_index),
                      probability=probability, rank=rank, settings=records.settings, source=entry.source,
                      **{key: relative_path(self.root, path) for key, path in paths.items()
                         if path is not None or key in ("overlay", "heatmap")})
        written = [path for path in paths.values() if path is not None]
        if explainer.volumetric:
            future = self.pool.submit(_render_volume_and_identify, self.root, written, entry.photo, cam,
                                      entry.affine, paths, panel_title(values), options.alpha,
                                      options.colormap, options.png_compression)
        else:
            try:
                future = self._submit_photo(entry, cam, class_index, region, paths, values, written)
            except GradcamError as exc:  # this input's scores cannot be made (its mask, say): its own error
                records.error(entry.item, f"cannot score the map: {exc}", rank)
                return
        self.pending.append((entry.item, future, values, entry.photo.nbytes))

    def _submit_photo(self, entry: Decoded, cam: np.ndarray, class_index: int, region: np.ndarray | None,
                      paths: dict[str, Path | None], values: dict, written: list[Path]) -> Future:
        """A photo's faithfulness scores when asked (added to ``values``; none for a constant map: it ranks
        no pixel, so it gets no curves either), then its writes queued: the render's Future."""
        options, explainer = self.options, self.explainer
        curves = None
        if options.evaluate:
            heatmap, constant = heatmap_at(cam, explainer.input_size)
            if not constant:
                scores = self.scorer(explainer, entry, cam, heatmap, class_index)
                values.update(scores.as_record())
                if options.plot and scores.faithfulness is not None:
                    curves = (paths["curves"], scores.faithfulness, panel_title(values))
        if curves is None and "curves" in values:
            del values["curves"]
            written.remove(paths["curves"])
        title = panel_title(values) if options.panel else None
        stale = stale_outputs(entry.item, options, values["rank"], paths)
        return self.pool.submit(_render_and_identify, self.root, written, stale, entry.photo, cam,
                                paths["overlay"], paths["heatmap"], options.alpha, options.colormap, title, curves,
                                options.png_compression, region)

    def finish(self, limit: int) -> None:
        """Turn finished writes into records, in submission order, until at most ``limit`` are pending. Records
        ready together go to the manifest in one append (one fsync): a finished write's record waits for the
        writes after it at most :data:`GATHER_SECONDS`, then the records ready are appended before waiting on."""
        ready: list[dict] = []
        deadline = 0.0
        try:
            while len(self.pending) > limit:
                future = self.pending[0][1]
                if ready and not future.done() and not _done_by(future, deadline):
                    ready, records = [], ready
                    self.records.emit_many(records)
                item, future, values, _ = self.pending.popleft()
                ready.append(self._record_of(item, future, values))
                if len(ready) == 1:
                    deadline = time.monotonic() + GATHER_SECONDS
        finally:  # also when interrupted (Ctrl-C) while gathering: the records of finished writes are kept
            self.records.emit_many(ready)

    def _record_of(self, item: InputImage, future: Future, values: dict) -> dict:
        """The record of one input's writes once they finish (waiting for them): "ok", or an error record
        naming the outputs the failed write may have touched."""
        try:
            zero, files = future.result()
        except Exception as exc:  # disk full, permission denied...
            touched = [values[key] for key in OUTPUT_KEYS if values.get(key)]
            return self.records.error_record(item, f"cannot write output: {exc}", values["rank"], touched)
        return self.records.ok_record(item, zero, files, values)

    def record_finished(self) -> None:
        """Record the writes that already finished, waiting for none (an interrupted run): in one append."""
        self.records.emit_many([self.records.ok_record(item, *future.result(), values)
                                for item, future, values, _ in list(self.pending)
                                if future.done() and not future.cancelled() and future.exception() is None])

    def close(self, wait: bool) -> None:
        """Stop the pool, cancelling writes not started; ``wait`` for those in progress."""
        self.pool.shutdown(wait=wait, cancel_futures=True)


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
