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
from typing import Iterable

from ..errors import OutputError
from .._version import library_versions
from ..inputs.identity import DIGESTS
from .wellformed import regular_file_text, well_formed
from ..names import MANIFEST_NAME, SHARD_MANIFEST_PATTERN

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
    """Every record of a manifest file in the order written, or of every manifest of a folder in the
    order written (by each record's folder-wide sequence number ``seq``; records of older manifests
    without one come first, in file order). A line cut short by a kill is left out."""
    source = Path(source)
    if source.is_dir():
        records = [record for path in manifest_paths(source) for record in read_records(path)]
        return sorted(records, key=lambda record: (isinstance(record.get("seq"), int), record.get("seq") or 0))
    text = regular_file_text(source)
    if text is None:
        return []
    records = []
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except (ValueError, RecursionError):  # cut short, damaged, nested too deep, an int too long
            continue
        if isinstance(record, dict) and well_formed(record):
            records.append(record)
    return records


def input_records(records: list[dict]) -> list[dict]:
    """The records about inputs, without a run's start and end records."""
    return [record for record in records if "input" in record]


def latest_records(source: Path) -> list[dict]:
    """The newest record per (input, rank) in a manifest or a folder's manifests; a later "skipped"
    keeps the earlier result it skipped."""
    latest: dict[tuple, dict] = {}
    owner: dict[str, tuple] = {}  # an overlay -> the (input, rank) whose record made or kept it last
    for record in input_records(read_records(source)):
        key = (record.get("input"), record.get("rank") or 1)
        earlier = latest.get(key)
        if record.get("status") == "skipped" and earlier and earlier.get("status") == "ok":
            continue
        latest[key] = record
        if record.get("status") in ("ok", "skipped") and record.get("overlay"):
            owner[record["overlay"]] = key
    # an input whose overlay another input's later run has replaced (same output name) no longer has a map
    return [record for key, record in latest.items()
            if record.get("status") not in ("ok", "skipped") or owner.get(record.get("overlay")) == key]


def trusted_outputs(source: Path | list[dict]) -> dict[str, dict]:
    """Overlay path (relative to OUTPUT) -> the newest record that made or kept it ("ok" or
    "skipped"), in a manifest or a folder's manifests (or in records already read from them). An
    overlay whose newest mention is an error record that may have touched it (``touched``) is left
    out: it must be made again."""
    found: dict[str, dict] = {}
    records = source if isinstance(source, list) else read_records(source)
    for record in input_records(records):
        if record.get("status") in ("ok", "skipped") and record.get("overlay"):
            found[record["overlay"]] = record
        for path in record.get("touched") or ():
            found.pop(path, None)
    return found


def read_trusted(output_dir: Path) -> dict[str, dict]:
    """:func:`trusted_outputs` of an output folder, its manifests read once; the digests their records
    carry are taught to :data:`~gradcam.identity.DIGESTS` on the way, so unchanged files are not hashed again."""
    records = read_records(output_dir)
    DIGESTS.learn_records(records)
    return trusted_outputs(records)


def file_identity(path: Path) -> dict | None:
    """{"size", "mtime_ns"} of a file as it is now; None when it does not exist."""
    try:
        stat = os.stat(path)
    except (OSError, ValueError):  # ValueError: a NUL in a damaged record's name
        return None
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def files_unchanged(output_dir: Path, files: dict | None) -> bool:
    """True when every file a record lists (relative path -> identity) is there as recorded."""
    if not isinstance(files, dict) or not files:
        return False
    return all(file_identity(Path(output_dir) / name) == identity for name, identity in files.items())


def changed_settings(old: dict, new: dict) -> list[str]:
    """Names of the settings whose values differ, in ``new``'s order."""
    return [key for key in new if old.get(key) != new[key]] + [key for key in old if key not in new]


def start_record(run_id: str, planned: int, shard: tuple[int, int] | None, version: str,
                 named_files: Iterable[str | None] = ()) -> dict:
    """The record a run writes before its first input: how many inputs it plans to record, and the
    identities of the files it was given (model, weights, labels, mask: their digests' cache for a rerun)."""
    files = [identity for identity in (DIGESTS.identity(name) for name in named_files if name) if identity]
    return {"event": "start", "run": run_id, "planned": planned, "shard": list(shard) if shard else None,
            "version": version, "files": files}


def request_files(request: dict | None) -> list[str]:
    """The files a CLI request names and identifies (model, weights, labels, mask)."""
    return [request[key] for key in ("model", "weights", "labels", "mask")
            if request and request.get(key) and request.get(f"{key}_file")]


def end_record(run_id: str, explained: int, skipped: int, failed: int) -> dict:
    """The record a run writes once every planned input has its record."""
    return {"event": "end", "run": run_id, "explained": explained, "skipped": skipped, "failed": failed}


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

    A rerun skips an output only when these are equal; a model, weights or mask file is identified
    by its content (a SHA-256 digest), class names by a digest, and the versions of gradcam,
    TensorFlow and Keras are included, so that a new release makes its maps again.
    """
    from .._version import __version__

    classifier = explainer.classifier
    names = classifier.class_names
    return {
        "version": __version__, **library_versions(),
        "model": classifier.name, "model_file": describe_file(classifier.name),
        "weights": classifier.weights, "weights_file": describe_file(classifier.weights),
        "preprocess": classifier.preprocess, "input_size": list(explainer.input_size),
        "layer": explainer.layer_name, **explainer.options(),
        "class_index": options.class_index, "top_k": options.top_k,
        "class_names": hashlib.sha1("\n".join(names).encode()).hexdigest()[:12] if names else None,
        "alpha": options.alpha, "colormap": options.colormap, "panel": options.panel, "save_npy": options.save_npy,
        "png_compression": options.png_compression, "max_size": options.max_size,
        "region": list(options.region) if options.region else None,
        "mask": options.mask, "mask_file": describe_file(options.mask),
        "window": list(options.window) if options.window else None,
        "evaluate": options.evaluate, "steps": options.steps if options.evaluate else None, "plot": options.plot,
        "evaluation": options.evaluation if options.evaluate else None,
    }


def describe_file(name: str | None) -> str | None:
    """'sha256:HEX' of an existing file's content (cached: see :mod:`gradcam.identity`), else None."""
    return DIGESTS.digest(name)


def _line(record: dict) -> bytes:
    """A record as one UTF-8 JSON line; a file name that is not valid UTF-8 (a lone surrogate from the
    file system) is written as an escape, which reads back to the same name."""
    try:
        return (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
    except UnicodeEncodeError:
        return (json.dumps(record, ensure_ascii=True) + "\n").encode("ascii")


#: the folder's record counter (``seq``), and the lock that serialises every manifest write in it
SEQUENCE_NAME = ".gradcam-sequence"


class ManifestWriter:
    """Appends JSON lines to a manifest in the output folder.

    Every write takes an exclusive ``flock`` on the folder's sequence file, so the processes
    writing into one folder (shards, reruns, machines on a shared file system) never interleave or
    cut each other's lines, and each record gets the next folder-wide sequence number ``seq``:
    the order in which records were written, whatever the machines' clocks say. A line left
    unterminated by a killed writer is ended first; a write that fails (disk full) is truncated
    back and raised as :class:`~gradcam.errors.OutputError`. Each write is fsynced.
    """

    def __init__(self, output_dir: Path, name: str = MANIFEST_NAME):
        self.output_dir = Path(output_dir).resolve()
        self.path = self.output_dir / name
        try:
            self._fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o666)
            self._lock_fd = os.open(self.output_dir / SEQUENCE_NAME, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as exc:
            raise OutputError(f"cannot write the manifest {self.path}: {exc.strerror or exc}") from None

    def write(self, record: dict) -> None:
        self.write_many([record])

    def write_many(self, records: list[dict]) -> None:
        """Append ``records`` (each given its ``seq``, in place) in one write and one fsync."""
        if not records:
            return
        if fcntl is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        try:
            first = self._read_sequence() + 1
            for offset, record in enumerate(records):
                record["seq"] = first + offset
            data = b"".join(_line(record) for record in records)
            self._append(data)
            self._write_sequence(first + len(records) - 1)
        finally:
            if fcntl is not None:
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def _append(self, data: bytes) -> None:
        size = os.fstat(self._fd).st_size
        if size and os.pread(self._fd, 1, size - 1) != b"\n":
            data = b"\n" + data  # a line cut short by a killed writer: end it, so this record stands alone
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view):]
            os.fsync(self._fd)
        except OSError as exc:
            try:
                os.ftruncate(self._fd, size)
            except OSError:
                pass
            raise OutputError(f"cannot write the manifest {self.path}: {exc.strerror or exc}") from None

    def _read_sequence(self) -> int:
        text = os.pread(self._lock_fd, 32, 0).decode("ascii", errors="replace").strip()
        return int(text) if text.isdigit() else 0

    def _write_sequence(self, value: int) -> None:
        data = f"{value:020d}\n".encode("ascii")
        try:
            os.pwrite(self._lock_fd, data, 0)
        except OSError as exc:
            raise OutputError(f"cannot write {self.output_dir / SEQUENCE_NAME}: {exc.strerror or exc}") from None

    def close(self) -> None:
        os.close(self._fd)
        os.close(self._lock_fd)
