"""Region masks for segmentation models (``--mask FILE``): an image file's set pixels."""
from __future__ import annotations

import os
import warnings

import numpy as np

from ..errors import UsageError
from .images import describe_error


def load_mask(path: str | os.PathLike) -> np.ndarray:
    """A region mask from an image file, upright (its EXIF orientation applied): bool (H, W), True where
    the pixel is not black (any channel; transparent pixels are outside).

    Raises:
        UsageError: the file cannot be read as an image, or no pixel is set.
    """
    from PIL import Image, ImageOps

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as image:
                image.load()
                upright = ImageOps.exif_transpose(image)  # as it is shown, as photos are read
                rgba = np.asarray(upright.convert("RGBA"))
    except Exception as exc:
        raise UsageError(f"cannot read the mask {path}: {describe_error(exc)}") from None
    mask = rgba[:, :, :3].any(axis=2) & (rgba[:, :, 3] > 0)
    if not mask.any():
        raise UsageError(f"the mask {path} has no pixel set (its region is empty)")
    return mask
