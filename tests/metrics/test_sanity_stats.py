"""The sanity check's statistics: the bootstrap interval over images and random draws against a
loop written here and against its coverage on simulated data, the verdict at its edges, and the
count of images a verdict needs against numbers worked out by hand."""
from __future__ import annotations

import numpy as np
import pytest

from gradcam.metrics.sanity_stats import (
    MIN_IMAGES,
    THRESHOLD,
    bootstrap_intervals,
    decide,
    expanded_tail,
    images_needed,
    resampled_means,
)


def test_expanded_tail_by_hand():
    # n = 5: Phi(sqrt(5/4) * t_{0.025, 4}) = Phi(1.1180 * -2.7764) = Phi(-3.1042) = 0.000954
    assert expanded_tail(5) == pytest.approx(0.000954, rel=2e-3)
    # n = 2: Phi(sqrt(2) * t_{0.025, 1}) = Phi(1.4142 * -12.706) = Phi(-17.97): the whole range
    assert expanded_tail(2) < 1e-60
    assert expanded_tail(100_000) == pytest.approx(0.025, abs=1e-4)  # the plain percentile interval
    with pytest.raises(ValueError):
        expanded_tail(1)


def test_resampled_means_follow_the_documented_draws():
    """Each resample: images, then draws, with replacement from default_rng(seed); the mean of the cells."""
    table = np.random.default_rng(4).uniform(-1, 1, (2, 3, 6))  # 2 steps, 3 draws, 6 images
    means = resampled_means(table, seed=11, resamples=500)
    rng = np.random.default_rng(11)
    images = rng.integers(0, 6, (500, 6))
    draws = rng.integers(0, 3, (500, 3))
    for step in range(2):
        by_loop = [np.mean([table[step, d, i] for d in draws[b] for i in images[b]]) for b in range(500)]
        np.testing.assert_allclose(means[step], by_loop, rtol=1e-12, atol=1e-12)
    tail = expanded_tail(6)
    intervals = bootstrap_intervals(table, seed=11, resamples=500)
    np.testing.assert_allclose(intervals, np.quantile(means, [tail, 1 - tail], axis=1).T)


def test_interval_bounds_that_must_hold():
    table = np.random.default_rng(5).uniform(-0.5, 0.9, (1, 3, 7))
    low, high = bootstrap_intervals(table, seed=0)[0]
    assert table.min() <= low < table.mean() < high <= table.max()
    # no spread: the interval is the value itself
    np.testing.assert_allclose(bootstrap_intervals(np.full((1, 2, 5), 0.25), seed=0), [[0.25, 0.25]])
    # one image: no interval
    assert np.isnan(bootstrap_intervals(np.ones((3, 2, 1)), seed=0)).all()
    # the same seed, the same interval; another seed, almost the same
    np.testing.assert_array_equal(bootstrap_intervals(table, 3), bootstrap_intervals(table, 3))
    np.testing.assert_allclose(bootstrap_intervals(table, 3), bootstrap_intervals(table, 4), atol=0.03)


@pytest.mark.parametrize("images, draws, image_sd, draw_sd", [(8, 3, 0.3, 0.1), (5, 3, 0.1, 0.2)])
def test_interval_covers_the_true_mean_about_95_percent_of_the_time(images, draws, image_sd, draw_sd):
    """Simulated (draws, images) tables: true mean 0.3 + an image effect + a draw effect (shared by
    every image, as one random network is) + noise. An interval over images alone would cover the
    mean far less often when the draws differ (about 63% in the second case)."""
    rng = np.random.default_rng(6)
    trials, covered = 300, 0
    for trial in range(trials):
        table = (0.3 + rng.normal(0, image_sd, (1, images)) + rng.normal(0, draw_sd, (draws, 1))
                 + rng.normal(0, 0.1, (draws, images)))
        low, high = bootstrap_intervals(table[None], seed=trial, resamples=2000)[0]
        covered += low <= 0.3 <= high
    assert 0.88 <= covered / trials <= 0.995, covered / trials


def test_verdict_at_the_edges():
    assert THRESHOLD == 0.5 and MIN_IMAGES == 5
    assert decide((0.1, 0.49), 5) is True  # wholly below
    assert decide((0.1, 0.5), 5) is None  # touches the threshold: not surely below
    assert decide((0.5, 0.9), 5) is False  # wholly at or above
    assert decide((0.3, 0.7), 50) is None  # straddles
    assert decide((0.1, 0.2), 4) is None  # too few images, however narrow
    assert decide((0.9, 0.95), 4) is None
    assert decide(None, 5) is None and decide((np.nan, np.nan), 5) is None
    assert decide((0.1, 0.29), 3, threshold=0.3, min_images=3) is True


def test_images_needed_by_hand():
    # mean 0.26 (0.24 from the threshold), standard deviation 0.3; t_{0.975, 7} = 2.365, t_{0.975, 8} = 2.306:
    # n = 8: 2.365 * 0.3 / sqrt(8) = 0.251 > 0.24; n = 9: 2.306 * 0.3 / 3 = 0.231 < 0.24
    d = 0.3 / np.sqrt(2)
    assert images_needed(np.array([0.26 - d, 0.26 + d])) == 9
    assert images_needed(np.array([0.1, 0.1, 0.1])) == MIN_IMAGES  # no spread: the minimum
    assert images_needed(np.array([0.4, 0.6])) is None  # the mean is the threshold
    # mean 0.49, standard deviation 0.69: about (1.96 * 0.69 / 0.01)^2 = 18 000 images, more than most
    assert images_needed(np.array([0.0, 0.98]), most=1000) is None
    assert 17_000 < images_needed(np.array([0.0, 0.98])) < 20_000
