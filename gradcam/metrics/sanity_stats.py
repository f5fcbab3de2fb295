"""Statistics of the model-randomisation test: the mean rank correlation over images and random
draws, its bootstrap confidence interval, the verdict the interval allows, and a rough count of the
images a verdict would need.

The correlations of one step form a (draws, images) table: every random draw re-initialises the
same layers for all images, so draws and images are crossed, and both vary from one run to another.
"""
from __future__ import annotations

import numpy as np

#: the test passes when, with every layer random, the rank correlation is below this
THRESHOLD = 0.5
#: a verdict needs at least this many images whose original heatmap is not constant: below it the
#: bootstrap interval is bounded by the few values seen and covers the mean far less often than it says
#: (about 77% instead of 95% with 3 images, in simulations of normal data)
MIN_IMAGES = 5
CONFIDENCE = 0.95
RESAMPLES = 10_000
#: at most this many (resample, image) count cells are held at once
_CHUNK_CELLS = 2_000_000


def expanded_tail(images: int, confidence: float = CONFIDENCE) -> float:
    """The lower percentile (a fraction) of Hesterberg's expanded percentile interval (*What teachers
    should know about the bootstrap*, The American Statistician, 2015): Phi(sqrt(n/(n-1)) t_{a/2, n-1})
    with a = 1 - confidence, for n >= 2 images. It widens the plain percentile interval, too narrow for
    few images, to about the width of Student's t interval (0.0010 for n = 5, 0.016 for n = 20; the plain
    interval's 0.025 as n grows)."""
    from scipy import stats

    if images < 2:
        raise ValueError(f"an interval needs at least 2 images, not {images}")
    alpha = 1.0 - confidence
    return float(stats.norm.cdf(np.sqrt(images / (images - 1)) * stats.t.ppf(alpha / 2, images - 1)))


def _counts(indices: np.ndarray, size: int) -> np.ndarray:
    """How often each of ``size`` items is drawn in each row of ``indices`` int (B, k): float (B, size)."""
    rows = len(indices)
    flat = (indices + size * np.arange(rows)[:, None]).ravel()
    return np.bincount(flat, minlength=rows * size).reshape(rows, size).astype(np.float64)


def resampled_means(correlations: np.ndarray, seed: int, resamples: int = RESAMPLES) -> np.ndarray:
    """Bootstrap means of each step's (draws, images) table.

    Each resample draws ``images`` images and ``draws`` random draws with replacement, independently
    (the pigeonhole bootstrap for a crossed design, Owen, *The pigeonhole bootstrap*, Ann. Appl. Stat.
    2007), and averages the table's chosen cells; the same resamples serve every step. The random
    numbers: ``np.random.default_rng(seed)`` draws first all image indices, int (resamples, images),
    then all draw indices, int (resamples, draws).

    Args:
        correlations: float (steps, draws, images).

    Returns:
        float64 (steps, resamples).
    """
    table = np.asarray(correlations, dtype=np.float64)
    steps, draws, images = table.shape
    rng = np.random.default_rng(seed)
    image_indices = rng.integers(0, images, (resamples, images))
    draw_indices = rng.integers(0, draws, (resamples, draws))
    by_image = table.transpose(2, 0, 1).reshape(images, steps * draws)
    means = np.empty((steps, resamples))
    chunk = max(1, _CHUNK_CELLS // max(images, draws, steps * draws))
    for start in range(0, resamples, chunk):
        part = slice(start, start + chunk)
        image_counts = _counts(image_indices[part], images)  # (b, images)
        draw_counts = _counts(draw_indices[part], draws)  # (b, draws)
        sums = (image_counts @ by_image).reshape(-1, steps, draws)  # over the chosen images, per draw
        means[:, part] = np.einsum("bsd,bd->sb", sums, draw_counts) / (images * draws)
    return means


def bootstrap_intervals(correlations: np.ndarray, seed: int, resamples: int = RESAMPLES,
                        confidence: float = CONFIDENCE) -> np.ndarray:
    """Confidence intervals of each step's mean correlation over images and draws: the percentiles of
    :func:`resampled_means` at :func:`expanded_tail` and its complement (NumPy's linear interpolation).

    Args:
        correlations: float (steps, draws, images).

    Returns:
        float64 (steps, 2): lower and upper bounds; NaN when there are fewer than 2 images.
    """
    table = np.asarray(correlations, dtype=np.float64)
    if table.shape[2] < 2:
        return np.full((table.shape[0], 2), np.nan)
    tail = expanded_tail(table.shape[2], confidence)
    return np.quantile(resampled_means(table, seed, resamples), [tail, 1.0 - tail], axis=1).T


def decide(interval: tuple[float, float] | None, images: int, threshold: float = THRESHOLD,
           min_images: int = MIN_IMAGES) -> bool | None:
    """True (PASS) when the whole interval is below ``threshold``, False (FAIL) when none of it is,
    None (no verdict) when it contains the threshold, is missing, or ``images`` < ``min_images``."""
    if interval is None or images < min_images or not np.all(np.isfinite(interval)):
        return None
    low, high = interval
    if high < threshold:
        return True
    return False if low >= threshold else None


def images_needed(image_means: np.ndarray, threshold: float = THRESHOLD, confidence: float = CONFIDENCE,
                  min_images: int = MIN_IMAGES, most: int = 100_000) -> int | None:
    """A rough guide: the fewest images (at least ``min_images``) whose Student t interval, with the
    mean and the standard deviation of ``image_means`` (float (n,), one value per image, n >= 2), would
    no longer contain ``threshold``. None when the mean equals the threshold or more than ``most``
    would be needed. It ignores the spread between random draws."""
    from scipy import stats

    values = np.asarray(image_means, dtype=np.float64)
    gap = abs(float(values.mean()) - threshold)
    spread = float(values.std(ddof=1))
    if gap == 0:
        return None
    if spread == 0:
        return min_images
    counts = np.arange(max(min_images, 2), most + 1)
    fits = stats.t.ppf(0.5 + confidence / 2, counts - 1) * spread / np.sqrt(counts) < gap
    return int(counts[np.argmax(fits)]) if fits.any() else None
