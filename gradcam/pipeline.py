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

from .errors import HeatmapError, ImageError, first_line
from .faithfulness import faithfulness_scores
from .gallery import write_gallery
from .heatmap import check_finite, heatmap_at
from .images import DEFAULT_MAX_PIXELS, InputImage, load_for_model, photo_bytes
from .manifest import (
    ManifestWriter,
    changed_settings,
    manifest_name,
    new_record,
    run_settings,
    settings_by_output,
)
from .names import DEFAULT_BATCH_SIZE
from .outputs import output_paths, prepare_output_dir, relative_path, select_shard
from .render import DEFAULT_PNG_COMPRESSION, panel_title, render_outputs
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
    png_compression: int = DEFAULT_PNG_COMPRESSION  # zlib level of the PNGs, 0-9
    max_size: int | None = None  # cap the overlay's (and .npy's) longer side; None: the photo's own size
    shard: tuple[int, int] | None = None  # (I, N): explain only shard I of N, into its own manifest
    write_manifest: bool = True  # False: records go to on_record only, and no gallery (Ray workers)
    workers: int = field(default_factory=lambda: max(2, min(4, os.cpu_count() or 2)))


#: photos held between the stages of a run, in bytes, before it waits (12 megapixels: 36 MB a photo)
PENDING_BYTES = 512 * 2**20


@dataclass
class _Decoded:
    """An input ready for the model: the photo uint8 (H, W, 3) and the model input float32 (h, w, 3)."""

    item: InputImage
    photo: np.ndarray
    model_input: np.ndarray


class _FolderRun:
    """One folder run's state and its stages, in the order an input meets them:

    :meth:`plan` (skip, redo or explain) -> :meth:`_take_decoded` (decoded photos into batches)
    -> :meth:`_explain` (one compiled step per batch, per image on failure) -> :meth:`_finish_render`
    (written outputs into manifest records) -> :meth:`_emit` (summary, manifest, callback).
    """

    def __init__(self, explainer, options: RunOptions, on_record: Callable[[dict], None] | None, total: int,
                 previous: dict[str, dict] | None = None):
        self.explainer = explainer
        self.options = options
        self.on_record = on_record
        self.summary = Summary(total=total)
        self.run_id = datetime.now(timezone.utc).isoformat(timespec="seconds")
        self.batch_size = max(1, options.batch_size)
        self.settings = run_settings(explainer, options)
        self.common = {"layer": explainer.layer_name, "method": explainer.method, "model": explainer.classifier.name}
        prepare_output_dir(options.output_dir)
        if options.overwrite:
            previous = {}
        self.previous = settings_by_output(Path(options.output_dir)) if previous is None else previous
        self.manifest = ManifestWriter(options.output_dir, manifest_name(options.shard)) \
            if options.write_manifest else None
        self.root = Path(options.output_dir).resolve()
        self.decode_pool = ThreadPoolExecutor(options.workers, thread_name_prefix="gradcam-decode")
        self.render_pool = ThreadPoolExecutor(options.workers, thread_name_prefix="gradcam-render")
        self.decoding: collections.deque[tuple[InputImage, Future, int]] = collections.deque()
        self.rendering: collections.deque[tuple[InputImage, Future, dict, int]] = collections.deque()
        self.batch: list[_Decoded] = []

    # -- records
    def _emit(self, record: dict) -> None:
        """Count a record in the summary, append it to the manifest and pass it to ``on_record``."""
        self.summary.count(record)
        if self.manifest is not None:
            self.manifest.write(record)
        if self.on_record is not None:
            self.on_record(record)

    def _error(self, item: InputImage, message: str, rank: int | None = None) -> None:
        self._emit(new_record(item.path, "error", self.run_id, error=message, rank=rank, settings=self.settings,
                           **self.common))

    # -- stage 1: skip, redo or explain
    def plan(self, item: InputImage) -> None:
        """Skip an input whose outputs all exist and were made with these settings; otherwise
        queue it for decoding (counting it as redone when some of its outputs existed)."""
        options = self.options
        ranked = [output_paths(item, options.output_dir, k + 1, options.top_k) for k in range(options.top_k)]
        wanted = [path for overlay_path, npy_path in ranked
                  for path in [overlay_path] + ([npy_path] if options.save_npy else [])]
        existing = [path.exists() for path in wanted]
        if not options.overwrite and any(existing):
            reasons = self._redo_reasons([relative_path(self.root, overlay_path) for overlay_path, _ in ranked])
            if all(existing) and not reasons:
                for k, (overlay_path, npy_path) in enumerate(ranked):
                    self._emit(new_record(item.path, "skipped", self.run_id,
                                          overlay=relative_path(self.root, overlay_path),
                                          heatmap=relative_path(self.root, npy_path) if options.save_npy else None,
                                          rank=k + 1, settings=self.settings, **self.common))
                return
            self.summary.redone += 1
            self.summary.redo_reasons.update(reasons or ["some outputs missing"])
        future = self.decode_pool.submit(load_for_model, item.path, self.explainer.input_size, options.max_pixels,
                                         options.max_size)
        self.decoding.append((item, future, photo_bytes(item.path)))
        self._take_decoded(2 * self.batch_size)
        self._relieve()

    def _redo_reasons(self, overlays: list[str]) -> list[str]:
        """Why existing outputs must be made again: the settings that changed, or that none were recorded."""
        reasons: list[str] = []
        for overlay_path in overlays:
            old = self.previous.get(overlay_path)
            changed = ["no recorded settings"] if old is None else changed_settings(old, self.settings)
            reasons.extend(reason for reason in changed if reason not in reasons)
        return reasons

    # -- stage 2: decoded photos into batches
    def _take_decoded(self, limit: int) -> None:
        """Collect decoded photos until at most ``limit`` are pending; explain each full batch."""
        while len(self.decoding) > limit:
            item, future, _ = self.decoding.popleft()
            try:
                photo, model_input = future.result()
            except ImageError as exc:
                self._error(item, str(exc))
                continue
            self.batch.append(_Decoded(item, photo, model_input))
            if len(self.batch) == self.batch_size:
                self._explain(self.batch)
                self.batch = []

    # -- stage 3: the model
    def _explain(self, pending: list[_Decoded]) -> None:
        """One compiled step for the batch; if it fails, each image alone, recording those that still fail."""
        try:
            result = self.explainer.explain_batch(np.stack([entry.model_input for entry in pending]),
                                                  self.options.class_index)
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
                self._render(entry, result.ranked_cams[i, k], int(result.ranked_class_index[i, k]),
                             float(probability[i, k]), k + 1)
        self._finish_render(2 * self.batch_size * self.options.top_k)

    # -- stage 4: outputs
    def _render(self, entry: _Decoded, cam: np.ndarray, class_index: int, probability: float, rank: int) -> None:
        """Check one map, score it when asked, and queue its outputs for writing."""
        options, explainer = self.options, self.explainer
        try:
            check_finite(cam)
        except HeatmapError as exc:
            self._error(entry.item, str(exc), rank)
            return
        overlay_path, npy_path = output_paths(entry.item, options.output_dir, rank, options.top_k)
        npy_path = npy_path if options.save_npy else None
        values = dict(self.common, class_index=class_index, class_name=explainer.class_name(class_index),
                      probability=probability, rank=rank, overlay=relative_path(self.root, overlay_path),
                      heatmap=relative_path(self.root, npy_path), settings=self.settings)
        curves = None
        if options.evaluate:
            scores = faithfulness_scores(explainer.predict, entry.model_input, heatmap_at(cam, explainer.input_size)[0],
                                  class_index, options.steps, explainer.deletion_baseline())
            values.update(scores.as_record())
            if options.plot:
                curves_path = overlay_path.with_name(overlay_path.name[: -len(".png")] + ".curves.png")
                values["curves"] = relative_path(self.root, curves_path)
                curves = (curves_path, scores, panel_title(values))
        title = panel_title(values) if options.panel else None
        future = self.render_pool.submit(render_outputs, entry.photo, cam, overlay_path, npy_path,
                                         options.alpha, options.colormap, title, curves, options.png_compression)
        self.rendering.append((entry.item, future, values, entry.photo.nbytes))

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
                zero = future.result()
            except Exception as exc:  # disk full, permission denied...
                self._error(item, f"cannot write output: {exc}", values["rank"])
                continue
            self._emit(new_record(item.path, "ok", self.run_id, zero_heatmap=zero, **values))

    def finish(self) -> None:
        """Drain every stage: the last decodes, the last (partial) batch, the last writes."""
        self._take_decoded(0)
        if self.batch:
            self._explain(self.batch)
            self.batch = []
        self._finish_render(0)

    def interrupt(self) -> None:
        """Stop early, keeping the records of outputs that already finished writing."""
        self.summary.interrupted = True
        for _, future, _ in self.decoding:
            future.cancel()
        for item, future, values, _ in list(self.rendering):
            if future.done() and not future.cancelled() and future.exception() is None:
                self._emit(new_record(item.path, "ok", self.run_id, zero_heatmap=future.result(), **values))

    def close(self) -> None:
        self.decode_pool.shutdown(wait=False, cancel_futures=True)
        self.render_pool.shutdown(wait=not self.summary.interrupted, cancel_futures=True)
        if self.manifest is not None:
            self.manifest.close()
            write_gallery(self.options.output_dir)


def run(explainer, items: Iterable[InputImage], options: RunOptions,
        on_record: Callable[[dict], None] | None = None, previous: dict[str, dict] | None = None) -> Summary:
    """Explain every input, writing outputs and manifest lines as they finish.

    With ``options.shard`` = (I, N) only the inputs of shard I are explained, and the records go to
    that shard's manifest. A KeyboardInterrupt stops the run cleanly: finished work is in the
    manifest and ``Summary.interrupted`` is set. ``previous`` (overlay path -> settings) replaces
    reading every manifest of the output folder, for callers that run many small batches.
    """
    items = select_shard(items, options.shard)
    folder_run = _FolderRun(explainer, options, on_record, len(items), previous)
    try:
        for item in items:
            folder_run.plan(item)
        folder_run.finish()
    except KeyboardInterrupt:
        folder_run.interrupt()
    finally:
        folder_run.close()
    return folder_run.summary
