"""Finding the inputs: files and folders expanded into :class:`InputImage` (a path, and where its
outputs go), images or volumes by extension, output names that never clash."""
from __future__ import annotations

import os
import unicodedata
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Iterable

from ..errors import UsageError
from ..names import IMAGE_EXTENSIONS, VOLUME_EXTENSIONS


@dataclass(frozen=True)
class InputImage:
    """One image to explain.

    ``path`` is where it is read from; ``relative`` is the POSIX-style path of
    its outputs under the output folder, without the output suffix.
    """

    path: Path
    relative: str


def is_image_name(name: str) -> bool:
    """True when ``name`` has one of :data:`IMAGE_EXTENSIONS` (any case)."""
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def is_volume_name(name: str | os.PathLike) -> bool:
    """True when ``name`` has one of :data:`VOLUME_EXTENSIONS` (any case)."""
    return os.fspath(name).lower().endswith(VOLUME_EXTENSIONS)


def _walk_folder(root: Path, recursive: bool, volumes: bool = False) -> Iterable[tuple[Path, PurePosixPath]]:
    """Yield (file path, path relative to root) for the image files (with ``volumes``: the volume
    files) under ``root``.

    Hidden files and folders (a leading dot) are skipped; folders reached
    through symbolic links are entered once at most, so link loops end.
    """
    seen_dirs: set[tuple[int, int]] = set()
    stack: list[tuple[Path, PurePosixPath]] = [(root, PurePosixPath())]
    while stack:
        folder, rel = stack.pop()
        try:
            st = folder.stat()
        except OSError:
            continue
        key = (st.st_dev, st.st_ino)
        if key in seen_dirs:
            continue
        seen_dirs.add(key)
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError:
            continue
        subfolders = []
        for entry in entries:
            if entry.name.startswith("."):
                continue
            try:
                is_dir = entry.is_dir()  # follows links; broken links are False
            except OSError:
                is_dir = False
            if is_dir:
                if recursive:
                    subfolders.append((Path(entry.path), rel / entry.name))
            elif (is_volume_name if volumes else is_image_name)(entry.name):
                yield Path(entry.path), rel / entry.name
        stack.extend(reversed(subfolders))


def discover_inputs(paths: Iterable[str | os.PathLike], recursive: bool = False,
                    volumes: bool = False) -> list[InputImage]:
    """Expand files and folders into the list of images (``volumes``: volumes) to explain.

    A file named directly is always read (whatever its extension) and its
    outputs go to the top of the output folder; a folder contributes its image
    files (:data:`IMAGE_EXTENSIONS`; with ``volumes``, its :data:`VOLUME_EXTENSIONS` files instead),
    keeping their sub-folder structure. Two inputs never share an
    output name: a later clash (also one that differs only in case) gets
    ``-2``, ``-3``... appended, in input order, so reruns map identically.

    Raises:
        UsageError: a path does not exist.
    """
    found: list[tuple[Path, PurePosixPath]] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found.extend(_walk_folder(path, recursive, volumes))
        elif path.exists():
            found.append((path, PurePosixPath(path.name)))
        else:
            raise UsageError(f"no such file or folder: {raw}")
    taken: set[str] = set()
    items: list[InputImage] = []
    for path, rel in found:
        relative = str(rel)
        candidate, n = relative, 1
        while _clash_key(candidate) in taken:
            n += 1
            candidate = f"{relative}-{n}"
        taken.add(_clash_key(candidate))
        items.append(InputImage(path=path, relative=candidate))
    return items


def _clash_key(relative: str) -> str:
    """Key under which two output names would collide on any file system."""
    return unicodedata.normalize("NFC", relative).casefold()
