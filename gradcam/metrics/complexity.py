"""How concentrated a heatmap is: sparseness (the Gini index, Chalasani et al., 2020) and complexity (the
entropy of the map's shares, Bhatt et al., 2020), as Quantus' ``Sparseness`` and ``Complexity``.

Both read the map's absolute values and neither depends on its scale (Quantus divides by the maximum
first; that changes nothing here). A higher sparseness and a lower complexity mean a more concentrated
map. Computed in float64 without Quantus' small constants (1e-7 added before the Gini index, 1e-12
inside the logarithm), so a map that is zero except for k of N pixels gives exactly (N - k) / N and
log(k).

A map that is zero everywhere has no shares (0 / 0). It is scored as the limit of a constant map, the
least concentrated there is: sparseness 0.0 and complexity log(N). This is also what Quantus'
``Sparseness`` returns for it (its 1e-7 makes the map constant); its ``Complexity`` returns NaN there.
Neither function ever returns NaN.
"""
from __future__ import annotations

import numpy as np

from ..errors import HeatmapError
from ..explainers.heatmap import check_finite

__all__ = ["complexity", "sparseness"]


def _magnitudes(heatmap: np.ndarray) -> np.ndarray:
    """|heatmap| / max |heatmap| as float64 (N,), flattened (zeros stay zeros), so that no sum over the
    map overflows or underflows; refuses an empty or non-finite map (HeatmapError)."""
    values = np.asarray(heatmap, dtype=np.float64)
    check_finite(values)
    if values.size == 0:
        raise HeatmapError("the heatmap is empty: sparseness and complexity need at least one pixel")
    values = np.abs(values).ravel()
    peak = values.max()
    return values / peak if peak > 0 else values


def sparseness(heatmap: np.ndarray) -> float:
    """The Gini index of ``|heatmap|``: sum_k (2k - N - 1) a_(k) / (N sum_k a_(k)), a_(1) <= ... <= a_(N).

    Args:
        heatmap: float array of any shape (usually (H, W) in [0, 1]); not modified.

    Returns:
        A float in [0, (N - 1) / N]: 0 for a constant map (and for an all-zero one, see the module's
        note), (N - 1) / N when one pixel holds everything.

    Raises:
        HeatmapError: the map is empty or has NaN or infinite values.
    """
    values = np.sort(_magnitudes(heatmap))
    total = values.sum()
    if not total > 0:
        return 0.0
    count = values.size
    rank = np.arange(1, count + 1, dtype=np.float64)
    return float(((2.0 * rank - count - 1.0) * values).sum() / (count * total))


def complexity(heatmap: np.ndarray) -> float:
    """The entropy, in nats, of the shares p = |a| / sum |a| of the map: -sum p log p (0 log 0 = 0).

    Args:
        heatmap: float array of any shape (usually (H, W) in [0, 1]); not modified.

    Returns:
        A float in [0, log N]: 0 when one pixel holds everything, log N for a constant map (and for an
        all-zero one, see the module's note).

    Raises:
        HeatmapError: the map is empty or has NaN or infinite values.
    """
    values = _magnitudes(heatmap)
    total = values.sum()
    if not total > 0:
        return float(np.log(values.size))
    shares = values[values > 0] / total
    return float(max(0.0, -(shares * np.log(shares)).sum()))
