"""Two runs' comparison (:class:`Comparison`, made by :func:`~gradcam.metrics.compare.compare_runs`) and its
report: a few lines for the terminal, the JSON, and the HTML page (the images where the runs disagree
most, their two overlays side by side)."""
from __future__ import annotations

import html
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from .report_html import class_label, figure, link, page, percent, signed, table, write_report

#: the comparison's files, written by :meth:`Comparison.write`
COMPARE_HTML, COMPARE_JSON = "compare.html", "compare.json"


@dataclass
class ComparedImage:
    """One image found in both folders (the same ``sha256`` of its bytes, whatever its names): each run's
    rank-1 record (input, class, overlay), the Spearman rank correlation of the two maps and the IoU of
    their top regions (None, with ``reason``, when a map could not be read; the correlation is also None
    when a map is constant, the IoU when both top regions are empty)."""

    sha256: str
    input_a: str
    input_b: str
    class_a: int | None
    class_b: int | None
    name_a: str | None
    name_b: str | None
    overlay_a: str | None
    overlay_b: str | None
    spearman: float | None = None
    iou: float | None = None
    reason: str | None = None

    @property
    def same_class(self) -> bool:
        """Both runs explained the same class (its index)."""
        return self.class_a is not None and self.class_a == self.class_b

    def as_dict(self) -> dict:
        return {**vars(self), "same_class": self.same_class}


def _mean(values) -> float | None:
    present = [value for value in values if value is not None]
    return sum(present) / len(present) if present else None


@dataclass
class Comparison:
    """The images of ``output_b`` compared with the same images (by content) in ``output_a``: ``pairs``
    (least correlated first, those without a correlation last), and the inputs that could not be
    paired: found in one folder only, without a recorded digest, or the same content as another input of
    their folder (compared once)."""

    output_a: Path
    output_b: Path
    top_share: float
    worst: int
    pairs: list[ComparedImage]
    only_a: list[str] = field(default_factory=list)
    only_b: list[str] = field(default_factory=list)
    no_digest_a: list[str] = field(default_factory=list)
    no_digest_b: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    methods: tuple[str | None, str | None] = (None, None)

    @property
    def mean_spearman(self) -> float | None:
        return _mean(pair.spearman for pair in self.pairs)

    @property
    def mean_iou(self) -> float | None:
        return _mean(pair.iou for pair in self.pairs)

    @property
    def agreement(self) -> float | None:
        """The share of paired images whose two runs explained the same class; None without pairs."""
        return sum(pair.same_class for pair in self.pairs) / len(self.pairs) if self.pairs else None

    @property
    def disagreeing(self) -> list[ComparedImage]:
        """The ``worst`` pairs with the lowest rank correlation."""
        return [pair for pair in self.pairs if pair.spearman is not None][: self.worst]

    def as_dict(self) -> dict:
        """JSON-ready: the folders, the summary, every pair, the unpaired inputs."""
        return {"output_a": str(self.output_a), "output_b": str(self.output_b), "methods": list(self.methods),
                "top_share": self.top_share, "matched": len(self.pairs),
                "compared": sum(pair.spearman is not None for pair in self.pairs),
                "mean_spearman": self.mean_spearman, "mean_iou": self.mean_iou, "agreement": self.agreement,
                "same_class": sum(pair.same_class for pair in self.pairs),
                "only_a": self.only_a, "only_b": self.only_b, "no_digest_a": self.no_digest_a,
                "no_digest_b": self.no_digest_b, "duplicates": self.duplicates,
                "pairs": [pair.as_dict() for pair in self.pairs]}

    def lines(self) -> list[str]:
        """A short summary for the terminal (not printed here)."""
        return comparison_lines(self)

    def _repr_html_(self) -> str:
        """The report for a notebook: overlays linked from the current folder."""
        return comparison_html(self, None)

    def write(self, dest: Path) -> tuple[Path, Path]:
        """Write :data:`COMPARE_HTML` and :data:`COMPARE_JSON` (:meth:`as_dict`) into the folder ``dest``
        (see :func:`~gradcam.metrics.compare.default_destination`), each atomically; returns (HTML, JSON)."""
        dest = Path(dest)
        return write_report(dest, COMPARE_HTML, comparison_html(self, dest), COMPARE_JSON, self.as_dict())


def most_common(records: list[dict], key: str) -> str | None:
    """The commonest text value of ``key`` in ``records`` (None when there is none)."""
    values = Counter(record.get(key) for record in records if isinstance(record.get(key), str))
    return values.most_common(1)[0][0] if values else None


def _unpaired(comparison: Comparison) -> str:
    counts = [(len(comparison.only_a), "only in A"), (len(comparison.only_b), "only in B"),
              (len(comparison.no_digest_a) + len(comparison.no_digest_b), "without a recorded digest"),
              (len(comparison.duplicates), "duplicates of another input")]
    return ", ".join(f"{count} {what}" for count, what in counts if count) or "none"


def _summary(comparison: Comparison) -> str:
    compared = sum(pair.spearman is not None for pair in comparison.pairs)
    same = sum(pair.same_class for pair in comparison.pairs)
    return (f"{len(comparison.pairs)} image(s) in both folders (matched by the SHA-256 of their bytes), {compared} "
            f"with both maps compared; unpaired: {_unpaired(comparison)}. Spearman rank correlation of the maps: "
            f"mean {signed(comparison.mean_spearman)}; IoU of their top {comparison.top_share:.0%}: mean "
            f"{'-' if comparison.mean_iou is None else f'{comparison.mean_iou:.3f}'}; same class "
            f"{percent(comparison.agreement)} ({same} of {len(comparison.pairs)})")


def _side(folder: Path, method: str | None) -> str:
    return f"{folder}" + (f" ({method})" if method else "")


def comparison_lines(comparison: Comparison) -> list[str]:
    """The comparison in a few lines: the folders, the summary, the images where the maps disagree most."""
    lines = [f"gradcam compare: A = {_side(comparison.output_a, comparison.methods[0])}, "
             f"B = {_side(comparison.output_b, comparison.methods[1])}.", _summary(comparison) + "."]
    if comparison.disagreeing:
        lines.append("Least alike (Spearman, top-region IoU, classes A / B, input in B):")
        lines += [f"  {signed(pair.spearman)}  {'-' if pair.iou is None else f'{pair.iou:.2f}'}  "
                  f"{class_label(pair.class_a, pair.name_a)} / {class_label(pair.class_b, pair.name_b)}  {pair.input_b}"
                  for pair in comparison.disagreeing[:5]]
    return lines


def comparison_html(comparison: Comparison, base: Path | None) -> str:
    """The comparison as an HTML page; overlays are linked relative to the folder ``base`` (where the page is
    written; the current folder when None)."""
    rows = []
    for pair in comparison.disagreeing:
        caption = (f"Spearman {signed(pair.spearman)} · IoU {'-' if pair.iou is None else f'{pair.iou:.2f}'}")
        rows.append(f"<section><h3>{html.escape(Path(pair.input_b).name)}: {html.escape(caption)}</h3>"
                    '<div class="pair">'
                    + figure(link(comparison.output_a, pair.overlay_a, base),
                             f"A: {Path(pair.input_a).name} · {class_label(pair.class_a, pair.name_a)}")
                    + figure(link(comparison.output_b, pair.overlay_b, base),
                             f"B: {Path(pair.input_b).name} · {class_label(pair.class_b, pair.name_b)}")
                    + "</div></section>")
    unreadable = [[pair.input_b, pair.reason] for pair in comparison.pairs if pair.reason]
    unpaired = ([[name, "only in A"] for name in comparison.only_a] + [[name, "only in B"] for name in comparison.only_b]
                + [[name, "A: no recorded digest"] for name in comparison.no_digest_a]
                + [[name, "B: no recorded digest"] for name in comparison.no_digest_b]
                + [[name, "the same content as another input"] for name in comparison.duplicates])
    body = (f"<p>A = {html.escape(_side(comparison.output_a, comparison.methods[0]))}<br>"
            f"B = {html.escape(_side(comparison.output_b, comparison.methods[1]))}</p>"
            f"<p>{html.escape(_summary(comparison))}.</p>"
            f"<h2>Where the maps disagree most</h2>{''.join(rows) or '<p>none</p>'}"
            f"<h2>Maps not compared</h2>{table(['input in B', 'reason'], unreadable) if unreadable else '<p>none</p>'}"
            f"<h2>Unpaired inputs</h2>{table(['input', 'why'], unpaired) if unpaired else '<p>none</p>'}")
    return page("gradcam: two runs compared", body)
