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
from .heatmap import zoom_to
from .medical import dicom_size, is_dicom_file, is_nifti_name, nifti_shape, read_dicom, read_nifti
from .names import IMAGE_EXTENSIONS, VOLUME_EXTENSIONS

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


def load_image(path: str | os.PathLike, max_pixels: int = DEFAULT_MAX_PIXELS,
               window: tuple[float, float] | None = None) -> np.ndarray:
    """Decode an image file into an upright RGB array.

    The first frame of an animation is used; EXIF orientation is applied;
    transparency is composited on white; 16-bit and float images are scaled
    to 8 bits. A DICOM file (by its name or its preamble) is read with pydicom through its window
    (``window`` = (centre, width) overrides the file's; see :func:`~gradcam.medical.read_dicom`).

    Returns:
        uint8 array of shape (H, W, 3).

    Raises:
        ImageError: the file is not a readable image, or has more than
            ``max_pixels`` pixels (checked from the header, before decoding).
    """
    from PIL import Image, ImageOps

    if is_volume_name(path):
        raise volume_refused(path)
    if Image.MAX_IMAGE_PIXELS is not None and max_pixels > Image.MAX_IMAGE_PIXELS:
        Image.MAX_IMAGE_PIXELS = max_pixels  # only ever raised, as the caller asked
    if is_dicom_file(path):
        return _rounded_rgb(_dicom_values(path, window, max_pixels))
    check_not_empty(path)
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


def volume_refused(path: str | os.PathLike) -> ImageError:
    """The error for a volume file given where a 2-D image is read (a 2-D model)."""
    kind = "a NIfTI volume" if is_nifti_name(path) else "a .npy volume"
    return ImageError(f"this is {kind}, and this model takes 2-D images: a volume needs a 3-D model "
                      "(input (batch, depth, height, width, channels))")


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


#: EXIF orientations that turn the stored image a quarter turn: the upright width is the stored height
_QUARTER_TURNS = (5, 6, 7, 8)


def image_size(path: str | os.PathLike) -> tuple[int, int] | None:
    """(width, height) of an image file as it is shown, upright (its EXIF orientation applied, as
    :func:`load_image` does), from its header alone; None when the header cannot be read."""
    from PIL import Image

    if is_dicom_file(path):
        return dicom_size(path)

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as image:
                width, height = image.size
                turned = _has_orientation(image) and image.getexif().get(0x0112) in _QUARTER_TURNS
                return (height, width) if turned else (width, height)
    except Exception:
        return None


def photo_bytes(path: str | os.PathLike) -> int:
    """Bytes of the decoded RGB photo (width x height x 3), or of a volume file's float32 voxels, read
    from the file's header alone; 0 when the header cannot be read (decoding then reports the error)."""
    if is_volume_name(path):
        shape = volume_shape(path)
        return 4 * int(np.prod(shape)) if shape else 0
    size = image_size(path)
    return size[0] * size[1] * 3 if size else 0


def load_for_model(path: str | os.PathLike, size: tuple[int, int], max_pixels: int = DEFAULT_MAX_PIXELS,
                   max_size: int | None = None, window: tuple[float, float] | None = None
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Decode a photo and resize it for the model.

    Args:
        max_size: cap the longer side of the returned photo (the overlay's size) at this many
            pixels, keeping the aspect ratio; the model input is made from the full photo.
        window: a DICOM file's (centre, width), instead of its own; its windowed values reach the
            model unrounded (16-bit images keep their depth), the photo is rounded to 8 bits.

    Returns:
        (photo uint8 (H, W, 3), model input float32 (height, width, 3) in [0, 255]).

    Raises:
        ImageError: as :func:`load_image`.
    """
    if is_dicom_file(path):  # full depth until the model's input
        values = _dicom_values(path, window, max_pixels)
        return shrink(_rounded_rgb(values), max_size), resize_values_for_model(values, size)
    photo = load_image(path, max_pixels)
    return shrink(photo, max_size), resize_for_model(photo, size)


def check_not_empty(path: str | os.PathLike) -> None:
    """Raise ImageError for an empty file, or one that cannot be read at all."""
    try:
        if os.path.getsize(path) == 0:
            raise ImageError("empty file (0 bytes)")
    except OSError as exc:
        raise ImageError(f"cannot read the file: {exc.strerror or exc}") from None


def _dicom_values(path: str | os.PathLike, window: tuple[float, float] | None, max_pixels: int) -> np.ndarray:
    """A DICOM image's windowed values, float (H, W) or (H, W, 3) in [0, 255] (:func:`read_dicom`),
    after the same empty-file check as any image."""
    check_not_empty(path)
    return read_dicom(path, window, max_pixels)[0]


def _rounded_rgb(values: np.ndarray) -> np.ndarray:
    """float (H, W) or (H, W, 3) in [0, 255] -> uint8 (H, W, 3), rounded."""
    rounded = np.rint(np.clip(values, 0.0, 255.0)).astype(np.uint8)
    return np.ascontiguousarray(np.repeat(rounded[:, :, None], 3, axis=2) if rounded.ndim == 2 else rounded)


def resize_values_for_model(values: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize float greyscale (H, W) or colour (H, W, 3) values in [0, 255] to the model's input size,
    bilinear as :func:`resize_for_model`, without rounding to 8 bits: float32 (height, width, 3)."""
    from PIL import Image

    height, width = size
    channels = values[:, :, None] if values.ndim == 2 else values
    resized = [np.asarray(Image.fromarray(np.ascontiguousarray(channels[:, :, c], np.float32), mode="F")
                          .resize((width, height), Image.BILINEAR), np.float32) for c in range(channels.shape[2])]
    stacked = np.stack(resized, axis=2)
    return np.repeat(stacked, 3, axis=2) if stacked.shape[2] == 1 else stacked


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


def volume_shape(path: str | os.PathLike) -> tuple[int, ...] | None:
    """The shape of a ``.npy`` or NIfTI volume from its header alone; None when it cannot be read."""
    try:
        if is_nifti_name(path):
            return nifti_shape(path)
        return _npy_shape(path)
    except Exception:
        return None


def _npy_shape(path: str | os.PathLike) -> tuple[int, ...]:
    """The shape of a ``.npy`` file from its header. Raises ImageError for anything else."""
    try:
        with open(path, "rb") as handle:
            if handle.read(6) != b"\x93NUMPY":
                raise ImageError("not a readable .npy volume (no NumPy .npy header)")
        mapped = np.load(path, mmap_mode="r", allow_pickle=False)
    except ImageError:
        raise
    except Exception as exc:
        raise ImageError(f"not a readable .npy volume ({str(exc).strip().splitlines()[0][:200]})") from None
    return tuple(mapped.shape)


def read_volume(path: str | os.PathLike, channels: int = 1, max_voxels: int | None = None
                ) -> tuple[np.ndarray, np.ndarray | None]:
    """A volume file: ``.npy`` (D, H, W[, C]) or NIfTI (``.nii``, ``.nii.gz``; its voxel axes as stored).

    Returns:
        (float32 (D, H, W, C), the NIfTI affine float64 (4, 4), or None for a .npy file).

    Raises:
        ImageError: an unreadable file, more than ``max_voxels`` voxels (from the header, before
            reading), another shape or channel count, NaN/infinite values.
    """
    shape = nifti_shape(path) if is_nifti_name(path) else _npy_shape(path)
    voxels = int(np.prod(shape[:3]))
    if max_voxels is not None and voxels > max_voxels:
        raise ImageError(f"volume is too large: {'x'.join(map(str, shape[:3]))} voxels is more than the limit of "
                         f"{max_voxels:,} (raise it with --max-pixels)")
    affine = None
    if is_nifti_name(path):
        values, affine = read_nifti(path)
    else:
        values = np.load(path, allow_pickle=False)
    return load_volume(values, channels), affine


def load_volume_for_model(path: str | os.PathLike, size: tuple[int, int, int], channels: int = 1,
                          max_voxels: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """:func:`read_volume`, and the volume resampled for the model (:func:`resize_volume`):
    (volume float32 (D, H, W, C), model input float32 (d, h, w, C), affine or None)."""
    volume, affine = read_volume(path, channels, max_voxels)
    return volume, resize_volume(volume, size), affine


def load_volume(volume, channels: int = 1) -> np.ndarray:
    """A volume as float32 (D, H, W, C): an array, or a ``.npy`` or NIfTI file's, (D, H, W) or
    (D, H, W, C); yours is not changed.

    Raises:
        ImageError: an unreadable file, another shape, another channel count, values that are not real
            numbers, or NaN/infinite values.
    """
    if isinstance(volume, (str, os.PathLike)):
        return read_volume(volume, channels)[0]
    kind = np.asarray(volume).dtype
    if not (kind == bool or np.issubdtype(kind, np.integer) or np.issubdtype(kind, np.floating)):
        raise ImageError(f"a volume must hold real numbers; got dtype {kind}")
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
    return zoom_to(volume, (*size, volume.shape[3]))


def load_mask(path: str | os.PathLike) -> np.ndarray:
    """A region mask from an image file: bool (H, W), True where the pixel is not black (any channel;
    transparent pixels are outside).

    Raises:
        UsageError: the file cannot be read as an image, or no pixel is set.
    """
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as image:
                image.load()
                rgba = np.asarray(image.convert("RGBA"))
    except Exception as exc:
        raise UsageError(f"cannot read the mask {path}: {_describe(exc)}") from None
    mask = rgba[:, :, :3].any(axis=2) & (rgba[:, :, 3] > 0)
    if not mask.any():
        raise UsageError(f"the mask {path} has no pixel set (its region is empty)")
    return mask
