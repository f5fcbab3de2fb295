"""Resume: whether an input's outputs are up to date (skip it) or must be made again (and why), the
"skipped" records that vouch for kept outputs, a rerun's fast path without TensorFlow
(:func:`skip_if_up_to_date`), and the stale optional outputs an earlier run left beside a photo's."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from ..errors import OutputError
from ..inputs.discovery import InputImage, is_volume_name
from ..inputs.identity import DIGESTS, same_content
from ..outputs.manifest import (
    ManifestWriter,
    changed_settings,
    end_record,
    files_unchanged,
    manifest_name,
    new_record,
    read_trusted,
    request_files,
    start_record,
)
from ..outputs.paths import output_paths, relative_path, select_shard, sibling_path
from .options import RunOptions, new_run_id, outputs_of
from .records import write_gallery_safely
from .status import Summary


@dataclass
class _Resume:
    """What to do with one input: ``skip`` it (its outputs are up to date, ``trusted`` their records,
    one per rank; ``source`` the input's identity now), else redo it, for ``reasons`` (empty when
    none of its outputs existed)."""

    skip: bool
    trusted: list[dict]
    reasons: list[str]
    source: dict | None = None


def resume_decision(item: InputImage, options: RunOptions, root: Path, previous: dict[str, dict],
                    settings: dict | None) -> _Resume:
    """Skip an input when every output it needs exists, is as its newest record says (size and
    modification time), that record was made from an input of the same content (digest) and with
    ``settings`` (or, with ``settings`` None, with the same ``options.request``)."""
    ranked = [outputs_of(item, options, k + 1, is_volume_name(item.path)) for k in range(options.top_k)]
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


def skipped_records(item: InputImage, decision: _Resume, run_id: str, request: dict | None) -> list[dict]:
    """The "skipped" records of an input that ``decision`` skips, one per rank (1, 2, ...)."""
    return [_skipped_record(item, trusted, run_id, k + 1, request, decision.source)
            for k, trusted in enumerate(decision.trusted)]


def skip_if_up_to_date(items: Iterable[InputImage], options: RunOptions,
                       on_record: Callable[[dict], None] | None = None,
                       previous: dict[str, dict] | None = None) -> Summary | None:
    """A rerun's fast path, without TensorFlow or the model: when every input's outputs are up to date
    (they exist as recorded by records of the same ``options.request``), write their "skipped"
    records, the run's start and end records and the gallery, and return the Summary; otherwise
    None (nothing is written), and the run must load the model. ``previous``: :func:`trusted_outputs`
    of the output folder, when the caller has read it already (to hand on to :func:`~gradcam.runs.pipeline.run`).
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
        decision = resume_decision(item, options, root, previous, None)
        if not decision.skip:
            return None
        records += skipped_records(item, decision, run_id, options.request)
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


def stale_outputs(item: InputImage, options: RunOptions, rank: int, paths: dict[str, Path | None]) -> list[Path]:
    """A photo's optional outputs (.npy heatmap, deletion/insertion curves) that this run does not write:
    left by an earlier run with other settings, they would no longer belong to the overlay beside them."""
    npy_path = output_paths(item, options.output_dir, rank, options.top_k)[1]
    candidates = {"heatmap": npy_path, "curves": sibling_path(paths["overlay"], ".curves.png")}
    return [path for key, path in candidates.items() if paths[key] is None]
