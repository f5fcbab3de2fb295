"""Truth masks for evaluation: boxes drawn on a photo's pixel grid (at its own size or resized, as
``--max-size`` resizes it), and mask files under ``--masks DIR``, one per input.

A truth mask is bool (H, W), True on the object. A box [x0, x1) x [y0, y1) is in pixels of the original
photo as shown (EXIF upright); pixel (r, c) is inside when its centre (c + 0.5, r + 0.5) lies in the box,
so a box of whole numbers covers exactly columns x0 .. x1 - 1 and rows y0 .. y1 - 1.
"""
from __future__ import annotations

import os
import stat
import warnings
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Iterable

import numpy as np

from ..errors import UsageError
from .discovery import is_image_name
from .headers import has_orientation, image_size
from .images import describe_error

__all__ = ["Box", "find_mask", "input_relative", "read_mask", "require_regular_file", "resize_mask", "scale_boxes",
           "truth_mask_from_boxes"]


@dataclass(frozen=True)
class Box:
    """A box in photo pixels: [x0, x1) x [y0, y1), x0 < x1 and y0 < y1, all finite and >= 0 (as
    :func:`~gradcam.inputs.ground_truth.read_boxes` gives them); ``class_name`` None when not given."""

    x0: float
    y0: float
    x1: float
    y1: float
    class_name: str | None = None


def _size(size: tuple[int, int], what: str) -> tuple[int, int]:
    """(H, W) as two ints >= 1."""
    height, width = (int(side) for side in size)
    if height < 1 or width < 1:
        raise ValueError(f"{what} must be at least 1 x 1 pixels, not {tuple(size)}")
    return height, width


def scale_boxes(boxes: Iterable[Box], from_size: tuple[int, int], to_size: tuple[int, int]) -> list[Box]:
    """Boxes of a photo of ``from_size`` (H, W) moved onto the same photo resized to ``to_size`` (H, W):
    x times W_to / W_from, y times H_to / H_from (each computed as x * W_to / W_from, one rounding for
    whole-number corners). New boxes; the class names kept."""
    from_h, from_w = _size(from_size, "from_size")
    to_h, to_w = _size(to_size, "to_size")
    return [Box(b.x0 * to_w / from_w, b.y0 * to_h / from_h, b.x1 * to_w / from_w, b.y1 * to_h / from_h,
                b.class_name) for b in boxes]


def truth_mask_from_boxes(boxes: Iterable[Box], size: tuple[int, int],
                          to_size: tuple[int, int] | None = None) -> np.ndarray:
    """The union of the boxes of a photo of ``size`` (H, W), the frame they are drawn in, on a grid of
    ``to_size`` (H', W'; default ``size``): bool (H', W'), pixel (r, c) True when its centre
    (c + 0.5, r + 0.5) lies in [x0, x1) x [y0, y1) of a box moved onto the grid (:func:`scale_boxes`);
    what lies outside the grid is clipped. ``to_size`` is the photo resized, as ``--max-size`` does.
    """
    height, width = _size(size, "size")
    if to_size is not None and _size(to_size, "to_size") != (height, width):
        boxes = scale_boxes(boxes, size, to_size)
        height, width = _size(to_size, "to_size")
    mask = np.zeros((height, width), dtype=bool)
    columns, rows = np.arange(width) + 0.5, np.arange(height) + 0.5
    for box in boxes:
        # the first centre >= x0 and the first >= x1: columns c0 .. c1 - 1 have x0 <= c + 0.5 < x1
        c0, c1 = np.searchsorted(columns, (box.x0, box.x1), side="left")
        r0, r1 = np.searchsorted(rows, (box.y0, box.y1), side="left")
        mask[r0:r1, c0:c1] = True
    return mask


def resize_mask(mask: np.ndarray, to_size: tuple[int, int]) -> np.ndarray:
    """A truth mask (bool (H, W)) on the photo resized to ``to_size`` (H', W'): pixel (r, c) takes the
    original pixel under its centre, row floor((r + 0.5) H / H') (in integers, exactly), so a mask of
    boxes with whole-number corners resizes to :func:`truth_mask_from_boxes` of the resized photo.
    A new bool (H', W') array."""
    height, width = mask.shape
    to_h, to_w = _size(to_size, "to_size")
    rows = ((2 * np.arange(to_h) + 1) * height) // (2 * to_h)
    columns = ((2 * np.arange(to_w) + 1) * width) // (2 * to_w)
    return np.asarray(mask, dtype=bool)[rows[:, None], columns[None, :]]


def input_relative(item_path: str | os.PathLike, relative: str) -> str:
    """An input's path relative to the folder it was found in, with its extension, in POSIX form: the
    folder part of ``relative`` (an :class:`~gradcam.inputs.discovery.InputImage`'s, whose name may carry
    a ``-2`` that keeps output names apart) and the file's own name."""
    return str(PurePosixPath(relative).parent / Path(item_path).name)


def _relative_parts(relative_path: str | os.PathLike) -> PurePosixPath:
    """An input's relative path, refused when it would leave the masks folder."""
    relative = PurePosixPath(os.fspath(relative_path).replace("\\", "/"))
    if relative.is_absolute() or ".." in relative.parts or not relative.name:
        raise UsageError(f"cannot look up a mask for {os.fspath(relative_path)!r}: not a path inside a folder")
    return relative


def find_mask(masks_dir: str | os.PathLike, relative_path: str | os.PathLike) -> Path | None:
    """The mask file of an input under ``masks_dir``: at the input's relative path (``sub/cat.jpg``,
    :func:`input_relative`), the same name, else the same stem with any
    image extension (``sub/cat.png``); None when there is none. Names compared as written (case too);
    hidden files (a leading dot) are not masks.

    Raises:
        UsageError: ``masks_dir`` is not a folder, or several files could be the mask.
    """
    if not os.path.isdir(masks_dir):
        raise UsageError(f"the masks folder {os.fspath(masks_dir)} is not a folder")
    relative = _relative_parts(relative_path)
    folder = Path(masks_dir, *relative.parent.parts)
    if (folder / relative.name).is_file():
        return folder / relative.name
    stem = relative.stem if relative.suffix else relative.name
    try:
        with os.scandir(folder) as entries:
            found = sorted(entry.name for entry in entries if not entry.name.startswith(".")
                           and is_image_name(entry.name) and os.path.splitext(entry.name)[0] == stem)
    except OSError:
        return None
    if len(found) > 1:
        raise UsageError(f"several masks for {relative} in {os.fspath(masks_dir)}: {', '.join(found[:5])}")
    return folder / found[0] if found else None


def read_mask(masks_dir: str | os.PathLike, item_path: str | os.PathLike, relative: str,
              size: tuple[int, int]) -> np.ndarray | None:
    """The truth mask of an input from its mask file under ``masks_dir`` (:func:`find_mask` at
    :func:`input_relative`), or None when it has none.

    The mask is read as photos are, upright (its EXIF orientation applied), and must have the size of the
    input photo ``item_path`` as shown (read from its header; ``size`` when the header gives none). The
    object is every pixel that is not zero: a non-zero value in a one-channel image (1-bit, 8-bit,
    16-bit, 32-bit, float), a colour that is not black in the others (a palette's colours), and in both
    only where not fully transparent. An all-zero mask is returned as it is (the caller decides what an
    empty truth means).

    Args:
        item_path, relative: the input's path and its InputImage's ``relative``.
        size: (H, W) of the decoded photo the mask is wanted on: the photo's own size, or smaller when
            ``--max-size`` resized it (the mask is then moved onto it by :func:`resize_mask`).

    Returns:
        bool (H, W); None when the input has no mask file.

    Raises:
        UsageError: one line: the mask cannot be read as an image, its size is not the photo's, or it
            has non-finite values; as :func:`find_mask`.
    """
    height, width = _size(size, "size")
    path = find_mask(masks_dir, input_relative(item_path, relative))
    if path is None:
        return None
    shown = image_size(item_path)  # (width, height) upright
    original = (height, width) if shown is None else (shown[1], shown[0])
    mask = _load(path, original)
    return mask if original == (height, width) else resize_mask(mask, (height, width))


def require_regular_file(path: str | os.PathLike, what: str) -> None:
    """Raises a one-line UsageError naming ``what`` (``"the mask"``) unless ``path`` is a regular file
    (links followed): checked before opening, as a FIFO would block and a device never end."""
    try:
        regular = stat.S_ISREG(os.stat(path).st_mode)
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot read {what} {os.fspath(path)}: {getattr(exc, 'strerror', None) or exc}") from None
    if not regular:
        raise UsageError(f"{what} {os.fspath(path)} is not a regular file")


def _load(path: Path, size: tuple[int, int]) -> np.ndarray:
    """The object pixels of a mask file whose upright size must be ``size`` (H, W), checked from the
    header before the pixels are decoded."""
    from PIL import Image, ImageOps

    height, width = size
    require_regular_file(path, "the mask")
    upright = image_size(path)
    if upright is None:
        raise UsageError(f"cannot read the mask {path}: not an image Pillow can open")
    if upright != (width, height):
        raise UsageError(f"the mask {path} is {upright[0]}x{upright[1]} pixels (upright), its photo "
                         f"{width}x{height}: a mask must have its photo's size as shown")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as image:
                image.seek(0)
                image.load()
                shown = ImageOps.exif_transpose(image) if has_orientation(image) else image
                mask = _object_pixels(shown)
    except UsageError:
        raise
    except Exception as exc:
        raise UsageError(f"cannot read the mask {path}: {describe_error(exc)}") from None
    if mask.shape != (height, width):  # a header that disagrees with its pixels
        raise UsageError(f"the mask {path} decodes to {mask.shape[1]}x{mask.shape[0]} pixels, not {width}x{height}")
    return mask


def _object_pixels(image) -> np.ndarray:
    """bool (H, W): the non-zero, not fully transparent pixels of a loaded Pillow image (see :func:`read_mask`)."""
    if image.mode in ("1", "L", "I", "F") or image.mode.startswith("I;16"):
        values = np.asarray(image)
        if values.dtype.kind == "f" and not np.isfinite(values).all():
            raise ValueError("NaN or infinite values")
        return values != 0
    if image.mode == "LA":
        values = np.asarray(image)
        return (values[..., 0] != 0) & (values[..., 1] > 0)
    rgba = np.asarray(image if image.mode == "RGBA" else image.convert("RGBA"))
    return rgba[..., :3].any(axis=2) & (rgba[..., 3] > 0)
