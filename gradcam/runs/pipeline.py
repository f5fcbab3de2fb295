"""The folder run: the run loop that schedules its stages, each bounded so memory does not grow with
the folder:

decode pool (Pillow; :mod:`.decode`) -> batches -> one compiled step per batch, main thread (:mod:`.step`)
-> render pool (zoom, colour, PNG/.npy writes; :mod:`.write`) -> manifest line + progress (:mod:`.records`).

Whether an input is skipped or redone is :mod:`.resume`'s decision; the settings are :mod:`.options`'.
"""
from __future__ import annotations

import gc
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterable

from ..errors import OutputError, UsageError
from ..inputs.discovery import InputImage
from ..inputs.images import photo_bytes
from ..inputs.masks import load_mask
from ..outputs.manifest import (
    ManifestWriter,
    end_record,
    manifest_name,
    read_trusted,
    request_files,
    run_settings,
    start_record,
)
from ..outputs import fused
from ..outputs.paths import prepare_output_dir, select_shard
from .decode import Decoded, DecodeStage
# OUTPUT_KEYS, write_gallery_safely and skip_if_up_to_date are imported from here too (cli, api, distributed)
from .options import OUTPUT_KEYS, RunOptions, Scorer, check_run_options, new_run_id  # noqa: F401
from .records import RunRecords, write_gallery_safely  # noqa: F401
from .resume import resume_decision, skip_if_up_to_date, skipped_records  # noqa: F401
from .status import Summary
from .step import ModelStage
from .write import WriteStage

__all__ = ["RunOptions", "Summary", "run"]  # Summary: re-exported from status

#: photos held between the stages of a run, in bytes, before it waits (12 megapixels: 36 MB a photo)
PENDING_BYTES = 512 * 2**20


class _FolderRun:
    """One folder run: its stages, scheduled in the order an input meets them:

    :meth:`plan` (skip, redo or explain) -> :meth:`_take_decoded` (decoded photos into batches)
    -> :meth:`_explain` (the model stage's steps, their maps to the write stage) -> the write stage's
    ``finish`` (written outputs into records) -> ``records`` (summary, manifest, callback).
    ``decoding`` and ``rendering`` are the decode and write stages' queues, which :meth:`_relieve` bounds.
    """

    def __init__(self, explainer, options: RunOptions, on_record: Callable[[dict], None] | None, total: int,
                 previous: dict[str, dict] | None = None, scorer: Scorer | None = None, run_id: str | None = None):
        self.options = options
        if options.evaluate and scorer is None:
            raise UsageError("faithfulness scores need a scorer: gradcam.run supplies gradcam.faithfulness_scores")
        summary = Summary(total=total)
        run_id = new_run_id() if run_id is None else run_id
        self.batch_size = max(1, options.batch_size)
        check_run_options(explainer, options)
        mask = load_mask(options.mask) if options.mask is not None else None
        settings = run_settings(explainer, options)
        common = {"layer": explainer.layer_name, "method": explainer.method, "model": explainer.classifier.name}
        prepare_output_dir(options.output_dir)
        if options.overwrite:
            previous = {}
        self.previous = read_trusted(Path(options.output_dir)) if previous is None else previous
        manifest = ManifestWriter(options.output_dir, manifest_name(options.shard)) \
            if options.write_manifest else None
        self.root = Path(options.output_dir).resolve()
        common["request"] = options.request
        self.records = RunRecords(manifest, summary, on_record, run_id, settings, common)
        self.decode = DecodeStage(explainer, options, mask, self.records)
        self.model = ModelStage(explainer, options, self.records)
        self.write = WriteStage(explainer, options, scorer, self.records, self.root)
        self.decoding = self.decode.pending  # the same deques: what the memory bound counts
        self.rendering = self.write.pending
        self.batch: list[Decoded] = []

    # -- stage 1: skip, redo or explain
    def plan(self, item: InputImage) -> None:
        """Skip an input whose outputs all exist as recorded by a record made with these settings;
        otherwise queue it for decoding (counting it as redone when some of its outputs existed)."""
        records = self.records
        decision = resume_decision(item, self.options, self.root, self.previous, records.settings)
        if decision.skip:
            for record in skipped_records(item, decision, records.run_id, self.options.request):
                records.emit(record)
            return
        if decision.reasons:
            records.summary.redone += 1
            records.summary.redo_reasons.update(decision.reasons)
        self.decode.submit(item)
        self._take_decoded(2 * self.batch_size)
        self._relieve()

    # -- stage 2: decoded photos into batches
    def _take_decoded(self, limit: int) -> None:
        """Collect decoded photos until at most ``limit`` are pending; explain each full batch."""
        while len(self.decoding) > limit:
            entry = self.decode.take()
            if entry is None:  # unreadable: recorded
                continue
            self.batch.append(entry)
            if len(self.batch) == self.batch_size:
                self._explain(self.batch)
                self.batch = []

    # -- stages 3 and 4: the model, then the outputs
    def _explain(self, pending: list[Decoded]) -> None:
        """Each successful step's maps queued for writing, then finished writes recorded."""
        for maps in self.model.explain(pending):
            for one in maps:
                self.write.submit(*one)
            self.write.finish(2 * self.batch_size * self.options.top_k)

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
                self.write.finish(len(self.rendering) - 1)
            elif self.decoding:
                self._take_decoded(len(self.decoding) - 1)
            else:
                break  # only the batch being assembled: it must fill

    def finish(self) -> None:
        """Drain every stage: the last decodes, the last (partial) batch, the last writes."""
        self._take_decoded(0)
        if self.batch:
            self._explain(self.batch)
            self.batch = []
        self.write.finish(0)

    def interrupt(self) -> None:
        """Stop early, keeping the records of outputs that already finished writing. Writes still
        running get no record: their files then match no record, so a rerun makes them again."""
        self.records.summary.interrupted = True
        self.decode.cancel()
        self.write.record_finished()

    def close(self) -> None:
        summary = self.records.summary
        self.decode.close()
        self.write.close(wait=not (summary.interrupted or summary.stopped))
        self.records.close(self.options.output_dir)


@contextmanager
def objects_frozen():
    """Python's cycle collector leaves alone the objects that exist when the run starts (``gc.freeze``) and
    takes them back when it ends (``gc.unfreeze``). With TensorFlow and a traced model loaded that is ~400,000
    objects: one full collection of them costs 0.2-0.4 s of CPU, and a run's own allocations set one off at a
    moment nobody chooses (~2 ms a photo over 192 photos). Reference counting still frees everything as before;
    only cycles among objects older than the run wait until it ends. A process that froze objects itself
    (``gc.get_freeze_count()`` > 0), or that turned the collector off, is left as it is."""
    freeze = gc.isenabled() and gc.get_freeze_count() == 0
    if freeze:
        gc.freeze()
    try:
        yield
    finally:
        if freeze:
            gc.unfreeze()


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
    items = select_shard(items, options.shard)
    if items and not explainer.volumetric and items[0].path.is_file():  # a large run: the fused kernel from the start
        fused.expect(len(items) * photo_bytes(items[0].path) // 3)
    with objects_frozen():
        return _run(explainer, items, options, _FolderRun(explainer, options, on_record, len(items), previous,
                                                          scorer, run_id))


def _run(explainer, items: list[InputImage], options: RunOptions, folder_run: _FolderRun) -> Summary:
    from .._version import __version__

    records = folder_run.records
    try:
        if records.manifest is not None:
            classifier = explainer.classifier
            named = request_files(options.request) or [classifier.name, classifier.weights, options.mask]
            records.manifest.write(start_record(records.run_id, len(items), options.shard, __version__, named))
        for item in items:
            folder_run.plan(item)
        folder_run.finish()
        if records.manifest is not None:
            summary = records.summary
            records.manifest.write(end_record(records.run_id, summary.explained, summary.skipped, summary.failed))
    except KeyboardInterrupt:
        folder_run.interrupt()
    except OutputError as exc:  # the manifest itself cannot be written
        records.summary.stopped = str(exc)
    finally:
        folder_run.close()
    return records.summary
