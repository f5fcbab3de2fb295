"""Decoding input images with Pillow (DICOM through :mod:`gradcam.inputs.medical`), arrays to RGB,
resizing for the model, region masks, and the tool's image errors.

Every decoding failure becomes an :class:`~gradcam.errors.ImageError`, whatever
Pillow raised, so one bad file never stops a folder run.
"""
from __future__ import annotations

import os
import warnings

import numpy as np

from ..errors import ImageError
from .discovery import is_volume_name
from . import resize_fast
from .headers import has_orientation, image_size, photo_bytes  # image_size, photo_bytes: imported from here too
from .jpeg_fast import SCAN_LIMIT, decode_jpeg, scan_count
from .medical import is_dicom_file, is_nifti_name, read_dicom

#: Largest image (width x height) decoded unless ``max_pixels`` says otherwise.
DEFAULT_MAX_PIXELS: int = 100_000_000

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
    _check_2d(path, max_pixels)
    if is_dicom_file(path):
        return _rounded_rgb(_dicom_values(path, window, max_pixels))
    return _array_of(_decode(path, max_pixels))


def _check_2d(path: str | os.PathLike, max_pixels: int) -> None:
    """Refuse a volume file; let Pillow open images of up to ``max_pixels`` pixels."""
    from PIL import Image

    if is_volume_name(path):
        raise volume_refused(path)
    if Image.MAX_IMAGE_PIXELS is not None and max_pixels > Image.MAX_IMAGE_PIXELS:
        Image.MAX_IMAGE_PIXELS = max_pixels  # only ever raised, as the caller asked


def _decode(path: str | os.PathLike, max_pixels: int):
    """A non-DICOM image file's upright RGB photo: a Pillow image in mode RGB (:func:`_rgb_of`), or a uint8 (H, W, 3)
    array (16-bit and float images; JPEGs that :func:`.jpeg_fast.decode_jpeg` takes). Checks as :func:`load_image`."""
    from PIL import Image, ImageOps

    check_not_empty(path)
    if (photo := decode_jpeg(path, max_pixels)) is not None:  # Pillow's pixels, through simplejpeg (<= 100 scans)
        return photo
    if scan_count(path) > SCAN_LIMIT:  # each decoded over the whole image: a small file would take minutes
        raise ImageError(f"a JPEG of more than {SCAN_LIMIT} scans (photos have about 10; each costs a whole decode)")
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
                rgb = _rgb_of(ImageOps.exif_transpose(image) if has_orientation(image) else image)
    except ImageError:
        raise
    except Image.DecompressionBombError:
        raise ImageError(f"image is too large: {_pixels(path)}more than the limit of {max_pixels:,} pixels "
                         "(raise it with --max-pixels)") from None
    except MemoryError:
        raise ImageError("not enough memory to decode this image") from None
    except Exception as exc:  # Pillow raises many types for bad files
        raise ImageError(f"not a readable image ({describe_error(exc)})") from None
    height, width = rgb.shape[:2] if isinstance(rgb, np.ndarray) else rgb.size[::-1]
    if height * width > max_pixels:
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


def describe_error(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if "cannot identify image file" in text:
        return "unknown or damaged format"
    return text[:200]


def pil_to_rgb(image) -> np.ndarray:
    """Convert a loaded Pillow image of any mode to a uint8 (H, W, 3) array (a new array): 16-bit and
    float images scaled to 8 bits, transparency composited on white."""
    return _array_of(_rgb_of(image))


def _rgb_of(image):
    """A loaded Pillow image as RGB: a Pillow image in mode RGB (``image`` itself when it is one, without
    transparency: no copy), or for 16-bit and float images a new uint8 (H, W, 3) array scaled to 8 bits."""
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
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image if mode == "RGB" else image.convert("RGB")


def _array_of(rgb) -> np.ndarray:
    """uint8 (H, W, 3) of :func:`_rgb_of`'s result (an array is returned as it is)."""
    if isinstance(rgb, np.ndarray):
        return rgb
    array = _packed_rgb(rgb)
    if array is not None:
        return array
    array = np.asarray(rgb, dtype=np.uint8)
    if array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"unexpected pixel layout {array.shape}")
    return np.ascontiguousarray(array)


def _packed_rgb(image) -> np.ndarray | None:
    """A loaded Pillow RGB image's pixels, uint8 (H, W, 3), read-only: the bytes of Pillow's "raw" RGB encoder
    in one call, which is what ``np.asarray(image)`` gets from ``Image.tobytes`` in 64 KB pieces joined (the
    same bytes without the second copy: 94 -> 49 ms at 12 megapixels, 0.36 -> 0.26 ms at 640x480). None for
    other modes, or where Pillow's encoder does not answer as expected (the caller then takes np.asarray)."""
    width, height = image.size
    size = width * height * 3
    if image.mode != "RGB" or not size:
        return None
    try:
        from PIL import Image

        encoder = Image._getencoder("RGB", "raw", "RGB")
        try:
            encoder.setimage(image.im, (0, 0, width, height))
            _, status, data = encoder.encode(max(size, 4 * width, 65536))
        finally:
            encoder.cleanup()
    except Exception:  # another Pillow's internals
        return None
    if status != 1 or not isinstance(data, bytes) or len(data) != size:
        return None
    return np.frombuffer(data, np.uint8).reshape(height, width, 3)


def resize_for_model(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a uint8 (H, W, 3) RGB photo to the model's input ``size`` (height, width), bilinear: float32
    (height, width, 3) in [0, 255], not yet preprocessed for the model."""
    return resized_rgb(rgb, None, size).astype(np.float32)


def resized_rgb(photo: np.ndarray | None, image, size: tuple[int, int]) -> np.ndarray:
    """Pillow's bilinear resize of a photo to ``size`` (height, width), uint8: through the compiled loop of
    :mod:`.resize_fast` from ``photo`` (uint8 (H, W, 3)) where it is loaded, else by Pillow from ``image`` (the
    same photo as a Pillow RGB image, or None)."""
    resized = resize_fast.resize(photo, size) if photo is not None else None
    if resized is None:
        from PIL import Image

        image = Image.fromarray(photo) if image is None else image
        resized = _array_of(image.resize((int(size[1]), int(size[0])), Image.BILINEAR))
    return resized


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
    _check_2d(path, max_pixels)
    rgb = _decode(path, max_pixels)
    image = None if isinstance(rgb, np.ndarray) else rgb  # a Pillow image: resized as it is where Pillow resizes
    smaller = _shrunk_size(rgb.shape[1::-1] if image is None else image.size, max_size)
    array = _array_of(rgb) if image is None or smaller is None else None  # made anyway: the photo, or decoded so
    photo = array if smaller is None else resized_rgb(array, image, smaller[::-1])
    return photo, resized_rgb(array, image, size).astype(np.float32)


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
    smaller = _shrunk_size(photo.shape[1::-1], max_size)
    return photo if smaller is None else resized_rgb(photo, None, smaller[::-1])


def _shrunk_size(size: tuple[int, int], max_size: int | None) -> tuple[int, int] | None:
    """(width, height) of a photo of ``size`` (width, height) with its longer side at ``max_size``, the
    aspect ratio kept; None when it already fits or ``max_size`` is None."""
    width, height = size
    if max_size is None or max(height, width) <= max_size:
        return None
    scale = max_size / max(height, width)
    return max(1, round(width * scale)), max(1, round(height * scale))
