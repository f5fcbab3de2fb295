"""OUTPUT/manifest.jsonl (or one manifest per shard): one JSON record per output, appended as outputs
finish, one locked write per line; the settings a record carries; reading every manifest of a folder
back for resume, the gallery and ``gradcam status``.

Imports nothing heavy (the gallery, the CLI and resume all read it).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

from .names import MANIFEST_NAME, SHARD_MANIFEST_PATTERN

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; one write per line is still one append
    fcntl = None

_SHARD_FILE = re.compile(r"^manifest\.shard-(\d+)-of-(\d+)\.jsonl$")


def manifest_name(shard: tuple[int, int] | None = None) -> str:
    """``manifest.jsonl``, or ``manifest.shard-I-of-N.jsonl`` for shard (I, N)."""
    return MANIFEST_NAME if shard is None else SHARD_MANIFEST_PATTERN.format(index=shard[0], count=shard[1])


def manifest_paths(output_dir: Path) -> list[Path]:
    """Every manifest in ``output_dir``: manifest.jsonl first, then the shards' in (N, I) order."""
    output_dir = Path(output_dir)
    shards = []
    try:
        for entry in os.scandir(output_dir):
            match = _SHARD_FILE.match(entry.name)
            if match:
                shards.append(((int(match.group(2)), int(match.group(1))), Path(entry.path)))
    except OSError:
        return []
    main = [output_dir / MANIFEST_NAME] if (output_dir / MANIFEST_NAME).is_file() else []
    return main + [path for _, path in sorted(shards)]


def shard_of_manifest(path: Path) -> tuple[int, int] | None:
    """(I, N) of a shard manifest's file name, None for manifest.jsonl."""
    match = _SHARD_FILE.match(Path(path).name)
    return (int(match.group(1)), int(match.group(2))) if match else None


def read_records(source: Path) -> list[dict]:
    """Every record of a manifest file in order, or of every manifest of a folder (ordered by the runs'
    start times, file order within a run); a line cut short by a kill is left out."""
    source = Path(source)
    if source.is_dir():
        records = [record for path in manifest_paths(source) for record in read_records(path)]
        return sorted(records, key=lambda record: str(record.get("run") or ""))
    try:
        lines = source.read_text(encoding="utf-8").splitlines()
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


def latest_records(source: Path) -> list[dict]:
    """The newest record per (input, rank) in a manifest or a folder's manifests; a later "skipped"
    keeps the earlier result it skipped."""
    latest: dict[tuple, dict] = {}
    for record in read_records(source):
        key = (record.get("input"), record.get("rank") or 1)
        earlier = latest.get(key)
        if record.get("status") == "skipped" and earlier and earlier.get("status") == "ok":
            continue
        latest[key] = record
    return list(latest.values())


def settings_by_output(source: Path) -> dict[str, dict]:
    """Overlay path (relative to OUTPUT) -> the settings recorded by the newest record that made or
    kept it ("ok" or "skipped"), in a manifest or a folder's manifests; outputs recorded without
    settings are left out."""
    found: dict[str, dict] = {}
    for record in read_records(source):
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
        "png_compression": options.png_compression, "max_size": options.max_size,
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
    """Appends one JSON line per record to a manifest in the output folder.

    Each line is one ``write`` on a file opened for appending, under an exclusive ``flock``, so two
    processes writing into the same manifest never interleave or cut each other's lines.
    """

    def __init__(self, output_dir: Path, name: str = MANIFEST_NAME):
        self.output_dir = Path(output_dir).resolve()
        self.path = self.output_dir / name
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)

    def write(self, record: dict) -> None:
        data = (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
        if fcntl is not None:
            fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view):]
        finally:
            if fcntl is not None:
                fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        os.close(self._fd)
