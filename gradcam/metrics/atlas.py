"""The atlas of an output folder: per predicted class, where its maps look on average (the mean map in the
photo's normalised frame) and how much of their attention lies along the photo's border; per image, how
unlike its class it looks; the images most likely to show shortcut learning, ranked.

Built from the folder's manifests (all shards) and the maps saved with ``--save-npy``; see
:func:`build_atlas` for every number and :mod:`.atlas_report` for the report.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import UsageError
from .atlas_report import ATLAS_HTML, ATLAS_JSON, SCORE_TEXT, Atlas, AtlasClass, AtlasImage, flat_share
from .saved_maps import (
    MapSkipped,
    attention,
    border_share,
    explained_records,
    finite,
    pearson,
    require_saved_maps,
    resample,
    saved_map,
)

__all__ = ["ATLAS_HTML", "ATLAS_JSON", "SCORE_TEXT", "Atlas", "AtlasClass", "AtlasImage", "build_atlas",
           "flat_share", "shortcut_score"]


def shortcut_score(share: float, correlation: float | None, border: float) -> float:
    """In [0, 1]: the larger of the border excess of ``share`` and the anti-correlation -``correlation``,
    each clipped to [0, 1] (see :data:`SCORE_TEXT`); the border excess alone when ``correlation`` is None."""
    flat = flat_share(border)
    excess = min(max((share - flat) / (1 - flat), 0.0), 1.0)
    return excess if correlation is None else max(excess, min(max(-correlation, 0.0), 1.0))


def _check(border: float, frame, top: int) -> tuple[int, int]:
    if type(border) not in (int, float) or not 0 < border < 0.5:
        raise UsageError(f"the border band must be between 0 and 0.5 of a side, not {border!r}")
    frame = tuple(frame) if isinstance(frame, (tuple, list)) else ()
    if len(frame) != 2 or any(type(side) is not int or not 2 <= side <= 1024 for side in frame):
        raise UsageError(f"the frame must be two whole numbers of pixels from 2 to 1024, not {frame!r}")
    if type(top) is not int or top < 1:
        raise UsageError(f"the number of candidates must be a whole number from 1, not {top!r}")
    return frame


def _ground_truth(record: dict, key: str) -> float | None:
    value = finite(record.get(key))
    return value if value is not None and 0 <= value <= 1 else None


def build_atlas(output_dir: Path, border: float = 0.1, frame: tuple[int, int] = (64, 64), top: int = 10) -> Atlas:
    """The atlas of an output folder made with ``--save-npy``.

    Each rank-1 record whose status is "ok" or "skipped" (a kept result) is read with its ``.npy``
    (:func:`~gradcam.metrics.saved_maps.saved_map`; a missing, unreadable or unusable one is listed in
    ``skipped`` with its reason) and grouped by its predicted class (``class_index``). Every number is taken
    on the map's attention, the map above its median (:func:`~gradcam.metrics.saved_maps.attention`), so that
    a faint floor over the whole photo does not outweigh the peaks. Per image: the share of the attention
    within ``border`` x side of any edge, on the map as saved (pixels counted by the share of their area in
    the band); the attention resampled to ``frame`` (rows, columns) -- area-averaged when shrinking, linear
    when enlarging, whatever the photo's aspect ratio -- and its Pearson correlation with the mean of the
    other framed maps of its class; the shortcut score (:data:`SCORE_TEXT`). Per class: the mean framed
    map, the mean border share, and from the records' ``relevance_mass`` and ``energy_pointing_game``
    (optional, numbers in [0, 1]) the mean share outside the object (1 - relevance_mass) and the mean
    pointing score. ``top``: how many candidates are listed overall and per class. Each map is read
    twice, for its class's sum and for its correlation with the rest: only the sums are held.

    Raises:
        UsageError: bad parameters, no manifest, or no record with a saved map.
    """
    frame = _check(border, frame, top)
    output_dir = Path(output_dir)
    records = explained_records(output_dir)
    require_saved_maps(output_dir, records)
    skipped: list[tuple[str, str]] = []
    groups: dict[int | None, list[tuple[AtlasImage, dict]]] = {}
    totals: dict[int | None, np.ndarray] = {}  # per class, the sum of its framed maps (float64)
    for record in records:
        try:
            values = attention(saved_map(output_dir, record))
            share = border_share(values, border)
            if share is None:  # half the map or more at its maximum: nothing above the median
                raise MapSkipped("the map has no attention above its median (half of it or more at its maximum)")
        except MapSkipped as exc:
            skipped.append((record.get("input") or "?", str(exc)))
            continue
        relevance = _ground_truth(record, "relevance_mass")
        image = AtlasImage(record.get("input") or "?", record.get("class_index"), record.get("class_name"),
                           finite(record.get("probability")), record.get("overlay"), record["heatmap"],
                           share, outside_object=None if relevance is None else 1 - relevance,
                           pointing_game=_ground_truth(record, "energy_pointing_game"))
        framed = resample(values, frame).astype(np.float32).astype(np.float64)
        total = totals.get(image.class_index)
        totals[image.class_index] = framed if total is None else np.add(total, framed, out=total)
        groups.setdefault(image.class_index, []).append((image, record))
    classes, images = [], []
    for class_index in sorted(groups, key=lambda index: (index is None, index or 0)):
        atlas_class, members = _score_class(groups.pop(class_index), totals.pop(class_index), border,
                                            lambda record: _framed(output_dir, record, frame))
        classes.append(atlas_class)
        images.extend(members)
    images.sort(key=lambda image: (-image.shortcut_score, image.input))
    return Atlas(output_dir, float(border), frame, top, classes, images, skipped)


def _mean(values: list[float | None]) -> float | None:
    present = [value for value in values if value is not None]
    return sum(present) / len(present) if present else None


def _framed(output_dir: Path, record: dict, frame: tuple[int, int]) -> np.ndarray | None:
    """A record's attention in the frame as the first pass made it (float32 values as float64); None when
    its map can no longer be read."""
    try:
        return resample(attention(saved_map(output_dir, record)), frame).astype(np.float32).astype(np.float64)
    except MapSkipped:
        return None


def _score_class(members: list[tuple[AtlasImage, dict]], total: np.ndarray, border: float,
                 framed_of) -> tuple[AtlasClass, list[AtlasImage]]:
    """A class's mean map and numbers, and its images with their correlations and scores filled in.
    ``total``: the sum of the members' framed maps; ``framed_of(record)`` reads one again (the maps are
    not all held at once: a manifest of a million lines naming one small map would need 16 GB)."""
    images = [image for image, _ in members]
    count = len(members)
    for image, record in members:
        framed = framed_of(record) if count > 1 else None
        others = (total - framed) / (count - 1) if framed is not None else None
        image.correlation = pearson(framed, others) if others is not None else None
        image.shortcut_score = shortcut_score(image.border_share, image.correlation, border)
    outside = [image.outside_object for image in images]
    pointing = [image.pointing_game for image in images]
    name = next((image.class_name for image in images if image.class_name is not None), None)
    truth = sum(1 for a, b in zip(outside, pointing) if a is not None or b is not None)
    return AtlasClass(images[0].class_index, name, count, total / count, _mean([i.border_share for i in images]),
                      _mean(outside), _mean(pointing), truth), images
atlas = build_atlas  # gradcam.atlas(OUTPUT): the public name
