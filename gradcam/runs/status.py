"""Counts of inputs: a run's (:class:`Summary`), and an output folder's across its manifests (per
shard, how many inputs are explained, skipped and failed, and which shards of a --shard I/N split
have not written anything yet)."""
from __future__ import annotations

import collections
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..names import METRIC_KEYS
from ..outputs.wellformed import record_scores
from ..outputs.manifest import input_records, latest_records, manifest_paths, read_records, shard_of_manifest


@dataclass
class Summary:
    """Counts of one run; ``interrupted`` when it was stopped early.

    ``redone`` counts inputs whose outputs existed but were made again, because
    they were made with other settings (or with none recorded); ``redo_reasons``
    counts why, e.g. ``{"method": 3}``.
    """

    total: int
    explained: int = 0
    skipped: int = 0
    failed: int = 0
    redone: int = 0
    interrupted: bool = False
    stopped: str | None = None  # why the run stopped early (a manifest that cannot be written)
    gallery_error: str | None = None
    failures: list[tuple[str, str]] = field(default_factory=list)
    metrics: dict[str, list[float]] = field(default_factory=dict)
    redo_reasons: collections.Counter = field(default_factory=collections.Counter)

    def count(self, record: dict) -> None:
        """Count one manifest record: inputs explained and skipped at their first rank only; every error."""
        status, first = record["status"], record.get("rank") in (None, 1)
        if status == "ok":
            self.explained += first
            self.metrics_of(record)
        elif status == "skipped":
            self.skipped += first
        else:
            self.failed += 1
            self.failures.append((record["input"], record["error"]))

    def metrics_of(self, record: dict) -> None:
        """Collect a record's scores (:func:`~gradcam.outputs.wellformed.record_scores`)."""
        for key, value in record_scores(record).items():
            self.metrics.setdefault(key, []).append(value)

    def means(self) -> dict[str, float]:
        """Mean of each score over the explained records (baselines' as 'BASELINE:key'), in
        :data:`~gradcam.names.METRIC_KEYS` order."""
        order = {key: i for i, key in enumerate(METRIC_KEYS)}
        return {key: float(np.mean(self.metrics[key])) for key in
                sorted(self.metrics, key=lambda k: (k.rpartition(":")[0], order[k.rpartition(":")[2]]))}

    @property
    def done(self) -> int:
        return self.explained + self.skipped + self.failed


@dataclass
class ManifestCounts:
    """Inputs by their newest state in one manifest: ``ok`` (explained), ``skipped``, ``failed``;
    and of its newest run, the inputs it ``planned`` (None for manifests written before runs were
    recorded), how many of them it ``recorded`` and whether it ``finished`` (wrote its end record)."""

    name: str
    shard: tuple[int, int] | None
    ok: int = 0
    skipped: int = 0
    failed: int = 0
    planned: int | None = None
    recorded: int = 0
    finished: bool = True

    @property
    def label(self) -> str:
        return "unsharded" if self.shard is None else f"shard {self.shard[0]}/{self.shard[1]}"


@dataclass
class FolderStatus:
    """Every manifest of an output folder; ``missing`` lists the shards (I, N) with no manifest;
    ``inputs``: each input's newest state over all manifests (an input counted once)."""

    manifests: list[ManifestCounts] = field(default_factory=list)
    missing: list[tuple[int, int]] = field(default_factory=list)
    inputs: dict[str, str] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        """True when there is a manifest, no input failed, no shard is missing and every manifest's
        newest run recorded every input it planned."""
        return (bool(self.manifests) and not self.missing and not any(m.failed for m in self.manifests)
                and all(m.finished for m in self.manifests))

    def totals(self) -> tuple[int, int, int]:
        """(explained, skipped, failed) over the folder, each input counted once (its newest state)."""
        states = list(self.inputs.values())
        return states.count("ok"), states.count("skipped"), states.count("failed")

    def lines(self) -> list[str]:
        lines = []
        for m in self.manifests:
            unfinished = ""
            if not m.finished:
                unfinished = (f"   INCOMPLETE: its last run recorded {m.recorded} of {m.planned} planned input(s) "
                              "and did not finish")
            lines.append(f"{m.label:<14} {m.ok:7d} explained {m.skipped:7d} skipped {m.failed:7d} failed   "
                         f"({m.name}){unfinished}")
        ok, skipped, failed = self.totals()
        lines.append(f"{'all':<14} {ok:7d} explained {skipped:7d} skipped {failed:7d} failed"
                     f"   ({len(self.inputs)} input(s))")
        lines += [f"missing: shard {index}/{count} has written no manifest" for index, count in self.missing]
        return lines


def _states(records: list[dict]) -> dict[str, str]:
    """Per input (first rank, or any rank that failed): its newest state, from latest records."""
    state: dict[str, str] = {}
    for record in records:
        key = str(record.get("input"))
        status = record.get("status")
        if status == "error":
            state[key] = "failed"
        elif key not in state and (record.get("rank") or 1) == 1:
            state[key] = "ok" if status == "ok" else "skipped"
    return state


def _counts(path: Path) -> ManifestCounts:
    """One manifest's counts and whether its newest run finished."""
    counts = ManifestCounts(path.name, shard_of_manifest(path))
    for value in _states(latest_records(path)).values():
        setattr(counts, value, getattr(counts, value) + 1)
    records = read_records(path)
    starts = [i for i, record in enumerate(records) if record.get("event") == "start"]
    if starts:
        start = records[starts[-1]]
        run = start.get("run")
        later = records[starts[-1] + 1:]
        counts.planned = int(start.get("planned") or 0)
        counts.recorded = len({r.get("input") for r in input_records(later) if r.get("run") == run})
        counts.finished = any(r.get("event") == "end" and r.get("run") == run for r in later)
    return counts


def folder_status(output_dir: Path) -> FolderStatus:
    """Counts for every manifest in ``output_dir``, the shards that are missing, and each input's state."""
    status = FolderStatus([_counts(path) for path in manifest_paths(output_dir)],
                          inputs=_states(latest_records(output_dir)))
    present = {m.shard for m in status.manifests if m.shard is not None}
    for count in sorted({shard[1] for shard in present}):
        status.missing += [(index, count) for index in range(count) if (index, count) not in present]
    return status


def metric_means(output_dir: Path) -> dict[str, float]:
    """Mean of each score (and its baselines', as 'BASELINE:key') over the newest explained records of
    every manifest."""
    summary = Summary(total=0)
    for record in latest_records(output_dir):
        if record.get("status") == "ok":
            summary.count(record)
    return summary.means()
