"""The atlas's results (:class:`Atlas`, built by :func:`~gradcam.metrics.atlas.build_atlas`) and their
report: a few lines for the terminal, the JSON, and the HTML page (mean maps embedded as PNG, the shortcut
candidates' overlays linked)."""
from __future__ import annotations

import html
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .report_html import class_label, figure, link, map_image, page, percent, signed, table, write_report

#: the atlas's files, written by :meth:`Atlas.write` (into the output folder by default)
ATLAS_HTML, ATLAS_JSON = "atlas.html", "atlas.json"

SCORE_TEXT = ("shortcut score = the larger of (a) the border excess, (s - u) / (1 - u) clipped to [0, 1], s the "
              "share of the map's attention (the map above its median) in the border band and u that of a flat map, "
              "and (b) the anti-correlation, -r clipped to [0, 1], r the Pearson correlation of the map with the "
              "mean map of the other images of its predicted class (leave-one-out) in the normalised frame: "
              "attention on the edges, or where the rest of its class does not look; (a) alone where the class has "
              "no other map")


def flat_share(border: float) -> float:
    """The border share of a flat map: 1 - (1 - 2 border)^2 (0.36 for 0.1)."""
    return 1 - (1 - 2 * border) ** 2


@dataclass
class AtlasImage:
    """One image's numbers: its rank-1 record's identity and class, ``border_share`` (of its attention, the
    map above its median), ``correlation`` (Pearson, with its class's leave-one-out mean map; None without
    one), ``shortcut_score`` in [0, 1], and from ground truth where the record carries it
    ``outside_object`` (1 - relevance_mass) and ``pointing_game`` (energy_pointing_game)."""

    input: str
    class_index: int | None
    class_name: str | None
    probability: float | None
    overlay: str | None
    heatmap: str
    border_share: float
    correlation: float | None = None
    shortcut_score: float = 0.0
    outside_object: float | None = None
    pointing_game: float | None = None

    def as_dict(self) -> dict:
        return dict(vars(self))


@dataclass
class AtlasClass:
    """A predicted class: ``maps`` (how many images), ``mean_map`` float64 (frame) in [0, 1] (the mean of
    their attention maps), the mean of its images' ``border_share``, and the means of ``outside_object``
    and ``pointing_game`` over the ``ground_truth`` images whose records carry them (None when none does)."""

    class_index: int | None
    class_name: str | None
    maps: int
    mean_map: np.ndarray
    border_share: float
    outside_object: float | None = None
    pointing_game: float | None = None
    ground_truth: int = 0

    @property
    def label(self) -> str:
        return class_label(self.class_index, self.class_name)

    def as_dict(self) -> dict:
        values = {key: value for key, value in vars(self).items() if key != "mean_map"}
        return {**values, "mean_map": np.round(self.mean_map, 6).tolist()}


@dataclass
class Atlas:
    """What :func:`~gradcam.metrics.atlas.build_atlas` found in ``output_dir``: the classes (by class index), every image scored
    (highest shortcut score first), and the records ``skipped`` as (input, reason)."""

    output_dir: Path
    border: float
    frame: tuple[int, int]
    top: int
    classes: list[AtlasClass]
    images: list[AtlasImage]
    skipped: list[tuple[str, str]] = field(default_factory=list)

    @property
    def candidates(self) -> list[AtlasImage]:
        """The ``top`` images of the folder by shortcut score."""
        return self.images[: self.top]

    def candidates_of(self, atlas_class: AtlasClass) -> list[AtlasImage]:
        """The ``top`` images of one predicted class by shortcut score."""
        return [image for image in self.images if image.class_index == atlas_class.class_index][: self.top]

    def as_dict(self) -> dict:
        """JSON-ready: the settings, the classes (with their mean maps), the images, the candidates (inputs)
        overall and per class (keyed by class index as text), the records skipped."""
        return {"output": str(self.output_dir), "border": self.border, "flat_border_share": flat_share(self.border),
                "frame": list(self.frame), "top": self.top, "score": SCORE_TEXT,
                "classes": [atlas_class.as_dict() for atlas_class in self.classes],
                "images": [image.as_dict() for image in self.images],
                "candidates": {"overall": [image.input for image in self.candidates],
                               "by_class": {str(c.class_index): [i.input for i in self.candidates_of(c)]
                                            for c in self.classes}},
                "skipped": [{"input": name, "reason": reason} for name, reason in self.skipped]}

    def lines(self) -> list[str]:
        """A short summary for the terminal (not printed here)."""
        return atlas_lines(self)

    def _repr_html_(self) -> str:
        """The report for a notebook: overlays linked from the current folder."""
        return atlas_html(self, None)

    def write(self, dest: Path | None = None) -> tuple[Path, Path]:
        """Write :data:`ATLAS_HTML` (mean maps embedded, the candidates' overlays linked) and
        :data:`ATLAS_JSON` (:meth:`as_dict`) into ``dest`` (default: the output folder), each atomically;
        returns (HTML path, JSON path)."""
        dest = Path(dest) if dest is not None else Path(self.output_dir)
        return write_report(dest, ATLAS_HTML, atlas_html(self, dest), ATLAS_JSON, self.as_dict())


def _label(image: AtlasImage) -> str:
    return class_label(image.class_index, image.class_name)


def _class_line(atlas_class: AtlasClass) -> str:
    truth = ""
    if atlas_class.ground_truth:
        truth = (f", outside the object {percent(atlas_class.outside_object)}, pointing game "
                 f"{percent(atlas_class.pointing_game)} ({atlas_class.ground_truth} image(s) with ground truth)")
    return (f"class {atlas_class.label}: {atlas_class.maps} map(s), border share {percent(atlas_class.border_share)}"
            + truth)


def _image_line(image: AtlasImage) -> str:
    return (f"{image.shortcut_score:.2f}  border {percent(image.border_share):>4}  r {signed(image.correlation):>6}  "
            f"{_label(image)}  {image.input}")


def _intro(atlas: Atlas) -> str:
    return (f"{len(atlas.images)} map(s) in {len(atlas.classes)} predicted class(es), {len(atlas.skipped)} record(s) "
            f"skipped; frame {atlas.frame[0]}x{atlas.frame[1]}, border band {atlas.border:.0%} of each side (a flat "
            f"map has {flat_share(atlas.border):.0%} of its mass there)")


def atlas_lines(atlas: Atlas) -> list[str]:
    """The atlas in a few lines: the counts, one line per class, the top candidates, what was skipped."""
    lines = [f"gradcam atlas of {atlas.output_dir}: {_intro(atlas)}."]
    lines += [f"  {_class_line(atlas_class)}" for atlas_class in atlas.classes]
    if atlas.candidates:
        lines.append("Shortcut candidates (score 0-1: attention on the border beyond a flat map's, or where the rest "
                     "of its class does not look; details in atlas.json):")
        lines += [f"  {_image_line(image)}" for image in atlas.candidates]
    if atlas.skipped:
        shown = "; ".join(f"{name}: {reason}" for name, reason in atlas.skipped[:3])
        lines.append(f"Skipped {len(atlas.skipped)} record(s): {shown}" + ("; ..." if len(atlas.skipped) > 3 else ""))
    return lines


def _candidate(atlas: Atlas, image: AtlasImage, base: Path | None) -> str:
    caption = (f"{Path(image.input).name} · {_label(image)} · score {image.shortcut_score:.2f} · border "
               f"{percent(image.border_share)} · r {signed(image.correlation)}")
    if image.outside_object is not None:
        caption += f" · outside the object {percent(image.outside_object)}"
    return figure(link(atlas.output_dir, image.overlay, base), caption)


def atlas_html(atlas: Atlas, base: Path | None) -> str:
    """The atlas as an HTML page; overlays are linked relative to the folder ``base`` (where the page is
    written; the current folder when None)."""
    means = "".join(map_image(c.mean_map, f"{c.label} · mean of {c.maps} map(s) · border {percent(c.border_share)}")
                    for c in atlas.classes)
    rows = [[c.label, c.maps, percent(c.border_share), percent(c.outside_object), percent(c.pointing_game),
             c.ground_truth] for c in atlas.classes]
    header = ["class", "maps", "border share", "outside the object", "pointing game", "with ground truth"]
    overall = "".join(_candidate(atlas, image, base) for image in atlas.candidates)
    per_class = "".join(f"<h3>{html.escape(c.label)}</h3><div class=\"grid\">"
                        + "".join(_candidate(atlas, image, base) for image in atlas.candidates_of(c)) + "</div>"
                        for c in atlas.classes)
    skipped = "".join(f"<li><code>{html.escape(name)}</code>: {html.escape(reason)}</li>" for name, reason in atlas.skipped)
    body = (f"<p>{html.escape(_intro(atlas))}. Each mean map is drawn scaled to its own maximum.</p>"
            f"<section><h2>Mean map per predicted class</h2><div class=\"grid\">{means}</div>"
            f"{table(header, rows)}</section>"
            f"<section><h2>Shortcut candidates</h2><p>{html.escape(SCORE_TEXT)}.</p>"
            f"<div class=\"grid\">{overall}</div></section>"
            f"<section><h2>Candidates per class</h2>{per_class}</section>"
            f"<section><h2>Skipped</h2><ul>{skipped or '<li>none</li>'}</ul></section>")
    return page(f"gradcam atlas: {atlas.output_dir}", body)
