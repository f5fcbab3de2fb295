"""What explaining a batch returns: :class:`BatchResult` (NumPy arrays, no TensorFlow)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class BatchResult:
    """What one compiled step returns, as NumPy, for B images and K ranks (``top_k``).

    ranked_cams: float32 (B, K, h, w), >= 0, not normalised.
    ranked_class_index: int (B, K) the explained classes of each image.
    probabilities: float32 (B, C) the model's probabilities (see ScoreHead).
    negative_activations: the explained layer's activations had negative values for some image.
    regions: segmentation models: bool (B, K, h, w) the region of each explained class, else None.

    ``cams``, ``class_index`` and ``probability`` give the first rank: (B, h, w), (B,), (B,).
    """

    ranked_cams: np.ndarray
    ranked_class_index: np.ndarray
    probabilities: np.ndarray
    negative_activations: bool = False
    regions: np.ndarray | None = None

    @property
    def cams(self) -> np.ndarray:
        return self.ranked_cams[:, 0]

    @property
    def class_index(self) -> np.ndarray:
        return self.ranked_class_index[:, 0]

    @property
    def ranked_probability(self) -> np.ndarray:
        """float32 (B, K) probability of each explained class."""
        return np.take_along_axis(self.probabilities, self.ranked_class_index, axis=1)

    @property
    def probability(self) -> np.ndarray:
        """float32 (B,) probability of each image's (first) explained class."""
        return self.ranked_probability[:, 0]
