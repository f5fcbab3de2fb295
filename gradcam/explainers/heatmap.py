"""NumPy/SciPy after the model: normalising a class activation map and upsampling it."""
from __future__ import annotations

import numpy as np

from ..errors import HeatmapError, ImageError
from ..inputs.resample import zoom_to
from ..inputs.resample_fast import upsample2d


def check_finite(cam: np.ndarray) -> None:
    """Raise HeatmapError if ``cam`` holds NaN or infinity (a broken model or method, never a picture)."""
    cam = np.asarray(cam)
    if not np.isfinite(cam).all():
        nan = int(np.isnan(cam).sum())
        inf = int(np.isinf(cam).sum())
        raise HeatmapError(f"heatmap is not finite: {nan} NaN and {inf} infinite value(s) of {cam.size}")


def normalize(cam: np.ndarray) -> tuple[np.ndarray, bool]:
    """Scale a map min-max to [0, 1], as pytorch-grad-cam and tf-keras-vis do.

    Args:
        cam: float array (h, w), a class activation map.

    Returns:
        (heatmap, is_constant): heatmap is float32 (h, w) in [0, 1], (cam - min) / (max - min);
        a constant map (zero or not) is all zeros and ``is_constant`` is True.

    Raises:
        HeatmapError: the map has NaN or infinite values.
    """
    cam = np.asarray(cam, dtype=np.float32)
    check_finite(cam)
    if cam.size == 0:
        return np.zeros_like(cam), True
    low, high = float(cam.min()), float(cam.max())
    if not high > low:
        return np.zeros_like(cam), True
    if high - low <= np.finfo(np.float32).max:
        scaled = (cam - np.float32(low)) / np.float32(high - low)
    else:  # a range wider than float32 holds (e.g. -3e38 to 3e38) would overflow to inf, then NaN: float64
        scaled = (cam.astype(np.float64) - low) / (high - low)
    return np.clip(scaled, 0.0, 1.0).astype(np.float32, copy=False), False


def normalize_maps(cams: np.ndarray) -> np.ndarray:
    """Min-max scale each map of a stack (..., h, w) to [0, 1] on its own, float64; a constant map
    becomes zeros, and NaN or infinity stays (for :func:`check_finite` to report)."""
    cams = np.asarray(cams, dtype=np.float64)
    low = cams.min(axis=(-2, -1), keepdims=True)
    spread = cams.max(axis=(-2, -1), keepdims=True) - low
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(spread > 0, (cams - low) / np.where(spread > 0, spread, 1.0), np.where(np.isfinite(spread), 0.0, cams))


def upsample(heatmap: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Upsample a heatmap to exactly ``shape``: :func:`reference_upsample`, bit for bit, through the compiled
    zoom of :mod:`gradcam.inputs.resample_fast` for a 2-D map when it is loaded (several times as fast).

    Args:
        heatmap: float array (h, w) in [0, 1] -- or (d, h, w) for a volume.
        shape: (H, W) of the original photo ((D, H, W) of the volume).

    Returns:
        float32 array of ``shape`` in [0, 1].
    """
    heatmap = np.asarray(heatmap, dtype=np.float32)
    big = upsample2d(heatmap, shape) if heatmap.ndim == 2 and len(shape) == 2 else None
    return reference_upsample(heatmap, shape) if big is None else big


def reference_upsample(heatmap: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Upsample a heatmap to exactly ``shape`` with ``scipy.ndimage.zoom`` (order=1).

    Pixel centres are aligned (``grid_mode=True``): cell i of h covers photo rows
    [i H / h, (i + 1) H / h) and its value sits at the centre (i + 1/2) H / h, as in
    ``tf.image.resize`` (half-pixel centres); edges are held (``mode="nearest"``).

    Args:
        heatmap: float array (h, w) in [0, 1] -- or (d, h, w) for a volume, zoomed in 3-D the same way.
        shape: (H, W) of the original photo ((D, H, W) of the volume).

    Returns:
        float32 array of ``shape`` in [0, 1].
    """
    big = zoom_to(np.asarray(heatmap, dtype=np.float32), shape)
    return np.clip(big, 0.0, 1.0, out=big)  # in place: no second photo-sized array


def heatmap_at(cam: np.ndarray, shape: tuple[int, int]) -> tuple[np.ndarray, bool]:
    """A class activation map normalised (:func:`normalize`) and upsampled (:func:`upsample`) to ``shape``.

    Returns:
        (heatmap float32 (H, W) in [0, 1], is_constant).

    Raises:
        HeatmapError: the map has NaN or infinite values.
    """
    heatmap, is_constant = normalize(cam)
    return upsample(heatmap, shape), is_constant


def cell_centres(cells: int, extent: float) -> np.ndarray:
    """Where the centres of ``cells`` equal cells along an ``extent`` of pixels lie: (i + 1/2) extent /
    cells, float64 (cells,); the convention of :func:`upsample` and of the regions below."""
    return (np.arange(cells) + 0.5) * extent / cells


def box_region(box: tuple[int, int, int, int], photo_size: tuple[int, int], grid_size: tuple[int, int]) -> np.ndarray:
    """A box (x0, y0, x1, y1) in a photo's pixels as a region on a model's output grid: float32 (h, w),
    1 where the cell's centre, (i + 1/2) H / h, lies inside the box (x0 <= x < x1, y0 <= y < y1).

    Args:
        photo_size: (H, W) of the photo the box was drawn on.
        grid_size: (h, w) of the model's output.
    """
    x0, y0, x1, y1 = box
    (height, width), (rows, cols) = photo_size, grid_size
    centre_y, centre_x = cell_centres(rows, height), cell_centres(cols, width)
    inside_y = (centre_y >= y0) & (centre_y < y1)
    inside_x = (centre_x >= x0) & (centre_x < x1)
    return (inside_y[:, None] & inside_x[None, :]).astype(np.float32)


#: how far a --mask's aspect ratio may differ from a photo's (relative) before it is refused for that photo
MASK_ASPECT_TOLERANCE = 0.02


def mask_region(mask: np.ndarray, photo_size: tuple[int, int], grid_size: tuple[int, int]) -> np.ndarray:
    """A mask (bool (Hm, Wm), stretched over a photo of the same aspect ratio) as a region on a model's
    output grid: float32 (h, w), 1 where the mask is set at the cell's centre, as :func:`box_region`.

    Raises:
        ImageError: the mask's aspect ratio differs from the photo's by more than 2 %.
    """
    (mask_height, mask_width), (height, width), (rows, cols) = mask.shape, photo_size, grid_size
    if abs(mask_height * width - mask_width * height) > MASK_ASPECT_TOLERANCE * mask_width * height:
        raise ImageError(f"the mask ({mask_width}x{mask_height}) does not fit this {width}x{height} photo "
                         "(another aspect ratio)")
    centre_y = np.minimum(cell_centres(rows, mask_height).astype(int), mask_height - 1)
    centre_x = np.minimum(cell_centres(cols, mask_width).astype(int), mask_width - 1)
    return np.asarray(mask, bool)[centre_y[:, None], centre_x[None, :]].astype(np.float32)


def check_region(region: np.ndarray | None, given: bool, class_index: int) -> None:
    """Raise HeatmapError for an empty segmentation region (bool (h, w)): its score is 0 and its map
    says nothing. ``given``: the region came from a box or mask, not from the model's own pixels."""
    if region is None or np.any(region):
        return
    rows, cols = np.shape(region)
    if given:
        raise HeatmapError(f"the region covers no cell of the model's {rows}x{cols} output (a box or mask "
                           "smaller than a cell, or outside the photo)")
    raise HeatmapError(f"the model assigns no pixel to class {class_index}: nothing to explain there "
                       "(give the region with --region or --mask)")
