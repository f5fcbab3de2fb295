"""Score-CAM and Ablation-CAM: channel weights from the class score of perturbed inputs.

Both take one forward pass for the activations and the classes, then about one more per
channel. The model side is a narrow interface, :class:`PerturbedModel`, which the
:class:`~gradcam.cam.Explainer` provides with its compiled steps; this module holds the
weights' arithmetic and never reaches into the Explainer.

* Score-CAM (Wang et al., 2020): each channel's map, upsampled to the input (bilinear,
  pixel centres) and scaled min-max to [0, 1], masks the model's input (in the model's
  input space, after preprocessing, as tf-keras-vis and pytorch-grad-cam do); the channel's
  weight is the class probability (softmax of the pre-softmax scores) of the masked input.
  ``max_channels`` N keeps the N channels of largest activation standard deviation over
  positions (Faster Score-CAM, tf-keras-vis ``max_N``).
* Ablation-CAM (Desai & Ramaswamy, 2020): w_k = (y^c - y^c_k) / |y^c|, the relative drop of
  the pre-softmax class score when channel k of the layer is zeroed (0 where y^c = 0). The paper
  divides by y^c, which it takes to be positive; |y^c| keeps the sign of the drop for negative
  scores too (top-k ranks below 1, unlikely classes, class 0 of a sigmoid output).

Either map is ReLU(sum_k w_k A^k) over the channels used (or their first principal
component with eigen-smooth).
"""
from __future__ import annotations

from typing import Callable, Protocol

import numpy as np

from .._tf import import_tf
from .methods import channel_weighted_map
from .results import BatchResult


class PerturbedModel(Protocol):
    """What the perturbation methods need from a model (the Explainer provides it)."""

    def features(self, batch: np.ndarray, classes: np.ndarray) -> tuple[np.ndarray, ...]:
        """Forward pass of photos float32 (B, H, W, 3) 0-255 for classes int32 (B, K) (-1: ranked):
        activations (B, h, w, n), chosen classes (B, K), probabilities (B, C), scores (B, C)."""

    def masked_probabilities(self, image: np.ndarray, maps: np.ndarray) -> np.ndarray:
        """Probabilities (n, C) of one photo (H, W, 3) masked, in model space, by each of ``maps``
        (n, h, w) upsampled to the input and scaled min-max."""

    def ablated_scores(self, images: np.ndarray, scale: np.ndarray) -> np.ndarray:
        """Pre-softmax scores (n, C) of photos (n, H, W, 3) with the layer's channels multiplied by
        ``scale`` (n, channels), image i by row i."""


def perturbation_maps(model: PerturbedModel, method: str, batch: np.ndarray, classes: np.ndarray,
                      max_channels: int | None = None, eigen_smooth: bool = False, batch_size: int = 8,
                      on_progress: Callable[[int, int], None] | None = None) -> BatchResult:
    """Maps (B, K, h, w) for ``method`` ('scorecam' or 'ablationcam').

    Args:
        batch: float32 (B, H, W, 3) photos at the input size, 0-255.
        classes: int32 (B, K): classes, or -1 for the ranked ones.
        batch_size: perturbed inputs per forward pass.
        on_progress: called with (done, total) channels after each forward pass.
    """
    tf, _ = import_tf()
    activations, chosen, probabilities, scores = model.features(batch, classes)
    weigh = _scorecam_weights if method == "scorecam" else _ablation_weights
    cams = np.zeros((len(batch), chosen.shape[1]) + activations.shape[1:3], np.float32)
    for i in range(len(batch)):
        channels = select_channels(activations[i], max_channels)
        weights = np.empty((chosen.shape[1], len(channels)), np.float32)  # (K ranks, n channels)
        for start, end in _batches(len(channels), batch_size):
            weights[:, start:end] = weigh(model, batch[i], activations[i], channels[start:end], chosen[i], scores[i])
            if on_progress is not None:
                on_progress(end, len(channels))
        used = tf.constant(activations[i][None, :, :, channels])
        for k in range(chosen.shape[1]):
            cams[i, k] = channel_weighted_map(used, tf.constant(weights[k][None]), eigen_smooth).numpy()[0]
    return BatchResult(cams, chosen, probabilities, bool((activations < 0).any()))


def select_channels(activations: np.ndarray, max_channels: int | None) -> np.ndarray:
    """Indices of the channels to use: all, or the ``max_channels`` of largest standard deviation
    over positions (largest first, as ``tf.math.top_k`` orders them)."""
    count = activations.shape[-1]
    if max_channels is None or max_channels >= count:
        return np.arange(count)
    tf, _ = import_tf()
    spread = tf.math.reduce_std(tf.constant(activations), axis=(0, 1))
    return tf.math.top_k(spread, k=max_channels).indices.numpy()


def _batches(total: int, size: int):
    for start in range(0, total, max(1, size)):
        yield start, min(total, start + size)


def _scorecam_weights(model, image, activations, channels, chosen, scores) -> np.ndarray:
    """(K ranks, n channels): probability of each rank's class for the input masked by each channel."""
    maps = np.ascontiguousarray(np.moveaxis(activations[:, :, channels], -1, 0))  # (n, h, w)
    return np.asarray(model.masked_probabilities(image, maps))[:, chosen].T


def _ablation_weights(model, image, activations, channels, chosen, scores) -> np.ndarray:
    """(K ranks, n channels): relative drop of each rank's class score with each channel zeroed."""
    count = activations.shape[-1]
    scale = np.ones((len(channels), count), np.float32)
    scale[np.arange(len(channels)), channels] = 0.0
    ablated = np.asarray(model.ablated_scores(np.repeat(image[None], len(channels), axis=0), scale))
    original = scores[chosen].astype(np.float64)[:, None]  # (K, 1)
    drop = original - ablated[:, chosen].T.astype(np.float64)
    return np.divide(drop, np.abs(original), out=np.zeros_like(drop), where=original != 0)
