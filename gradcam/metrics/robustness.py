"""How much a heatmap moves when the photo barely does: max-sensitivity (Yeh et al., 2019, "On the
(In)fidelity and Sensitivity of Explanations"), as Quantus' ``MaxSensitivity``.

    max over s of  || map(x + noise_s) - map(x) ||_F / || map(x) ||_F

where each noise_s is drawn uniformly from [-radius, radius) for every pixel and channel, and every noisy
copy is explained for the same class as x. 0: the map did not move; 1: it moved as far as its own size.

Scale: images are float32 (H, W, 3) in [0, 255], and so is ``radius``. Quantus' default bound, 0.2, is
in the units of the model input Quantus is handed, which for an ImageNet model is usually standardised
((x / 255 - mean) / std, the std of the three channels about 0.226): 0.2 there is 0.2 * 0.226 * 255 =
11.5 grey levels, this module's default. (On inputs scaled to [0, 1] the same 0.2 would be 51 grey
levels, a fifth of the range: no longer a small change.) As in Quantus, noisy pixels are not clipped
to [0, 255].

The maps are compared as the ``explain`` callable returns them; Quantus' ``MaxSensitivity`` also
compares the explanations as they are (``normalise=False`` and ``abs=False`` by default). With
:func:`explainer_heatmaps` they are the tool's heatmaps, min-max normalised to [0, 1] at the input size
(the maps it writes), and ``heatmap`` should be the map of x made the same way.

Quantus draws 200 samples by default (its README's example uses 10). Each sample is a forward and
backward pass (more for Score-CAM, Ablation-CAM and aug-smooth), so the default here is 10: the
estimate of the maximum grows with the samples, so compare scores only at the same ``samples`` and
``radius``.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np

from ..errors import HeatmapError, UsageError
from ..explainers.heatmap import check_finite, heatmap_at

__all__ = ["DEFAULT_RADIUS", "DEFAULT_SAMPLES", "Explain", "explainer_heatmaps", "max_sensitivity", "noisy_copies"]

#: the noise bound in grey levels (of 0-255): Quantus' 0.2 on ImageNet-standardised inputs (see above)
DEFAULT_RADIUS = 11.5
#: noisy copies per image, explained as one batch
DEFAULT_SAMPLES = 10

#: images float32 (N, H, W, 3) in [0, 255] and one class index -> heatmaps (N, H, W)
Explain = Callable[[np.ndarray, int], np.ndarray]


def noisy_copies(image: np.ndarray, radius: float, samples: int, seed: int) -> np.ndarray:
    """``samples`` copies of ``image`` (H, W, 3), each pixel and channel plus its own noise drawn
    uniformly from [-radius, radius) (NumPy's default generator seeded with ``seed``): float32
    (samples, H, W, 3), not clipped. ``image`` is not modified."""
    pixels = np.asarray(image, dtype=np.float64)
    noise = np.random.default_rng(seed).uniform(-radius, radius, size=(samples, *pixels.shape))
    return (pixels[None] + noise).astype(np.float32)


def _check(radius: float, samples: int) -> None:
    if isinstance(samples, bool) or not isinstance(samples, (int, np.integer)) or samples < 1:
        raise UsageError(f"max-sensitivity needs at least one noisy sample, not {samples!r}")
    if not (isinstance(radius, (int, float, np.number)) and math.isfinite(radius) and radius >= 0):
        raise UsageError(f"the noise radius must be a finite number >= 0 (grey levels), not {radius!r}")


def max_sensitivity(explain: Explain, image: np.ndarray, heatmap: np.ndarray, class_index: int,
                    radius: float = DEFAULT_RADIUS, samples: int = DEFAULT_SAMPLES, seed: int = 0) -> float:
    """Max-sensitivity of one heatmap (see the module's note for the formula and the scale).

    Args:
        explain: images float32 (N, H, W, 3) in [0, 255], class index -> heatmaps (N, H, W), such as
            :func:`explainer_heatmaps`; called once, with all ``samples`` noisy copies as one batch.
        image: float (H, W, 3), values 0-255, at the model's input size; not modified.
        heatmap: float (H, W), the map of ``image`` for ``class_index``, made as ``explain`` makes them.
        class_index: the class every noisy copy is explained for.
        radius: noise bound in grey levels (0-255 scale), default 11.5 (Quantus' 0.2, see above).
        samples: noisy copies, default 10.
        seed: seeds the noise; the same arguments give the same score.

    Returns:
        A float >= 0 (at most 1 + max ||map(x')|| / ||map(x)||).

    Raises:
        HeatmapError: ``heatmap`` is zero everywhere (its norm is 0: the score is undefined, record it
            as missing), or a map is not finite or not (H, W).
        UsageError: ``samples`` < 1, or ``radius`` negative or not finite.
    """
    _check(radius, samples)
    reference = np.asarray(heatmap, dtype=np.float64)
    check_finite(reference)
    size = np.shape(image)[:2]
    if reference.shape != size:
        raise HeatmapError(f"the heatmap is {reference.shape}, not the image's size {size}")
    norm = float(np.sqrt((reference * reference).sum()))
    if not norm > 0:
        raise HeatmapError("max-sensitivity is undefined for a heatmap that is zero everywhere (its norm is 0)")
    maps = np.asarray(explain(noisy_copies(image, radius, samples, seed), class_index), dtype=np.float64)
    if maps.shape != (samples, *size):
        raise HeatmapError(f"the explain function returned maps of shape {maps.shape}, not {(samples, *size)}")
    check_finite(maps)
    change = maps - reference[None]
    return float(np.sqrt((change * change).sum(axis=(1, 2))).max() / norm)


def explainer_heatmaps(explainer) -> Explain:
    """The ``explain`` callable of :func:`max_sensitivity` for a :class:`gradcam.explainers.Explainer`:
    one :meth:`~gradcam.explainers.Explainer.explain_batch` call for the whole batch, every image for
    the same class, each map through :func:`~gradcam.explainers.heatmap.heatmap_at` to the images' size:
    float32 (N, H, W) in [0, 1] (a constant map becomes zeros). For a classifier's 2-D photos."""

    def explain(images: np.ndarray, class_index: int) -> np.ndarray:
        images = np.asarray(images, dtype=np.float32)
        cams = explainer.explain_batch(images, int(class_index)).cams
        size = images.shape[1:3]
        return np.stack([heatmap_at(cam, size)[0] for cam in cams]).astype(np.float32, copy=False)

    return explain
