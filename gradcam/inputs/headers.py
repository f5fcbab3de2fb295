"""What an image file's header tells before it is decoded: its upright size, whether it is turned by an
EXIF orientation, and the bytes its decoded photo (or a volume's voxels) will take."""
from __future__ import annotations

import os
import warnings

import numpy as np

from .discovery import is_volume_name
from .medical import dicom_size, is_dicom_file
from .volumes import volume_shape


def has_orientation(image) -> bool:
    """Whether an opened Pillow image has an EXIF orientation other than upright (1)."""
    try:
        return image.getexif().get(0x0112, 1) not in (1, None)
    except Exception:
        return False


#: EXIF orientations that turn the stored image a quarter turn: the upright width is the stored height
_QUARTER_TURNS = (5, 6, 7, 8)


def image_size(path: str | os.PathLike) -> tuple[int, int] | None:
    """(width, height) of an image file as it is shown, upright (its EXIF orientation applied, as
    :func:`~gradcam.inputs.images.load_image` does), from its header alone; None when the header cannot be read."""
    if is_dicom_file(path):
        return dicom_size(path)
    return _header_size(path, upright=True)


def _header_size(path: str | os.PathLike, upright: bool) -> tuple[int, int] | None:
    """(width, height) from the header, turned by the EXIF orientation when ``upright``; None when unreadable."""
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as image:
                width, height = image.size
                turned = upright and has_orientation(image) and image.getexif().get(0x0112) in _QUARTER_TURNS
                return (height, width) if turned else (width, height)
    except Exception:
        return None


def photo_bytes(path: str | os.PathLike) -> int:
    """Bytes of the decoded RGB photo (width x height x 3), or of a volume file's float32 voxels, read
    from the file's header alone; 0 when the header cannot be read (decoding then reports the error)."""
    if is_volume_name(path):
        shape = volume_shape(path)
        return 4 * int(np.prod(shape)) if shape else 0
    # width x height is the same turned or not: the EXIF block is not parsed (a folder run asks this of every
    # input in its main thread)
    size = dicom_size(path) if is_dicom_file(path) else _header_size(path, upright=False)
    return size[0] * size[1] * 3 if size else 0
