"""Localisation scores of a heatmap against ground truth: the pointing game (Zhang et al., 2016/2018, with
TorchRay's tolerance), the energy-based pointing game (Wang et al., Score-CAM, 2020), and relevance mass
and relevance rank accuracy (Arras et al., CLEVR-XAI, 2022).

Heatmaps are float (H, W), finite and >= 0 (the tool's are in [0, 1]); truth masks are bool (H, W) of the
same shape, True on the object, with at least one True pixel (a ValueError otherwise: record "no ground
truth" instead of scoring an empty one). Every score is computed in float64 and reads its inputs only.

For a heatmap >= 0 the energy-based pointing game and relevance mass accuracy are the same number (the
heat inside over the heat in all): Score-CAM's name for it with boxes, CLEVR-XAI's with masks (which
counts positive relevance only; a heatmap has no other).
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ["LOCALISATION_KEYS", "energy_pointing_game", "localisation_scores", "pointing_game", "relevance_mass",
           "relevance_rank"]

#: the keys of :func:`localisation_scores`, in the order they are reported
LOCALISATION_KEYS: tuple[str, ...] = ("pointing_game", "energy_pointing_game", "relevance_mass", "relevance_rank")

#: TorchRay's default tolerance (pixels of the photo)
DEFAULT_TOLERANCE = 15.0


def _checked(heatmap: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(float64 (H, W), bool (H, W)) views or copies of the inputs, after the checks of the module."""
    values = np.asarray(heatmap, dtype=np.float64)
    mask = np.asarray(truth)
    if values.ndim != 2 or mask.shape != values.shape:
        raise ValueError(f"the heatmap {values.shape} and the truth {mask.shape} must be two 2-D arrays of one shape")
    if mask.dtype != bool:
        raise ValueError(f"the truth must be a bool array, not {mask.dtype}")
    if not np.isfinite(values).all() or (values < 0).any():
        raise ValueError("the heatmap must be finite and >= 0")
    if not mask.any():
        raise ValueError("the truth has no pixel set: there is nothing to localise")
    return values, mask


def _peak(values: np.ndarray) -> tuple[int, int]:
    """(row, column) of the map's maximum; of several equal maxima the first in row-major order."""
    row, column = np.unravel_index(int(np.argmax(values)), values.shape)
    return int(row), int(column)


def pointing_game(heatmap: np.ndarray, truth: np.ndarray, tolerance: float = DEFAULT_TOLERANCE) -> bool:
    """A hit when a truth pixel (v, u) lies strictly within ``tolerance`` pixels of the map's maximum
    (p0, p1): (v - p0)^2 + (u - p1)^2 < tolerance^2, as TorchRay's PointingGame accepts it (pixel
    centres; ``tolerance`` 0 hits nothing, 1 only the peak's own pixel). The maximum is the first in
    row-major order when several pixels share it, so a flat map points at pixel (0, 0).

    Args:
        heatmap: float (H, W) >= 0, at the photo's size so that the tolerance is in photo pixels.
        truth: bool (H, W).
        tolerance: pixels, finite and >= 0.
    """
    return _pointing(*_checked(heatmap, truth), tolerance)


def _pointing(values: np.ndarray, mask: np.ndarray, tolerance: float) -> bool:
    """:func:`pointing_game` of checked inputs."""
    if not (math.isfinite(tolerance) and tolerance >= 0):
        raise ValueError(f"the tolerance must be a finite number of pixels >= 0, not {tolerance}")
    row, column = _peak(values)
    reach = math.ceil(tolerance)  # no accepted pixel is further than this along either axis
    top, left = max(0, row - reach), max(0, column - reach)
    window = mask[top : row + reach + 1, left : column + reach + 1]
    rows, columns = np.nonzero(window)
    distance2 = (rows + top - row) ** 2 + (columns + left - column) ** 2
    return bool((distance2 < tolerance * tolerance).any())


def _inside_share(values: np.ndarray, mask: np.ndarray) -> float:
    """The map's sum inside the truth over its whole sum; 0 when the map sums to 0."""
    total = float(values.sum())
    return float(values[mask].sum()) / total if total > 0 else 0.0


def energy_pointing_game(heatmap: np.ndarray, truth: np.ndarray) -> float:
    """Score-CAM's energy-based pointing game: the heatmap's sum inside the truth over its sum over the
    whole map, in [0, 1]; 0 when the map is all zeros (no energy, none of it on the object)."""
    return _inside_share(*_checked(heatmap, truth))


def relevance_mass(heatmap: np.ndarray, truth: np.ndarray) -> float:
    """CLEVR-XAI's relevance mass accuracy: relevance inside the truth over the total relevance, in [0, 1];
    0 when the map is all zeros. For a heatmap (>= 0) the same number as :func:`energy_pointing_game`."""
    return _inside_share(*_checked(heatmap, truth))


def relevance_rank(heatmap: np.ndarray, truth: np.ndarray) -> float:
    """CLEVR-XAI's relevance rank accuracy: of the K pixels of highest value, K the number of truth
    pixels, the fraction inside the truth, in [0, 1]. Pixels of equal value rank in row-major order
    (the first first), as a stable sort of the values, largest first, orders them; so of an all-zero
    map the first K pixels in row-major order are taken.

    Computed in O(H W) without sorting: the pixels above the K-th largest value, then of those equal to
    it the first ones in row-major order.
    """
    return _rank(*_checked(heatmap, truth))


def _rank(values: np.ndarray, mask: np.ndarray) -> float:
    """:func:`relevance_rank` of checked inputs."""
    flat, inside = values.ravel(), mask.ravel()
    k = int(inside.sum())
    threshold = np.partition(flat, flat.size - k)[flat.size - k]  # the K-th largest value
    above = flat > threshold
    ties = np.flatnonzero(flat == threshold)[: k - int(above.sum())]
    hits = int((above & inside).sum()) + int(inside[ties].sum())
    return hits / k


def localisation_scores(heatmap: np.ndarray, truth: np.ndarray,
                        tolerance: float = DEFAULT_TOLERANCE) -> dict[str, float]:
    """All four scores, keyed by :data:`LOCALISATION_KEYS`; the pointing game as 1.0 (hit) or 0.0 (miss).

    Args:
        heatmap: float (H, W) >= 0 (the tool's are in [0, 1]) at the photo's size.
        truth: bool (H, W), at least one pixel set.
        tolerance: the pointing game's, in photo pixels.
    """
    values, mask = _checked(heatmap, truth)
    share = _inside_share(values, mask)
    return {
        "pointing_game": 1.0 if _pointing(values, mask, tolerance) else 0.0,
        "energy_pointing_game": share,
        "relevance_mass": share,
        "relevance_rank": _rank(values, mask),
    }
