"""``gradcam evaluate --methods``: the methods ranked for one model on one folder, metric by metric.

Never one number: deletion and ROAD are known to favour blurry maps, sparseness favours peaked ones, so
the table ranks the methods on each metric on its own and sums nothing up across families. Each row also
gives the random and Sobel-edge baselines, and which methods beat the edge map.
"""
from __future__ import annotations

import csv
import html
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import OutputError
from ..names import BASELINE_NAMES, METRICS, Metric
from ..outputs.manifest import latest_records
from ..outputs.render import write_atomic
from ..runs.status import Summary

RANKING_CSV, RANKING_FIGURE, RANKING_JSON = "ranking.csv", "ranking.png", "ranking.json"


@dataclass
class Ranking:
    """Folder means of every score for each method (``means[method][key]``), the baselines' means
    (``baselines[name][key]``), images scored per method, and the evaluation settings of the runs."""

    methods: list[str]
    means: dict[str, dict[str, float]]
    baselines: dict[str, dict[str, float]] = field(default_factory=dict)
    images: dict[str, int] = field(default_factory=dict)
    settings: dict | None = None

    def metrics(self) -> list[Metric]:
        """The metrics some method has a mean for, in :data:`~gradcam.names.METRICS` order."""
        return [metric for metric in METRICS if any(metric.key in self.means[m] for m in self.methods)]

    def ranks(self, metric: Metric) -> dict[str, int]:
        """1 for the best method on ``metric`` (ties share the better rank); methods without it are left out."""
        values = {m: self.means[m][metric.key] for m in self.methods if metric.key in self.means[m]}
        sign = -1.0 if metric.higher_is_better else 1.0
        return {m: 1 + sum(sign * other < sign * value for other in values.values()) for m, value in values.items()}

    def beats(self, metric: Metric, method: str, baseline: str) -> bool | None:
        """Whether ``method`` scores better than ``baseline`` on ``metric`` (None when either is missing)."""
        mine, floor = self.means[method].get(metric.key), self.baselines.get(baseline, {}).get(metric.key)
        if mine is None or floor is None:
            return None
        return mine > floor if metric.higher_is_better else mine < floor

    def rows(self) -> list[dict]:
        """One row per metric: family, metric, better ('higher'/'lower'), each method's mean and rank,
        each baseline's mean."""
        rows = []
        for metric in self.metrics():
            ranks = self.ranks(metric)
            row = {"family": metric.family, "metric": metric.key,
                   "better": "higher" if metric.higher_is_better else "lower"}
            for method in self.methods:
                row[method] = self.means[method].get(metric.key)
                row[f"{method} rank"] = ranks.get(method)
            for name in BASELINE_NAMES:
                row[f"{name} baseline"] = self.baselines.get(name, {}).get(metric.key)
            rows.append(row)
        return rows

    def as_dict(self) -> dict:
        return {"methods": self.methods, "images": self.images, "rows": self.rows(), "settings": self.settings}

    def csv_text(self) -> str:
        rows = self.rows()
        out = io.StringIO()
        columns = ["family", "metric", "better", *(c for m in self.methods for c in (m, f"{m} rank")),
                   *(f"{name} baseline" for name in BASELINE_NAMES)]
        writer = csv.DictWriter(out, columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        return out.getvalue()

    def lines(self) -> list[str]:
        """The table as text: per metric, the methods from best to worst, then the baselines."""
        lines = [f"gradcam: methods ranked on {max(self.images.values(), default=0)} image(s), metric by metric "
                 "(no overall winner: each family measures something else)"]
        for metric in self.metrics():
            ranks = self.ranks(metric)
            order = sorted(ranks, key=lambda m: (ranks[m], self.methods.index(m)))
            shown = ", ".join(f"{ranks[m]}. {m} {self.means[m][metric.key]:.3f}" for m in order)
            floors = ", ".join(f"{name} {self.baselines[name][metric.key]:.3f}" for name in BASELINE_NAMES
                               if metric.key in self.baselines.get(name, {}))
            better = "higher" if metric.higher_is_better else "lower"
            lines.append(f"  {metric.family:<12} {metric.key} ({better} is better): {shown}"
                         + (f" | baselines: {floors}" if floors else ""))
        return lines

    def _repr_html_(self) -> str:
        rows = self.rows()
        head = "".join(f"<th>{html.escape(str(c))}</th>" for c in rows[0]) if rows else ""
        body = "".join("<tr>" + "".join(f"<td>{html.escape(_cell(v))}</td>" for v in row.values()) + "</tr>"
                       for row in rows)
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"

    def write(self, destination: Path) -> tuple[Path, Path, Path]:
        """``ranking.csv``, ``ranking.png`` (one panel per metric) and ``ranking.json`` (with the settings),
        each written atomically; their paths."""
        destination = Path(destination)
        paths = destination / RANKING_CSV, destination / RANKING_FIGURE, destination / RANKING_JSON
        contents = (self.csv_text().encode("utf-8"), _figure_png(self),
                    json.dumps(self.as_dict(), indent=2).encode("utf-8"))
        for path, content in zip(paths, contents):
            try:
                write_atomic(path, content)
            except OSError as exc:  # a read-only folder, a folder under the name, a full disk
                raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None
        return paths


def _cell(value) -> str:
    return "" if value is None else f"{value:.4g}" if isinstance(value, float) else str(value)


def rank_methods(folders: dict[str, Path], evaluation: dict | None = None) -> Ranking:
    """The :class:`Ranking` of the methods whose ``gradcam evaluate`` runs lie in ``folders`` (method ->
    output folder); the baselines from the folders that scored them.

    Every method is ranked on the same images: the inputs explained (rank 1, "ok" or kept) in every
    folder, so a folder reused from an earlier run over other photos adds nothing. With ``evaluation``
    (the run's ``settings.evaluation``), only records scored under it count (whether they carry the
    baselines aside): an input left from a run with other settings is not averaged in."""
    kept: dict[str, dict[str, dict]] = {}
    for method, folder in folders.items():
        kept[method] = {}
        for record in latest_records(Path(folder)):
            if record.get("status") in ("ok", "skipped") and record.get("rank") in (None, 1) \
                    and isinstance(record.get("input"), str) and _scored_under(record, evaluation):
                kept[method][record["input"]] = record
    common = set.intersection(*(set(records) for records in kept.values())) if kept else set()
    means, baselines, images, settings = {}, {}, {}, None
    for method, records in kept.items():
        summary = Summary(total=0)
        for name in sorted(common):
            summary.count(dict(records[name], status="ok"))
            settings = settings or (records[name].get("settings") or {}).get("evaluation")
        all_means = summary.means()
        means[method] = {key: value for key, value in all_means.items() if ":" not in key}
        for key, value in all_means.items():
            if ":" in key:
                name, _, metric = key.partition(":")
                baselines.setdefault(name, {}).setdefault(metric, value)
        images[method] = summary.explained
    return Ranking(list(folders), means, baselines, images, settings)


def _scored_under(record: dict, evaluation: dict | None) -> bool:
    """Whether a record's evaluation settings are ``evaluation`` (None: any), the baselines flag aside."""
    if evaluation is None:
        return True
    recorded = (record.get("settings") or {}).get("evaluation")
    if not isinstance(recorded, dict):
        return False
    return {k: v for k, v in recorded.items() if k != "baselines"} == \
        {k: v for k, v in evaluation.items() if k != "baselines"}


def _figure_png(ranking: Ranking) -> bytes:
    """One bar panel per metric: a bar per method, dashed lines at the random and Sobel baselines."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    metrics = ranking.metrics() or [None]
    columns = min(4, len(metrics))
    rows = -(-len(metrics) // columns)
    figure = Figure(figsize=(3.2 * columns, 2.6 * rows), layout="constrained")
    for i, metric in enumerate(metrics):
        axes = figure.add_subplot(rows, columns, i + 1)
        if metric is None:
            axes.set_axis_off()
            continue
        values = [ranking.means[m].get(metric.key, float("nan")) for m in ranking.methods]
        axes.bar(range(len(values)), values, color="#4c72b0")
        for name, style in zip(BASELINE_NAMES, ("--", ":")):
            floor = ranking.baselines.get(name, {}).get(metric.key)
            if floor is not None:
                axes.axhline(floor, color="#c44e52", linestyle=style, label=f"{name} baseline")
        axes.set_xticks(range(len(values)), ranking.methods, rotation=45, ha="right", fontsize=8)
        better = "higher" if metric.higher_is_better else "lower"
        axes.set_title(f"{metric.key} ({better} better)", fontsize=9)
        if i == 0 and ranking.baselines:
            axes.legend(fontsize=7)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()
