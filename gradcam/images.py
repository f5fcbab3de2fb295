"""Finding input images, decoding them with Pillow, and the tool's image errors.

Every decoding failure becomes an :class:`~gradcam.errors.ImageError`, whatever
Pillow raised, so one bad file never stops a folder run.
"""
from __future__ import annotations

import os
import unicodedata
import warnings
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Iterable

import numpy as np

from .errors import ImageError, UsageError

#: File extensions (lower-case) that are read; others in a folder are ignored.
IMAGE_EXTENSIONS: tuple[str, ...] = (
    ".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".bmp", ".gif",
    ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm", ".pnm",
)

#: Largest image (width x height) decoded unless ``max_pixels`` says otherwise.
DEFAULT_MAX_PIXELS: int = 100_000_000


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


def _walk_folder(root: Path, recursive: bool) -> Iterable[tuple[Path, PurePosixPath]]:
    """Yield (file path, path relative to root) for the image files under ``root``.

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
            elif is_image_name(entry.name):
                yield Path(entry.path), rel / entry.name
        stack.extend(reversed(subfolders))


def discover_inputs(paths: Iterable[str | os.PathLike], recursive: bool = False) -> list[InputImage]:
    """Expand files and folders into the list of images to explain.

    A file named directly is always read (whatever its extension) and its
    outputs go to the top of the output folder; a folder contributes its image
    files, keeping their sub-folder structure. Two inputs never share an
    output name: a later clash (also one that differs only in case) gets
    ``-2``, ``-3``... appended, in input order, so reruns map identically.

    Raises:
        UsageError: a path does not exist.
    """
    found: list[tuple[Path, PurePosixPath]] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found.extend(_walk_folder(path, recursive))
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


def load_image(path: str | os.PathLike, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode an image file into an upright RGB array.

    The first frame of an animation is used; EXIF orientation is applied;
    transparency is composited on white; 16-bit and float images are scaled
    to 8 bits.

    Returns:
        uint8 array of shape (H, W, 3).

    Raises:
        ImageError: the file is not a readable image, or has more than
            ``max_pixels`` pixels (checked from the header, before decoding).
    """
    from PIL import Image, ImageOps

    if Image.MAX_IMAGE_PIXELS is not None and max_pixels > Image.MAX_IMAGE_PIXELS:
        Image.MAX_IMAGE_PIXELS = max_pixels  # only ever raised, as the caller asked
    try:
        if os.path.getsize(path) == 0:
            raise ImageError("empty file (0 bytes)")
    except OSError as exc:
        raise ImageError(f"cannot read the file: {exc.strerror or exc}") from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as image:
                width, height = image.size
                if width * height > max_pixels:
                    raise ImageError(
                        f"image is too large: {width}x{height} pixels is more than the limit of "
                        f"{max_pixels:,} (raise it with --max-pixels)"
                    )
                if width < 1 or height < 1:
                    raise ImageError(f"image has no pixels ({width}x{height})")
                image.seek(0)
                image.load()
                upright = ImageOps.exif_transpose(image) if _has_orientation(image) else image
                rgb = pil_to_rgb(upright)
    except ImageError:
        raise
    except Image.DecompressionBombError:
        raise ImageError(f"image is too large: {_pixels(path)}more than the limit of {max_pixels:,} pixels "
                         "(raise it with --max-pixels)") from None
    except MemoryError:
        raise ImageError("not enough memory to decode this image") from None
    except Exception as exc:  # Pillow raises many types for bad files
        raise ImageError(f"not a readable image ({_describe(exc)})") from None
    if rgb.shape[0] * rgb.shape[1] > max_pixels:
        raise ImageError(f"image is too large: more than {max_pixels:,} pixels")
    return rgb


def _pixels(path) -> str:
    """'WxH pixels is ' from the image's header, or '' when even that cannot be read."""
    from PIL import Image

    try:
        limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                with Image.open(path) as image:
                    width, height = image.size
        finally:
            Image.MAX_IMAGE_PIXELS = limit
    except Exception:
        return ""
    return f"{width}x{height} pixels is "


def _has_orientation(image) -> bool:
    try:
        return image.getexif().get(0x0112, 1) not in (1, None)
    except Exception:
        return False


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if "cannot identify image file" in text:
        return "unknown or damaged format"
    return text[:200]


def pil_to_rgb(image) -> np.ndarray:
    """Convert a loaded Pillow image of any mode to a uint8 (H, W, 3) array (a new array): 16-bit and
    float images scaled to 8 bits, transparency composited on white."""
    from PIL import Image

    mode = image.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        values = np.asarray(image, dtype=np.float64)
        if mode == "F" and values.size and np.nanmax(values) <= 1.0:
            scale = 255.0
        elif mode.startswith("I;16") or (values.size and np.nanmax(values) > 255):
            scale = 255.0 / 65535.0
        else:
            scale = 1.0
        grey = np.clip(np.nan_to_num(values * scale), 0, 255).round().astype(np.uint8)
        return np.ascontiguousarray(np.repeat(grey[:, :, None], 3, axis=2))
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        mode in ("P", "L", "RGB") and "transparency" in image.info
    )
    if has_alpha:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        rgb_image = Image.alpha_composite(background, rgba).convert("RGB")
    else:
        rgb_image = image.convert("RGB")
    array = np.asarray(rgb_image, dtype=np.uint8)
    if array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"unexpected pixel layout {array.shape}")
    return np.ascontiguousarray(array)


def resize_for_model(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize an RGB photo to the model's input size with bilinear filtering.

    Args:
        rgb: uint8 array (H, W, 3).
        size: (height, width) of the model input.

    Returns:
        float32 array (height, width, 3) with values in [0, 255], not yet
        preprocessed for the model.
    """
    from PIL import Image

    height, width = size
    resized = Image.fromarray(rgb).resize((width, height), Image.BILINEAR)
    return np.asarray(resized, dtype=np.float32)


def image_size(path: str | os.PathLike) -> tuple[int, int] | None:
    """(width, height) of an image file from its header alone; None when the header cannot be read."""
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as image:
                return image.size
    except Exception:
        return None


def photo_bytes(path: str | os.PathLike) -> int:
    """Bytes of the decoded RGB photo (width x height x 3), read from the file's header alone; 0 when
    the header cannot be read (decoding then reports the error)."""
    size = image_size(path)
    return size[0] * size[1] * 3 if size else 0


def load_for_model(path: str | os.PathLike, size: tuple[int, int], max_pixels: int = DEFAULT_MAX_PIXELS,
                   max_size: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Decode a photo and resize it for the model.

    Args:
        max_size: cap the longer side of the returned photo (the overlay's size) at this many
            pixels, keeping the aspect ratio; the model input is made from the full photo.

    Returns:
        (photo uint8 (H, W, 3), model input float32 (height, width, 3) in [0, 255]).

    Raises:
        ImageError: as :func:`load_image`.
    """
    photo = load_image(path, max_pixels)
    return shrink(photo, max_size), resize_for_model(photo, size)


def shrink(photo: np.ndarray, max_size: int | None) -> np.ndarray:
    """The photo with its longer side at most ``max_size`` (aspect ratio kept, Pillow's antialiased
    bilinear filter); unchanged when it already fits or ``max_size`` is None."""
    height, width = photo.shape[:2]
    if max_size is None or max(height, width) <= max_size:
        return photo
    from PIL import Image

    scale = max_size / max(height, width)
    new_size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.asarray(Image.fromarray(photo).resize(new_size, Image.BILINEAR))


def array_to_rgb(array: np.ndarray) -> np.ndarray:
    """A new uint8 (H, W, 3) photo from an image array, which is never modified.

    Accepts (H, W) greyscale, (H, W, 1), (H, W, 3) RGB and (H, W, 4) RGBA (composited on white);
    uint8 as is, bool as 0/255, other integers clipped to 0-255, floats taken as 0-1 when their
    maximum is at most 1 and as 0-255 otherwise (then clipped and rounded).

    Raises:
        ImageError: another shape, an empty image, or NaN/infinite values.
    """
    array = np.asarray(array)
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] not in (1, 3, 4) or 0 in array.shape[:2]:
        raise ImageError(f"an image array must be (H, W), (H, W, 1), (H, W, 3) or (H, W, 4); got {array.shape}")
    if array.dtype == np.uint8:
        values = array.astype(np.float32)
    elif array.dtype == bool:
        values = array.astype(np.float32) * 255.0
    elif np.issubdtype(array.dtype, np.integer):
        values = np.clip(array, 0, 255).astype(np.float32)
    elif np.issubdtype(array.dtype, np.floating):
        values = array.astype(np.float32)
        if not np.isfinite(values).all():
            raise ImageError("the image array has NaN or infinite values")
        if values.max() <= 1.0:
            values = values * 255.0
    else:
        raise ImageError(f"an image array must hold numbers; got dtype {array.dtype}")
    values = np.clip(values, 0.0, 255.0)
    if values.shape[2] == 4:  # composite on white, as for image files
        alpha = values[:, :, 3:] / 255.0
        values = values[:, :, :3] * alpha + 255.0 * (1.0 - alpha)
    elif values.shape[2] == 1:
        values = np.repeat(values, 3, axis=2)
    return np.ascontiguousarray(np.rint(values).astype(np.uint8))


def load_volume(volume, channels: int = 1) -> np.ndarray:
    """A volume as float32 (D, H, W, C): a ``.npy`` file's array or an array, (D, H, W) or (D, H, W, C);
    yours is not changed.

    Raises:
        ImageError: an unreadable file, another shape, another channel count, or NaN/infinite values.
    """
    if isinstance(volume, (str, os.PathLike)):
        try:
            volume = np.load(volume, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise ImageError(f"not a readable .npy volume ({str(exc).splitlines()[0][:200]})") from None
    values = np.array(volume, dtype=np.float32)
    if values.ndim == 3:
        values = values[..., None]
    if values.ndim != 4 or 0 in values.shape or values.shape[3] != channels:
        raise ImageError(f"a volume must be (D, H, W) or (D, H, W, {channels}); got {np.shape(volume)}")
    if not np.isfinite(values).all():
        raise ImageError("the volume has NaN or infinite values")
    return values


def resize_volume(volume: np.ndarray, size: tuple[int, int, int]) -> np.ndarray:
    """A volume (D, H, W, C) resampled to the model's (d, h, w) with ``scipy.ndimage.zoom`` (order 1,
    pixel centres aligned, as the heatmaps are): float32 (d, h, w, C)."""
    if tuple(volume.shape[:3]) == tuple(size):
        return volume
    from scipy import ndimage

    factors = tuple(new / old for new, old in zip(size, volume.shape[:3])) + (1.0,)
    resized = ndimage.zoom(volume, factors, order=1, mode="nearest", grid_mode=True)
    resized = resized[: size[0], : size[1], : size[2]]
    pad = tuple((0, n - m) for n, m in zip(size, resized.shape[:3])) + ((0, 0),)
    return np.pad(resized, pad, mode="edge") if any(p[1] for p in pad) else resized
