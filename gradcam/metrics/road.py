"""ROAD, RemOve And Debias (Rong et al., ICML 2022, "A Consistent and Efficient Evaluation Strategy
for Attribution Methods"): pixels are removed in the heatmap's order, most relevant first (MoRF) or
least relevant first (LeRF), at several percentiles, and filled by noisy linear imputation, so that
the shape of the removed region leaks as little as possible into the model's answer.

The arithmetic follows pytorch-grad-cam (``pytorch_grad_cam/metrics/road.py`` and
``perturbation_confidence.py``, taken from the authors' ``road_evaluation``):

- imputation: every removed pixel is the weighted mean of its in-image 8 neighbours (1/6 for the
  4 edge neighbours, 1/12 for the 4 diagonal ones), removed neighbours being unknowns too: one sparse
  linear system per image (:mod:`.road_solver`: sparse LU, or multigrid-preconditioned conjugate gradients
  compiled by numba to a relative residual of 1e-10, within ~1e-7 grey levels of LU), then Gaussian noise
  on the removed pixels only;
- percentile p: MoRF removes the pixels whose heatmap value is >= the p-th percentile of the heatmap
  (``np.percentile``, linear), about (100 - p) % of them; LeRF the same on 1 - heatmap;
- scores: the class's output on each imputed image minus its output on the original; the MoRF and
  LeRF averages are the means of those over the percentiles, and combined = (LeRF - MoRF) / 2
  (higher is better). Here the output is the class's probability (``predict`` gives softmax).

Two choices differ from pytorch-grad-cam, both towards the authors' own code:

- noise: pytorch-grad-cam adds noise of std 0.01 to the *normalised* model input, so its size in
  pixels depends on each model's preprocessing; ``road_evaluation`` imputes images in [0, 1] before
  normalising. We impute [0, 255] pixels before the preprocessing, with std 0.01 x 255 = 2.55 (the
  authors' scale). The weighted mean commutes with any per-channel affine preprocessing, so without
  noise both ways give the same model input.
- ties (``ties="random"``, the default): pixels of equal value at a threshold are drawn at random
  (seeded), so each percentile removes as many pixels as pytorch-grad-cam removes from a map without
  ties, as ``road_evaluation`` does with its 1e-4 jitter. pytorch-grad-cam removes every tied
  pixel, so a Grad-CAM map with zeros on over 10 % of the image loses *all* its pixels at MoRF 10 %;
  ``ties="threshold"`` reproduces that exactly. Maps without ties get the same masks either way.

All images are float32 (H, W, 3) in [0, 255] at the model's input size; heatmaps float32 (H, W) in [0, 1].
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import HeatmapError, UsageError
from . import road_solver

__all__ = ["DEFAULT_NOISE", "DEFAULT_PERCENTILES", "IMPUTATION", "NEIGHBOUR_WEIGHTS", "Road", "noisy_linear_impute",
           "road_masks", "road_scores", "road_settings"]

#: (row offset, column offset, weight) of each neighbour in the imputation (ROAD's ``neighbors_weights``)
NEIGHBOUR_WEIGHTS: tuple[tuple[int, int, float], ...] = (
    (-1, -1, 1 / 12), (-1, 0, 1 / 6), (-1, 1, 1 / 12), (0, -1, 1 / 6),
    (0, 1, 1 / 6), (1, -1, 1 / 12), (1, 0, 1 / 6), (1, 1, 1 / 12),
)
#: pytorch-grad-cam's default percentiles (ROADCombined, ROAD*Average)
DEFAULT_PERCENTILES: tuple[int, ...] = (10, 20, 30, 40, 50, 60, 70, 80, 90)
#: std of the imputation noise in [0, 255] pixels: ROAD's 0.01 on images in [0, 1]
DEFAULT_NOISE = 2.55
TIES = ("random", "threshold")
#: how removed pixels are filled, for the run's settings
IMPUTATION = "noisy linear (Rong et al. 2022): weighted mean of the 8 neighbours, 1/6 edge and 1/12 diagonal"


def _check_image(image: np.ndarray, removed: np.ndarray) -> None:
    if image.ndim != 3 or removed.shape != image.shape[:2]:
        raise UsageError(f"imputation needs an image (H, W, C) and a mask (H, W): got {image.shape} and "
                         f"{removed.shape}")


def noisy_linear_impute(image: np.ndarray, removed: np.ndarray, noise: float = 0.0,
                        rng: np.random.Generator | None = None, fill: np.ndarray | None = None) -> np.ndarray:
    """ROAD's noisy linear imputation of one image; the inputs are not modified.

    Args:
        image: float32 (H, W, C).
        removed: bool (H, W), True where the pixel is imputed.
        noise: std of the Gaussian noise added to each imputed value (image units); 0: none.
        rng: the noise's generator (needed when ``noise`` > 0).
        fill: float32 (C,), the imputed value when no pixel is kept (the system has no boundary);
            default 0, what pytorch-grad-cam's solver returns there (its 0 is the normalised input's).

    Returns:
        float32 (H, W, C): kept pixels as they were, each removed one the weighted mean of its
        in-image neighbours (:data:`NEIGHBOUR_WEIGHTS`) plus noise.
    """
    image = np.asarray(image, np.float32)
    removed = np.asarray(removed, bool)
    _check_image(image, removed)
    if noise < 0 or not np.isfinite(noise):
        raise UsageError(f"the imputation noise must be a finite number >= 0, not {noise}")
    out = image.copy()
    where = np.flatnonzero(removed)
    if len(where) == 0:
        return out
    channels = image.shape[2]
    if len(where) == removed.size:
        values = np.broadcast_to(np.zeros(channels) if fill is None else np.asarray(fill, np.float64),
                                 (len(where), channels))
    else:
        values = road_solver.solve(*road_solver.system(image, removed, NEIGHBOUR_WEIGHTS), removed)
    if noise > 0:
        if rng is None:
            raise UsageError("noisy imputation needs a random generator (rng)")
        values = values + noise * rng.standard_normal(values.shape)
    out.reshape(-1, channels)[where] = values
    return out


def _percentiles(percentiles) -> np.ndarray:
    values = np.asarray(percentiles, np.float64).reshape(-1)
    if values.size == 0 or not np.all((values >= 0) & (values <= 100)):
        raise UsageError(f"ROAD percentiles must be numbers in [0, 100], not {list(np.asarray(percentiles).ravel())}")
    return values


def road_masks(heatmap: np.ndarray, percentiles=DEFAULT_PERCENTILES, most_relevant_first: bool = True,
               ties: str = "random", rng: np.random.Generator | None = None) -> np.ndarray:
    """The pixels ROAD removes at each percentile: bool (P, H, W), True = removed.

    The order key is the heatmap (MoRF) or float32 1 - heatmap (LeRF); at percentile p the pixels whose
    key is >= ``np.percentile(key, p)`` are removed (pytorch-grad-cam's rule). ``ties="threshold"``:
    exactly that, every pixel tied at the threshold removed. ``ties="random"``: the same rule on the
    pixels' ranks (0 .. N - 1, equal keys ordered at random by ``rng``, default seed 0): always
    N - ceil(p (N - 1) / 100) of the N = H W pixels, what either rule removes from a map without ties.
    """
    heatmap = np.asarray(heatmap, np.float32)
    if heatmap.ndim != 2:
        raise UsageError(f"ROAD needs a heatmap (H, W), not shape {heatmap.shape}")
    if not np.all(np.isfinite(heatmap)):
        raise HeatmapError("ROAD needs a finite heatmap: this one has NaN or infinite values")
    if ties not in TIES:
        raise UsageError(f"ties must be one of {', '.join(TIES)}, not {ties!r}")
    points = _percentiles(percentiles)
    key = (heatmap if most_relevant_first else np.float32(1.0) - heatmap).ravel()
    if ties == "random":
        rng = np.random.default_rng(0) if rng is None else rng
        order = np.lexsort((rng.random(key.size), key))
        key = np.empty(key.size, np.int64)
        key[order] = np.arange(key.size)
    thresholds = np.atleast_1d(np.percentile(key, points))
    return (key[None, :] >= thresholds[:, None]).reshape(len(points), *heatmap.shape)


@dataclass
class Road:
    """ROAD scores of one heatmap. Curves: the class's probability after imputation at each percentile."""

    percentiles: np.ndarray  # float64 (P,)
    probability: float  # the class's probability on the original image
    morf: np.ndarray  # float32 (P,): most relevant first removed
    lerf: np.ndarray  # float32 (P,): least relevant first removed
    morf_average: float  # mean of morf - probability (pytorch-grad-cam's ROADMostRelevantFirstAverage)
    lerf_average: float  # mean of lerf - probability (ROADLeastRelevantFirstAverage)
    combined: float  # (lerf_average - morf_average) / 2 (ROADCombined): higher is better

    def as_record(self) -> dict:
        """The manifest's keys, JSON-able."""
        return {"road_percentiles": [float(p) for p in self.percentiles],
                "road_probability": float(self.probability),
                "road_morf": [float(v) for v in self.morf], "road_lerf": [float(v) for v in self.lerf],
                "road_morf_average": float(self.morf_average), "road_lerf_average": float(self.lerf_average),
                "road_combined": float(self.combined)}


def road_settings(percentiles=DEFAULT_PERCENTILES, noise: float = DEFAULT_NOISE, seed: int = 0,
                  ties: str = "random") -> dict:
    """What a run records about its ROAD scores (JSON-able): the imputation, the noise's std in [0, 255]
    pixels, how ties are broken, the seed and the percentiles."""
    return {"road_imputation": IMPUTATION, "road_noise": float(noise), "road_ties": ties, "road_seed": int(seed),
            "road_percentiles": [float(p) for p in _percentiles(percentiles)]}


def road_scores(predict, image: np.ndarray, heatmap: np.ndarray, class_index: int, percentiles=DEFAULT_PERCENTILES,
                noise: float = DEFAULT_NOISE, seed: int = 0, ties: str = "random",
                zero: np.ndarray | None = None) -> Road:
    """ROAD's MoRF and LeRF curves and combined score for one image and heatmap.

    Args:
        predict: images float32 (B, H, W, 3) in [0, 255] -> probabilities (B, C); called once, with
            the 2 P imputed images (MoRF then LeRF, in the order of ``percentiles``) and the original.
        image: float32 (H, W, 3) in [0, 255]; heatmap: float32 (H, W) in [0, 1], same H and W.
        class_index: the class whose probability is scored.
        noise: std of the imputation noise in [0, 255] pixels (default: ROAD's 0.01 of the range).
        seed: draws the tie order of the masks and the noise: the scores are the same for a seed.
        ties: "random" or "threshold" (:func:`road_masks`).
        zero: float32 (3,), the pixel the model's preprocessing maps to 0: a mask that removes every
            pixel fills it with this (pytorch-grad-cam's solver gives 0 in model space); default black.
    """
    image = np.asarray(image, np.float32)
    heatmap = np.asarray(heatmap, np.float32)
    if image.ndim != 3 or image.shape[:2] != heatmap.shape:
        raise UsageError(f"ROAD needs an image (H, W, 3) and a heatmap (H, W) of the same size: got {image.shape} "
                         f"and {heatmap.shape}")
    rng = np.random.default_rng(seed)
    points = _percentiles(percentiles)
    masks = np.concatenate([road_masks(heatmap, points, most_relevant_first, ties, rng)
                            for most_relevant_first in (True, False)])
    fill = np.zeros(image.shape[2], np.float32) if zero is None else np.asarray(zero, np.float32)
    batch = np.stack([*(noisy_linear_impute(image, mask, noise, rng, fill) for mask in masks), image])
    probability = np.asarray(predict(batch), np.float32)[:, class_index]
    count = len(points)
    morf, lerf, full = probability[:count], probability[count : 2 * count], float(probability[-1])
    morf_average = float(np.mean(morf.astype(np.float64) - full))
    lerf_average = float(np.mean(lerf.astype(np.float64) - full))
    return Road(points, full, morf, lerf, morf_average, lerf_average, (lerf_average - morf_average) / 2)
