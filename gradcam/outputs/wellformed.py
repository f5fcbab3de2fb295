"""Which manifest records are read back: those whose fields have the types the tool writes, from a manifest
that is a regular file. A hand-edited or damaged line (a list where a path belongs, a NUL in a name, a float
sequence number), or a FIFO or device where a manifest belongs, vouches for nothing."""
from __future__ import annotations

import math
from pathlib import Path

from ..inputs.regular import open_regular
from ..names import BASELINE_NAMES, METRIC_KEYS


#: record fields read back as file names or text: a string (without NUL) or null
_TEXT_FIELDS = ("input", "status", "overlay", "heatmap", "curves", "planes", "nifti", "class_name", "error", "run")


def well_formed(record: dict) -> bool:
    """True when the fields resume, the gallery and ``gradcam status`` read have their written types; a
    hand-edited or damaged record fails and is left out (it vouches for nothing)."""
    def text(value) -> bool:
        return value is None or (isinstance(value, str) and "\x00" not in value)

    def whole(value) -> bool:
        return value is None or (type(value) is int)

    touched, files = record.get("touched"), record.get("files")
    probability = record.get("probability")
    return (all(text(record.get(key)) for key in _TEXT_FIELDS)
            and whole(record.get("seq")) and whole(record.get("rank")) and whole(record.get("class_index"))
            and (probability is None or (type(probability) in (int, float) and probability == probability))
            and (touched is None or (isinstance(touched, list) and all(text(path) for path in touched)))
            and (files is None or (isinstance(files, dict) and all(text(path) for path in files))
                 or (record.get("event") == "start" and isinstance(files, list))))  # a start record's identities


def regular_file_text(path: Path) -> str | None:
    """The text of ``path`` when it is a regular file (checked on the open file, opened without blocking:
    a FIFO or a device put where a manifest belongs vouches for nothing instead of hanging), else None."""
    try:
        opened = open_regular(path)
        if opened is None:
            return None
        with opened[0] as handle:
            return handle.read().decode("utf-8", errors="replace")
    except OSError:
        return None


def record_scores(record: dict) -> dict[str, float]:
    """A record's scores (:data:`~gradcam.names.METRIC_KEYS`) that are finite numbers: the map's by key, its
    baselines' as 'BASELINE:key'; anything else a hand-edited line may hold is left out."""
    baselines = record.get("baselines") if isinstance(record.get("baselines"), dict) else {}
    found = {}
    for prefix, scores in (("", record), *((f"{name}:", baselines.get(name)) for name in BASELINE_NAMES)):
        if not isinstance(scores, dict):
            continue
        for key in METRIC_KEYS:
            value = scores.get(key)
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                continue
            try:
                number = float(value)
            except OverflowError:  # an int of hundreds of digits
                continue
            if math.isfinite(number):
                found[prefix + key] = number
    return found
