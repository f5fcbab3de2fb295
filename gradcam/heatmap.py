"""NumPy/SciPy after the model: normalising a class activation map and upsampling it."""
from __future__ import annotations

import numpy as np


def normalize(cam: np.ndarray) -> tuple[np.ndarray, bool]:
    """Scale a non-negative map by its maximum.

    Args:
        cam: float array (h, w), values >= 0 (a ReLU'd class activation map).

    Returns:
        (heatmap, is_zero): heatmap is float32 (h, w) in [0, 1]; a map that is
        zero everywhere (or not finite) stays all zeros and ``is_zero`` is True.
    """
    cam = np.asarray(cam, dtype=np.float32)
    cam = np.where(np.isfinite(cam), cam, 0.0)
    peak = float(cam.max()) if cam.size else 0.0
    if peak <= 0.0:
        return np.zeros_like(cam, dtype=np.float32), True
    return np.clip(cam / peak, 0.0, 1.0).astype(np.float32), False


def upsample(heatmap: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Upsample a heatmap to exactly ``shape`` with ``scipy.ndimage.zoom`` (order=1).

    Args:
        heatmap: float array (h, w) in [0, 1].
        shape: (H, W) of the original photo.

    Returns:
        float32 array (H, W) in [0, 1].
    """
    from scipy import ndimage

    heatmap = np.asarray(heatmap, dtype=np.float32)
    height, width = shape
    factors = (height / heatmap.shape[0], width / heatmap.shape[1])
    big = ndimage.zoom(heatmap, factors, order=1, mode="nearest", grid_mode=False)
    if big.shape != (height, width):  # zoom rounds the output size; fix an off-by-one
        big = _fit(big, height, width)
    return np.clip(big, 0.0, 1.0).astype(np.float32, copy=False)


def _fit(array: np.ndarray, height: int, width: int) -> np.ndarray:
    """Crop or edge-pad a 2-D array to (height, width)."""
    array = array[:height, :width]
    pad = ((0, height - array.shape[0]), (0, width - array.shape[1]))
    return np.pad(array, pad, mode="edge") if any(p[1] for p in pad) else array
