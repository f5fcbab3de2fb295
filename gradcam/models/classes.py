"""Class names: the ImageNet names shipped with the package, labels files, finding a class by name."""
from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Sequence

from ..errors import UsageError
from ..names import closest


def imagenet_class_names() -> list[str]:
    """The 1000 ImageNet class names shipped with the package (index = class index)."""
    return [synonyms[0] for synonyms in imagenet_synonyms()]


#: the largest labels file read (a million classes of 60 characters)
MAX_LABELS_BYTES = 64 * 2**20


def read_labels(path: str | Path) -> list[str]:
    """Read a labels file: one class name per line, blank lines ignored at the end. Only a regular file
    of at most :data:`MAX_LABELS_BYTES` is read (a FIFO or a device would never end)."""
    if not Path(path).is_file():
        raise UsageError(f"cannot read labels file {path}: not a regular file")
    if Path(path).stat().st_size > MAX_LABELS_BYTES:
        raise UsageError(f"cannot read labels file {path}: more than {MAX_LABELS_BYTES // 2**20} MB")
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read labels file {path}: {exc}") from None
    while lines and not lines[-1].strip():
        lines.pop()
    return [line.strip() for line in lines]




def find_class(name: str, class_names: Sequence[str] | None, synonyms: Sequence[Sequence[str]] | None = None) -> int:
    """Class index for a class name (case-insensitive; any ImageNet synonym too).

    Raises:
        UsageError: no class names, or no such class (with the closest names).
    """
    if not class_names:
        raise UsageError("--class needs class names: give --labels FILE (one name per line)")
    wanted = name.strip().casefold().replace("_", " ")
    groups = synonyms if synonyms is not None else [[n] for n in class_names]
    for index, group in enumerate(groups):
        if any(wanted == s.casefold().replace("_", " ") for s in group):
            return index
    every = [s for group in groups for s in group]
    close = closest(name, every)
    hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    raise UsageError(f"no class named {name!r}{hint}")


@lru_cache(maxsize=1)
def imagenet_synonyms() -> list[list[str]]:
    """All WordNet synonyms of the 1000 ImageNet classes (index = class index)."""
    text = resources.files("gradcam").joinpath("data/imagenet_classes.json").read_text(encoding="utf-8")
    return json.loads(text)
