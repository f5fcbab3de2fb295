"""Image arrays handed over by a caller (the Python API), made into photos; the caller's array is never modified."""
from __future__ import annotations

import numpy as np

from ..errors import ImageError


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
