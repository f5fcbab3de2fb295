"""The command line's lines of text, built from records, summaries and settings: nothing here prints
(cli.py prints them) and nothing here imports a stage."""
from __future__ import annotations

from pathlib import Path

from .names import GALLERY_NAME, MANIFEST_NAME


def shard_prefix(shard: tuple[int, int] | None, planned: int) -> str:
    """'shard I/N: P of ' before the count of inputs, for a sharded run; '' otherwise."""
    return f"shard {shard[0]}/{shard[1]}: {planned} of " if shard else ""


def estimate_line(explainer, count: int) -> str | None:
    """Before a long run (Score-CAM, Ablation-CAM, aug-smooth), what it will take for ``count`` inputs;
    None for a method of one pass per image."""
    passes = explainer.passes_per_image()
    if passes <= 1:
        return None
    seconds = explainer.seconds_per_image()
    smooth = "".join(f" --{name}" for name in ("eigen-smooth", "aug-smooth")
                     if getattr(explainer, name.replace("-", "_")))
    return (f"gradcam: {explainer.method}{smooth} needs about {passes} forward passes per image: about "
            f"{duration(seconds)} per image, {duration(seconds * count)} for {count} image(s) on this machine")


def duration(seconds: float) -> str:
    """'12 s', '0.4 s', '35 min' or '2.5 h'."""
    if seconds < 90:
        return f"{seconds:.0f} s" if seconds >= 1 else f"{seconds:.1f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def record_line(record: dict, top_k: int = 1) -> str:
    """A manifest record as the line shown for an input named on the command line."""
    rank = f"top {record['rank']}: " if top_k > 1 and record["rank"] is not None else ""
    if record["status"] == "error":
        return f"{record['input']}: {rank}error: {record['error']}"
    if record["status"] == "skipped":
        return (f"{record['input']}: {rank}skipped, {record['overlay']} exists with the same settings "
                "(use --overwrite to redo)")
    name = record["class_name"] if record["class_name"] is not None else "class"
    zero = " [heatmap is constant: drawn as zero everywhere]" if record["zero_heatmap"] else ""
    return (f"{record['input']}: {rank}{name} ({record['class_index']}), p={record['probability']:.3f} "
            f"-> {record['overlay']}{zero}")


def summary_line(summary, output_dir: Path, sharded: bool) -> str:
    """The run's closing line: counts, why outputs were redone, where it stopped, and where the outputs are."""
    stopped = f" (interrupted after {summary.done} of {summary.total})" if summary.interrupted else \
        f" (stopped after {summary.done} of {summary.total})" if summary.stopped else ""
    redone = ""
    if summary.redone:
        why = ", ".join(f"{reason} ({count})" if count != summary.redone else reason
                        for reason, count in summary.redo_reasons.most_common())
        redone = f" ({summary.redone} redone: outputs existed, made with other settings or incomplete: {why})"
    manifest = "manifest.shard-*.jsonl" if sharded else MANIFEST_NAME
    return (f"gradcam: {summary.explained} explained{redone}, {summary.skipped} skipped, {summary.failed} failed"
            f"{stopped}; outputs in {output_dir}/ ({manifest}, {GALLERY_NAME})")


def means_line(label: str, means: dict[str, float]) -> str | None:
    """'gradcam: LABEL: deletion auc 0.123, average drop 4.500%, ...', then one line per baseline
    ('BASELINE:key' means: '  baseline random: ...'); None without means."""
    if not means:
        return None
    groups: dict[str, list[str]] = {}
    for key, value in means.items():
        who, _, name = key.rpartition(":")
        groups.setdefault(who, []).append(f"{name.replace('_', ' ')} {value:.3f}" + ("%" if name == "average_drop" else ""))
    lines = [f"gradcam: {label}: " + ", ".join(groups.pop("", []) or ["none"])]
    lines += [f"gradcam:   baseline {who}: " + ", ".join(parts) for who, parts in groups.items()]
    return "\n".join(lines)


def shards_line(status, output_dir: Path) -> str:
    """The counts of a sharded output folder as a whole, and the shards that have written nothing yet."""
    ok, skipped, failed = status.totals()
    missing = ", ".join(f"{i}/{n}" for i, n in status.missing)
    return (f"gradcam: all shards in {output_dir}: {ok} explained, {skipped} skipped, {failed} failed"
            + (f"; no manifest yet from shard(s) {missing}" if missing else ""))
