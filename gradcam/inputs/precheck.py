"""Cheap checks of the inputs before a model loads: when no input can be read at all, the run says so
in one line per input at once, instead of after a model load (a minute for a large model).

Only headers are read. An input that passes may still fail when it is decoded; it then fails alone in
the run, as always.
"""
from __future__ import annotations

import os
from typing import Sequence

from ..errors import ImageError
from .discovery import InputImage, is_volume_name
from .images import check_not_empty, image_size, volume_refused
from .volumes import volume_shape
from .medical import is_dicom_file


def probe_input(path: str | os.PathLike, volumes: bool | None) -> None:
    """Raise the ImageError a run would give an input that cannot be read: an empty or unreadable file,
    a volume given to a 2-D model (``volumes`` False), a header that is no image (or, with ``volumes``
    True, no volume). ``volumes`` None: the model's input rank is not known yet."""
    check_not_empty(path)
    try:
        with open(path, "rb") as handle:
            handle.read(1)
    except OSError as exc:
        raise ImageError(f"cannot read the file: {exc.strerror or exc}") from None
    volume = is_volume_name(path)
    if volume and volumes is False:
        raise volume_refused(path)
    if volumes and volume_shape(path) is None:
        raise ImageError("not a readable volume (no .npy or NIfTI header)")
    if not volumes and not volume and not is_dicom_file(path) and image_size(path) is None:
        raise ImageError("not a readable image (unknown or damaged format)")


def unreadable_inputs(items: Sequence[InputImage], volumes: bool | None) -> list[tuple[str, str]] | None:
    """Every input's (path, reason) when none of them can be read; None as soon as one can (so a
    folder costs one header read, not one per file)."""
    failures = []
    for item in items:
        try:
            probe_input(item.path, volumes)
        except ImageError as exc:
            failures.append((str(item.path), str(exc)))
            continue
        return None
    return failures
