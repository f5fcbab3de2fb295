"""Where outputs go: each input's overlay and .npy paths inside the output folder, the folder
itself (created and proven writable before a model loads), and the shard each input belongs to."""
from __future__ import annotations

import hashlib
import os
import tempfile
from functools import lru_cache
from pathlib import Path, PurePosixPath
from typing import Iterable

from ..errors import OutputError
from ..inputs.discovery import InputImage


def output_paths(item: InputImage, output_dir: Path, rank: int = 1, top_k: int = 1) -> tuple[Path, Path]:
    """(overlay PNG, heatmap .npy) paths of an input, always inside ``output_dir``.

    ``photo.jpg`` -> ``photo.jpg.png``; with ``top_k`` > 1, ``photo.jpg.top{rank}.png``.
    """
    suffix = f".top{rank}.png" if top_k > 1 else ".png"
    paths = _paths_inside(os.path.abspath(output_dir), f"{item.relative}{suffix}")  # absolute: cwd may change
    if paths is None:
        raise OutputError(f"output for {item.path} would leave the output folder")
    return paths


@lru_cache(maxsize=4096)
def _paths_inside(output_dir: str, relative_name: str) -> tuple[Path, Path] | None:
    """(overlay, .npy) paths of the output ``relative_name`` (POSIX, with its suffix) in the absolute folder
    ``output_dir``; None when they would leave it. Cached: a run asks for each input's paths when it plans the
    input and again when it writes it (its folder is resolved once, as :func:`_resolved_folders` says)."""
    relative = PurePosixPath(relative_name)
    root, folder = _resolved_folders(output_dir, str(relative.parent))
    if root != folder and root not in folder.parents or relative.name in ("", ".", ".."):
        return None
    overlay_path = folder / relative.name
    return overlay_path, overlay_path.with_suffix(".npy")


def sibling_path(overlay_path: Path, suffix: str) -> Path:
    """Another output of the same input and rank: ``NAME.png`` -> ``NAME{suffix}`` (``.curves.png``,
    ``.planes.png``, ``.nii.gz``)."""
    return overlay_path.with_name(overlay_path.name[: -len(".png")] + suffix)


@lru_cache(maxsize=4096)
def _resolved_folders(output_dir: str, relative_folder: str) -> tuple[Path, Path]:
    """(the output folder, the output's folder inside it), both resolved (symbolic links followed): once
    per folder, not once per output. The file itself is never followed: it is replaced by a rename."""
    root = Path(output_dir).resolve()
    return root, (root / relative_folder).resolve()


def relative_path(output_dir: Path, path: Path | None) -> str | None:
    """``path`` relative to the (resolved) output folder, POSIX style, as manifests record it; None stays None.
    Raises ValueError when ``path`` is not inside ``output_dir``."""
    if path is None:
        return None
    if isinstance(path, Path) and isinstance(output_dir, Path):  # both normalised: the name is a plain suffix
        text, root = str(path), str(output_dir)
        if text.startswith(root) and text[len(root):len(root) + 1] == os.sep and not root.endswith(os.sep):
            return text[len(root) + 1:].replace(os.sep, "/")
    return Path(path).relative_to(output_dir).as_posix()


def shard_of(relative: str, count: int) -> int:
    """The shard (0 <= shard < count) of an input, from a stable hash of its relative output name: the
    same on every machine and Python, and adding files never moves the others."""
    digest = hashlib.sha256(relative.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % count


def select_shard(items: Iterable[InputImage], shard: tuple[int, int] | None) -> list[InputImage]:
    """The inputs of shard (I, N); all of them for None."""
    items = list(items)
    if shard is None:
        return items
    index, count = shard
    return [item for item in items if shard_of(item.relative, count) == index]


def prepare_output_dir(output_dir: Path) -> None:
    """Create the output folder and prove it is writable (with a probe file of a unique name, which
    two machines sharing the folder cannot both pick), before any model is loaded."""
    output_dir = Path(output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise OutputError(f"the output folder {output_dir} is a file, not a folder: name another with -o")
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".gradcam-write-test-", dir=output_dir)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise OutputError(f"cannot write to output folder {output_dir}: {reason}") from None
