"""Two runs over the same images compared (two methods, layers, models or versions): each image is found in
both output folders by its content, and its two maps are compared by rank correlation and by the overlap
of their top regions, its two explained classes side by side.

Built from each folder's manifests (all shards) and the maps saved with ``--save-npy``; see
:func:`compare_runs`, and :mod:`.compare_report` for the report.
"""
from __future__ import annotations

import re
from pathlib import Path

from ..errors import UsageError
from .compare_report import COMPARE_HTML, COMPARE_JSON, ComparedImage, Comparison, most_common
from .saved_maps import MapSkipped, explained_records, iou, require_saved_maps, resample, saved_map, spearman, top_region

__all__ = ["COMPARE_HTML", "COMPARE_JSON", "COMPARE_SIDE", "ComparedImage", "Comparison", "compare_runs",
           "default_destination", "digest"]

#: the longest side at which two maps are compared: both are area-averaged to a common shape, the smaller
#: of their two sizes along each axis, shrunk (aspect kept) to at most this many pixels along the longer
COMPARE_SIDE = 256

_DIGEST = re.compile(r"^[0-9a-f]{64}$")


def default_destination(output_a: Path, output_b: Path) -> Path:
    """Where the command line writes a comparison unless told: ``B/compare-with-NAME``, NAME being A's
    folder name (a later comparison of B with another folder of that name replaces it)."""
    name = Path(output_a).resolve().name or "output"
    return Path(output_b) / f"compare-with-{name}"


def digest(record: dict) -> str | None:
    """The SHA-256 hex digest of the input's bytes that a record's ``source`` carries; None when none."""
    source = record.get("source")
    value = source.get("sha256") if isinstance(source, dict) else None
    return value.lower() if isinstance(value, str) and _DIGEST.match(value.lower()) else None


def common_shape(first: tuple[int, int], second: tuple[int, int]) -> tuple[int, int]:
    """The shape two maps are compared at (see :data:`COMPARE_SIDE`)."""
    shape = (min(first[0], second[0]), min(first[1], second[1]))
    scale = min(1.0, COMPARE_SIDE / max(shape))
    return max(1, round(shape[0] * scale)), max(1, round(shape[1] * scale))


def _by_digest(records: list[dict]) -> tuple[dict[str, dict], list[str], list[str]]:
    """(digest -> the first record (by input) with it, inputs without a digest, inputs whose content an
    earlier input of the folder has)."""
    found: dict[str, dict] = {}
    missing, duplicates = [], []
    for record in records:
        key = digest(record)
        if key is None:
            missing.append(record.get("input") or "?")
        elif key in found:
            duplicates.append(record.get("input") or "?")
        else:
            found[key] = record
    return found, missing, duplicates


def _compare_maps(pair: ComparedImage, output_a: Path, output_b: Path, record_a: dict, record_b: dict,
                  top_share: float) -> None:
    """Fill in the pair's Spearman correlation and top-region IoU, or the reason they are missing."""
    try:
        side = "A"
        first = saved_map(output_a, record_a)
        side = "B"
        second = saved_map(output_b, record_b)
    except MapSkipped as exc:
        pair.reason = f"{side}: {exc}"
        return
    shape = common_shape(first.shape, second.shape)
    first, second = resample(first, shape), resample(second, shape)
    pair.spearman = spearman(first, second)
    pair.iou = iou(top_region(first, top_share), top_region(second, top_share))


def compare_runs(output_a: Path, output_b: Path, top_share: float = 0.2, worst: int = 12) -> Comparison:
    """Compare the rank-1 maps of two output folders made with ``--save-npy`` over the same images.

    Records ("ok" or "skipped", see :func:`~gradcam.metrics.saved_maps.explained_records`) are paired by
    the SHA-256 of their input's bytes (``source.sha256``), never by name: a renamed copy is paired, and
    two different files of one name are not; records without a digest are listed, never paired, and an
    input whose content another input of its folder has (by input name, the first) is listed as a
    duplicate. Each pair's maps are read (a missing or unusable ``.npy`` is the pair's ``reason``),
    area-averaged to a common shape (:data:`COMPARE_SIDE`) and compared: the Spearman rank correlation of
    their pixels (ties share their mean rank), and the IoU of their top ``top_share`` (every pixel at least
    as high as the ceil(share x pixels)-th highest, zeros never); and their two ``class_index``.
    ``worst``: how many of the least correlated pairs the report shows.

    Raises:
        UsageError: bad parameters; a folder without a manifest or without saved maps.
    """
    if type(top_share) not in (int, float) or not 0 < top_share <= 1:
        raise UsageError(f"the top region must be a share between 0 and 1, not {top_share!r}")
    if type(worst) is not int or worst < 1:
        raise UsageError(f"the number of images shown must be a whole number from 1, not {worst!r}")
    output_a, output_b = Path(output_a), Path(output_b)
    records_a, records_b = explained_records(output_a), explained_records(output_b)
    require_saved_maps(output_a, records_a)
    require_saved_maps(output_b, records_b)
    found_a, missing_a, duplicates_a = _by_digest(records_a)
    found_b, missing_b, duplicates_b = _by_digest(records_b)
    pairs = []
    for key, record_a in sorted(found_a.items(), key=lambda item: item[1].get("input") or ""):
        record_b = found_b.get(key)
        if record_b is None:
            continue
        pair = ComparedImage(key, record_a.get("input") or "?", record_b.get("input") or "?",
                             record_a.get("class_index"), record_b.get("class_index"), record_a.get("class_name"),
                             record_b.get("class_name"), record_a.get("overlay"), record_b.get("overlay"))
        _compare_maps(pair, output_a, output_b, record_a, record_b, float(top_share))
        pairs.append(pair)
    pairs.sort(key=lambda pair: (pair.spearman is None, pair.spearman or 0.0, pair.input_b))
    only_a = sorted(record.get("input") or "?" for key, record in found_a.items() if key not in found_b)
    only_b = sorted(record.get("input") or "?" for key, record in found_b.items() if key not in found_a)
    return Comparison(output_a, output_b, float(top_share), worst, pairs, only_a, only_b, missing_a, missing_b,
                      duplicates_a + duplicates_b, (most_common(records_a, "method"), most_common(records_b, "method")))
compare = compare_runs  # gradcam.compare(A, B): the public name
