"""Cost estimates of explaining one image: forward passes, and seconds from one timed batch."""
from __future__ import annotations

import time
from typing import Callable

import numpy as np

from ..models.layers import LayerInfo


def passes_per_image(channels: int, max_channels: int | None, perturbation: bool, aug_smooth: bool) -> int:
    """Forward passes one image costs: 1, or the channels used (of the layer's ``channels``) + 1 for
    Score-CAM/Ablation-CAM; x6 with aug-smooth."""
    passes = min(channels, max_channels or channels) + 1 if perturbation else 1
    return passes * (6 if aug_smooth else 1)


def seconds_per_pass(predict: Callable[..., np.ndarray], batch_size: int, input_size: tuple[int, ...]) -> float:
    """Seconds of one image's forward pass: one batch of ``batch_size`` black photos (H, W, 3) timed
    after a first, traced one."""
    images = np.zeros((batch_size, *input_size, 3), np.float32)
    predict(images, batch_size=batch_size)  # trace
    start = time.perf_counter()
    predict(images, batch_size=batch_size)
    return (time.perf_counter() - start) / len(images)


class CostEstimates:
    """Mixin: what explaining one image costs. The class it is mixed into provides ``predict`` (photos ->
    probabilities), ``batch_size``, ``input_size``, ``target`` (the explained layer), ``max_channels``,
    ``perturbation`` (Score-CAM/Ablation-CAM) and ``aug_smooth``."""

    predict: Callable[..., np.ndarray]
    batch_size: int
    input_size: tuple[int, ...]
    target: LayerInfo
    max_channels: int | None
    perturbation: bool
    aug_smooth: bool

    def seconds_per_image(self) -> float:
        """Estimated seconds to explain one image: one timed batch of forward passes (after a traced
        one) times :meth:`passes_per_image`."""
        return seconds_per_pass(self.predict, self.batch_size, self.input_size) * self.passes_per_image()

    def passes_per_image(self) -> int:
        """Forward passes one image costs: 1, or the channels used for Score-CAM/Ablation-CAM; x6 with aug-smooth."""
        return passes_per_image(int(self.target.output_shape[-1]), self.max_channels, self.perturbation,
                                self.aug_smooth)
