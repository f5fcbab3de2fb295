"""The records side of a folder run: each input's record goes to the manifest, into the summary's counts
and to the caller's ``on_record``; the gallery is written once the manifest is closed."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from ..inputs.discovery import InputImage
from ..outputs.gallery import write_gallery
from ..outputs.manifest import ManifestWriter, new_record
from .status import Summary


class RunRecords:
    """Where one run's records go. ``settings``: the run's settings (manifest.run_settings); ``common``:
    the values every record of an explained input carries (layer, method, model, request)."""

    def __init__(self, manifest: ManifestWriter | None, summary: Summary, on_record: Callable[[dict], None] | None,
                 run_id: str, settings: dict, common: dict):
        self.manifest = manifest  # None: records go to on_record only, and no gallery (Ray workers)
        self.summary = summary
        self.on_record = on_record
        self.run_id = run_id
        self.settings = settings
        self.common = common

    def emit(self, record: dict) -> None:
        """Append a record to the manifest, count it in the summary and pass it to ``on_record`` (a record
        the manifest could not take is not counted)."""
        self.emit_many([record])

    def emit_many(self, records: list[dict]) -> None:
        """:meth:`emit` each of ``records``, in order, the manifest taking them in one append (one fsync)."""
        if not records:
            return
        if self.manifest is not None:
            self.manifest.write_many(records)
        for record in records:
            self.summary.count(record)
            if self.on_record is not None:
                self.on_record(record)

    def error(self, item: InputImage, message: str, rank: int | None = None, touched: list | None = None) -> None:
        """Emit an error record (:meth:`error_record`)."""
        self.emit(self.error_record(item, message, rank, touched))

    def error_record(self, item: InputImage, message: str, rank: int | None = None,
                     touched: list | None = None) -> dict:
        """An error record; ``touched``: the outputs (relative paths) a failed write may have replaced."""
        return new_record(item.path, "error", self.run_id, error=message, rank=rank, settings=self.settings,
                          touched=touched or None, **self.common)

    def ok_record(self, item: InputImage, zero: bool, files: dict, values: dict) -> dict:
        """The record of an input's written outputs: ``files`` their identities, ``values`` the rest."""
        return new_record(item.path, "ok", self.run_id, zero_heatmap=zero, files=files, **values)

    def close(self, output_dir: Path) -> None:
        """Close the manifest and write the gallery beside it (nothing without a manifest)."""
        if self.manifest is not None:
            self.manifest.close()
            write_gallery_safely(output_dir, self.summary)


def write_gallery_safely(output_dir: Path, summary: Summary) -> None:
    """Write OUTPUT/index.html; a failure (disk full) is kept in ``summary.gallery_error``, not raised."""
    try:
        write_gallery(output_dir)
    except OSError as exc:
        summary.gallery_error = f"cannot write the gallery in {output_dir}: {exc.strerror or exc}"
