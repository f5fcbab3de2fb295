"""Colouring heatmaps with a matplotlib colormap and blending them over photos, pixel for pixel."""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from ..errors import UsageError
from ..names import did_you_mean


def get_colormap(name: str):
    """Return the matplotlib colormap called ``name``.

    Raises:
        UsageError: no such colormap.
    """
    import matplotlib

    try:
        return matplotlib.colormaps[name]
    except KeyError:
        hint = did_you_mean(name, matplotlib.colormaps)
        raise UsageError(f"unknown colormap {name!r}{hint}") from None


@lru_cache(maxsize=32)
def _lookup_table(colormap: str) -> np.ndarray:
    """The colormap's N colours as uint8 (N, 3), exactly as matplotlib maps them."""
    cmap = get_colormap(colormap)
    return cmap(np.arange(cmap.N), bytes=True)[:, :3].copy()


def colorize(heatmap: np.ndarray, colormap: str = "jet") -> np.ndarray:
    """Map a heatmap (H, W) in [0, 1] to colours: uint8 (H, W, 3).

    Same colours as calling the matplotlib colormap (index = floor(value * N),
    1.0 -> the last colour), through a cached lookup table: several times faster.
    """
    table = _lookup_table(colormap)
    return np.take(table, _colour_index(heatmap, len(table)), axis=0)


def _colour_index(heatmap: np.ndarray, size: int) -> np.ndarray:
    """Colour-table index of each value in [0, 1]: floor(value * size), 1.0 -> the last colour."""
    values = np.asarray(heatmap, dtype=np.float32)
    if not np.isfinite(values).all():
        values = np.nan_to_num(values, nan=0.0, posinf=1.0, neginf=0.0)
    return np.clip(values * size, 0, size - 1).astype(np.uint8 if size <= 256 else np.uint16)


def overlay(photo: np.ndarray, heatmap: np.ndarray, alpha: float = 0.4, colormap: str = "jet") -> np.ndarray:
    """Blend the coloured heatmap over the photo.

    Args:
        photo: uint8 (H, W, 3).
        heatmap: float (H, W) in [0, 1], same H and W as the photo.
        alpha: opacity of the heatmap, 0 (photo only) to 1 (heatmap only).

    Returns:
        uint8 (H, W, 3): ``(1 - alpha) * photo + alpha * colour``, rounded.
    """
    if photo.shape[:2] != heatmap.shape:
        raise ValueError(f"photo {photo.shape[:2]} and heatmap {heatmap.shape} differ in size")
    # one pass over uint8 data: out = table[c, p] per channel, where the table holds, for every colour
    # index c and photo value p, the float32 result rint((1 - alpha) * p + alpha * colour[c]) clipped:
    # the same float32 operations as the formula, done once per (c, p) instead of once per pixel
    height, width = heatmap.shape
    table = _blend_table(colormap, float(alpha))  # (3, N * 256) uint8
    colours = table.shape[1] // 256
    index_type = np.uint16 if colours <= 256 else np.uint32  # c * 256 + p < 65536 for 256 colours
    out = np.empty(photo.shape, np.uint8)
    rows = max(1, _BLOCK_PIXELS // max(1, width))
    for top in range(0, height, rows):
        base = _colour_index(heatmap[top : top + rows], colours).astype(index_type) << 8
        for channel in range(3):
            index = base + photo[top : top + rows, :, channel]
            out[top : top + rows, :, channel] = np.take(table[channel], index, mode="clip")
    return out


@lru_cache(maxsize=32)
def _blend_table(colormap: str, alpha: float) -> np.ndarray:
    """uint8 (3, N * 256): entry [ch, c * 256 + p] is rint((1 - alpha) * p + alpha * colour[c, ch]),
    clipped to 0-255, computed in float32 exactly as the formula is for each pixel."""
    photo_part = np.arange(256, dtype=np.float32) * np.float32(1.0 - alpha)  # (256,)
    values = photo_part[None, :, None] + _scaled_table(colormap, alpha)[:, None, :]  # (N, 256, 3) float32
    np.rint(values, out=values)
    np.clip(values, 0, 255, out=values)
    return np.ascontiguousarray(values.astype(np.uint8).reshape(-1, 3).T)


_BLOCK_PIXELS = 1 << 20


@lru_cache(maxsize=32)
def _scaled_table(colormap: str, alpha: float) -> np.ndarray:
    """alpha x the colormap's colours, float32 (N, 3)."""
    return np.float32(alpha) * _lookup_table(colormap).astype(np.float32)


def draw_outline(image: np.ndarray, region: np.ndarray, colour=(255, 255, 255)) -> np.ndarray:
    """``image`` uint8 (H, W, 3) with the outline of ``region`` (bool (h, w) on a coarser grid, cell i
    covering rows [i H / h, (i + 1) H / h)) drawn in ``colour``: the region's pixels with a neighbour
    outside it (or on the image's edge). A new array; an empty region draws nothing."""
    height, width = image.shape[:2]
    rows = np.minimum(np.arange(height) * region.shape[0] // height, region.shape[0] - 1)
    cols = np.minimum(np.arange(width) * region.shape[1] // width, region.shape[1] - 1)
    inside = np.asarray(region, bool)[rows[:, None], cols[None, :]]
    padded = np.pad(inside, 1, constant_values=False)
    interior = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    out = image.copy()
    out[inside & ~interior] = colour
    return out
