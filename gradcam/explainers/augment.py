"""aug-smooth: the mean of the maps over horizontal flip x brightness 1.0/1.1/0.9 (pytorch-grad-cam's
``aug_smooth``), NumPy around any function that explains a batch for given classes."""
from __future__ import annotations

from typing import Callable

import numpy as np

from .heatmap import normalize_maps
from .results import BatchResult

#: the augmentations after the plain image: (horizontal flip, brightness)
AUGMENTATIONS: tuple[tuple[bool, float], ...] = tuple(
    (flip, brightness) for flip in (False, True) for brightness in (1.0, 1.1, 0.9) if flip or brightness != 1.0)


def aug_smooth(maps: Callable[[np.ndarray, np.ndarray], BatchResult], batch: np.ndarray,
               plain: BatchResult) -> BatchResult:
    """The mean of the maps over horizontal flip x brightness 1.0/1.1/0.9, each map scaled min-max to
    [0, 1] (as pytorch-grad-cam does, so no augmentation outweighs another by its brightness) and
    brought back to the original frame, all for the classes found on the original images. Constant
    maps count as zeros.

    Args:
        maps: explains photos float32 (B, H, W, 3) for classes int32 (B, K).
        batch: the photos float32 (B, H, W, 3), 0-255; not modified.
        plain: ``maps`` of the photos themselves.
    """
    total = normalize_maps(plain.ranked_cams)
    negative = plain.negative_activations
    for flip, brightness in AUGMENTATIONS:
        augmented = np.clip((batch[:, :, ::-1] if flip else batch) * np.float32(brightness), 0, 255)
        result = maps(np.ascontiguousarray(augmented), plain.ranked_class_index)
        cams = normalize_maps(result.ranked_cams)
        total += cams[..., ::-1] if flip else cams
        negative = negative or result.negative_activations
    return BatchResult((total / 6).astype(np.float32), plain.ranked_class_index, plain.probabilities, negative)
