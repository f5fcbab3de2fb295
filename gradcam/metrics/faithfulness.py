"""Faithfulness scores of a heatmap: deletion and insertion (Petsiuk et al., RISE, 2018) and
average drop (Chattopadhay et al., 2018).

All images here are at the model's input size: float32 (H, W, 3) in [0, 255];
heatmaps are float32 (H, W) in [0, 1].
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..models.preprocess import zero_pixel
from ..names import MEAN_KEYS

__all__ = ["MEAN_KEYS", "Faithfulness", "faithfulness_scores", "pixel_masks", "zero_pixel"]


def _auc(curve: np.ndarray) -> float:
    """Area under a curve sampled at N + 1 evenly spaced points of [0, 1] (trapezoid rule)."""
    steps = len(curve) - 1
    return float((curve[:-1] + curve[1:]).sum() / (2 * steps))


def pixel_masks(heatmap: np.ndarray, steps: int) -> np.ndarray:
    """Masks (steps + 1, H, W) in {0, 1}: mask i covers the first round(i * H * W / steps) pixels
    in order of decreasing heatmap value (ties in row-major order)."""
    height, width = heatmap.shape
    order = np.argsort(-heatmap.ravel(), kind="stable")
    counts = np.rint(np.linspace(0, height * width, steps + 1)).astype(int)
    rank = np.empty(height * width, dtype=np.int64)
    rank[order] = np.arange(height * width)
    return (rank[None, :] < counts[:, None]).reshape(steps + 1, height, width).astype(np.float32)


#: RISE's insertion start: the image blurred by an 11 x 11 Gaussian kernel of sigma 5 (at 224 px).
RISE_BLUR_TAPS, RISE_BLUR_SIGMA = 11, 5.0


def rise_kernel() -> np.ndarray:
    """RISE's 1-D blur kernel (11 taps): its 2-D kernel, a Gaussian filter (sigma 5) of a unit impulse
    on an 11 x 11 grid, is the outer product of this with itself."""
    from scipy import ndimage

    impulse = np.zeros(RISE_BLUR_TAPS)
    impulse[RISE_BLUR_TAPS // 2] = 1.0
    return ndimage.gaussian_filter1d(impulse, RISE_BLUR_SIGMA)


def blurred(image: np.ndarray, zero: np.ndarray | None = None) -> np.ndarray:
    """The insertion start of RISE: the image convolved with :func:`rise_kernel` in both directions,
    padded with ``zero`` (the pixel that is 0 in model space, as RISE pads the model input with 0).

    Args:
        image: float32 (H, W, 3) in [0, 255].
        zero: float32 (3,), default black.
    """
    from scipy import ndimage

    zero = np.zeros(3, np.float32) if zero is None else np.asarray(zero, np.float32)
    kernel = rise_kernel()
    out = np.empty(image.shape, np.float32)
    for channel in range(image.shape[2]):
        plane = ndimage.correlate1d(image[..., channel].astype(np.float64), kernel, axis=0, mode="constant",
                                    cval=float(zero[channel]))
        out[..., channel] = ndimage.correlate1d(plane, kernel, axis=1, mode="constant", cval=float(zero[channel]))
    return out


#: the scores a manifest record carries whose means over a folder are reported


@dataclass
class Faithfulness:
    """Scores of one heatmap.  Curves: probability of the class after each of the N + 1 steps."""

    deletion_curve: np.ndarray
    insertion_curve: np.ndarray
    deletion_auc: float
    insertion_auc: float
    average_drop: float  # percent: max(0, p - p_kept) / p * 100, where only the heatmap's region is kept
    increase: bool  # p_kept > p (the "increase in confidence" of Chattopadhay et al.)

    def as_record(self) -> dict:
        """The manifest's keys: :data:`MEAN_KEYS` and ``increase_in_confidence``."""
        return {**{key: getattr(self, key) for key in MEAN_KEYS}, "increase_in_confidence": self.increase}


def faithfulness_scores(predict, image: np.ndarray, heatmap: np.ndarray, class_index: int, steps: int = 20,
                 zero: np.ndarray | None = None) -> Faithfulness:
    """Deletion and insertion curves (RISE's protocol) and average drop for one image and heatmap.

    Deletion sets pixels, most important first, to ``zero`` (float32 (3,), the pixel that the
    model's preprocessing maps to 0; black when None) in ``steps`` steps of H W / steps pixels;
    insertion reveals them in the same order over :func:`blurred`. With ``steps`` = 224 at
    224 x 224 px this is RISE's protocol exactly (224 pixels a step). Average drop keeps
    ``zero + (image - zero) * heatmap``: the image times the heatmap in model space.
    The probability of ``class_index`` is recorded after each step; all 2 (steps + 1) + 1
    images go through ``predict`` (images (B, H, W, 3) -> probabilities (B, C)) as one batch.
    Deletion's first step is the whole image, so it also gives the full probability.
    """
    image = np.asarray(image, dtype=np.float32)
    zero = np.zeros(3, np.float32) if zero is None else np.asarray(zero, np.float32)
    masks = pixel_masks(heatmap, steps)[..., None]
    start = blurred(image, zero)
    deleted = image[None] * (1.0 - masks) + zero * masks
    inserted = start[None] * (1.0 - masks) + image[None] * masks
    kept = zero + (image - zero) * heatmap[..., None]
    batch = np.concatenate([deleted, inserted, kept[None]])
    probability = np.asarray(predict(batch))[:, class_index]
    n = steps + 1
    deletion, insertion = probability[:n], probability[n : 2 * n]
    full, masked = float(deletion[0]), float(probability[-1])
    drop = max(0.0, full - masked) / full * 100.0 if full > 0 else 0.0
    return Faithfulness(deletion, insertion, _auc(deletion), _auc(insertion), drop, masked > full)
