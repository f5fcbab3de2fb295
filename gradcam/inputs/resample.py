"""Resampling an array to an exact shape: the one ``scipy.ndimage.zoom`` convention of the tool (order 1,
pixel centres aligned), used for heatmaps and for volumes."""
from __future__ import annotations

import numpy as np


def zoom_to(array: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """``array`` resampled to exactly ``shape`` by ``scipy.ndimage.zoom``: order 1, pixel centres aligned
    (``grid_mode=True``), edges held (``mode="nearest"``); the heatmaps' convention (:func:`upsample`),
    also used to resample volumes for a model. Same dtype as ``array``."""
    from scipy import ndimage

    shape = tuple(int(n) for n in shape)
    factors = tuple(new / old for new, old in zip(shape, array.shape))
    resized = ndimage.zoom(array, factors, order=1, mode="nearest", grid_mode=True)
    return resized if resized.shape == shape else _fit(resized, shape)  # zoom rounds the size: an off-by-one


def _fit(array: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Crop or edge-pad an array to ``shape``."""
    array = array[tuple(slice(0, n) for n in shape)]
    pad = tuple((0, n - m) for n, m in zip(shape, array.shape))
    return np.pad(array, pad, mode="edge") if any(p[1] for p in pad) else array
