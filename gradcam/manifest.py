"""OUTPUT/manifest.jsonl: one JSON record per output, appended as outputs finish; the settings a
record carries; reading records back for resume and the gallery.

Imports nothing heavy (the gallery, the CLI and resume all read it).
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from .names import MANIFEST_NAME


def read_records(manifest_path: Path) -> list[dict]:
    """Every record of a manifest in order; a line cut short by a kill is left out."""
    try:
        lines = Path(manifest_path).read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    records = []
    for line in lines:
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def latest_records(manifest_path: Path) -> list[dict]:
    """The newest record per (input, rank); a later "skipped" keeps the earlier result it skipped."""
    latest: dict[tuple, dict] = {}
    for record in read_records(manifest_path):
        key = (record.get("input"), record.get("rank") or 1)
        earlier = latest.get(key)
        if record.get("status") == "skipped" and earlier and earlier.get("status") == "ok":
            continue
        latest[key] = record
    return list(latest.values())


def settings_by_output(manifest_path: Path) -> dict[str, dict]:
    """Overlay path (relative to OUTPUT) -> the settings recorded by the newest record that made or
    kept it ("ok" or "skipped"); outputs recorded without settings are left out."""
    found: dict[str, dict] = {}
    for record in read_records(manifest_path):
        if record.get("status") in ("ok", "skipped") and record.get("overlay"):
            settings = record.get("settings")
            if isinstance(settings, dict):
                found[record["overlay"]] = settings
            else:
                found.pop(record["overlay"], None)
    return found


def changed_settings(old: dict, new: dict) -> list[str]:
    """Names of the settings whose values differ, in ``new``'s order."""
    return [key for key in new if old.get(key) != new[key]] + [key for key in old if key not in new]


def new_record(input_path, status: str, run_id: str, **values) -> dict:
    """A manifest record: every key present (None where it does not apply), ``values`` filled in."""
    base = {
        "input": str(input_path), "status": status, "error": None, "class_index": None,
        "class_name": None, "probability": None, "layer": None, "method": None, "model": None,
        "overlay": None, "heatmap": None, "zero_heatmap": None, "rank": None, "run": run_id,
    }
    base.update(values)
    return base


def run_settings(explainer, options) -> dict:
    """Everything that shapes an output file, as recorded in its manifest record: an
    :class:`~gradcam.cam.Explainer` and :class:`~gradcam.pipeline.RunOptions` in, a JSON-ready dict out.

    A rerun skips an output only when these are equal; a model or weights file
    is identified by its path, size and modification time, class names by a digest.
    """
    classifier = explainer.classifier
    names = classifier.class_names
    return {
        "model": classifier.name, "model_file": _file_identity(classifier.name),
        "weights": classifier.weights, "weights_file": _file_identity(classifier.weights),
        "preprocess": classifier.preprocess, "input_size": list(explainer.input_size),
        "layer": explainer.layer_name, **explainer.options(),
        "class_index": options.class_index, "top_k": options.top_k,
        "class_names": hashlib.sha1("\n".join(names).encode()).hexdigest()[:12] if names else None,
        "alpha": options.alpha, "colormap": options.colormap, "panel": options.panel, "save_npy": options.save_npy,
        "evaluate": options.evaluate, "steps": options.steps if options.evaluate else None, "plot": options.plot,
    }


def _file_identity(name: str | None) -> str | None:
    """'SIZE bytes, mtime NS' for an existing file, else None."""
    if not name:
        return None
    try:
        stat = os.stat(name)
    except OSError:
        return None
    return f"{stat.st_size} bytes, mtime {stat.st_mtime_ns}" if os.path.isfile(name) else None


class ManifestWriter:
    """Appends one JSON line per record to OUTPUT/manifest.jsonl, each written and flushed at once."""

    def __init__(self, output_dir: Path):
        self.output_dir = Path(output_dir).resolve()
        self.path = self.output_dir / MANIFEST_NAME
        self._file = open(self.path, "a", encoding="utf-8")

    def relative(self, path: Path | None) -> str | None:
        """``path`` relative to the output folder, POSIX style (None stays None)."""
        return None if path is None else Path(path).relative_to(self.output_dir).as_posix()

    def write(self, record: dict) -> None:
        self._file.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()
