"""Sparseness (Gini index) and complexity (entropy of the shares): values worked out by hand at scales 1e-4 and
1, an oracle of each by another formula (explicit loops over pairs; scipy's entropy), and Quantus itself
when it is installed."""
from __future__ import annotations

import math

import numpy as np
import pytest

from gradcam.errors import HeatmapError
from gradcam.metrics.complexity import complexity, sparseness

SCALES = (1e-4, 1.0)


def gini_by_pairs(values) -> float:
    """The Gini index as the mean absolute difference over all pairs, halved, over the mean:
    sum_i sum_j |a_i - a_j| / (2 N sum_i a_i), with explicit loops (no sorting)."""
    a = [abs(float(v)) for v in np.ravel(values)]
    total = sum(a)
    if total == 0:
        return 0.0
    pairs = sum(abs(x - y) for x in a for y in a)
    return pairs / (2 * len(a) * total)


def entropy_by_loop(values) -> float:
    a = [abs(float(v)) for v in np.ravel(values)]
    total = sum(a)
    return -sum(x / total * math.log(x / total) for x in a if x > 0)


@pytest.mark.parametrize("scale", SCALES)
def test_sparseness_by_hand(scale):
    # sorted a = (0, 0, 0, 1): (2*4 - 4 - 1) * 1 / (4 * 1) = 3/4
    assert sparseness(scale * np.array([[0.0, 0.0], [0.0, 1.0]])) == pytest.approx(0.75, abs=1e-12)
    # (1, 2, 3, 4): (-3*1 - 1*2 + 1*3 + 3*4) / (4 * 10) = 10 / 40
    assert sparseness(scale * np.array([[4.0, 1.0], [3.0, 2.0]])) == pytest.approx(0.25, abs=1e-12)
    assert sparseness(np.full((3, 5), scale)) == pytest.approx(0.0, abs=1e-12)
    # absolute values: a negative peak counts as much as a positive one
    assert sparseness(scale * np.array([0.0, -1.0, 0.0, 0.0])) == pytest.approx(0.75, abs=1e-12)
    # one pixel of N holding everything: (N - 1) / N
    one = np.zeros((7, 9))
    one[3, 4] = scale
    assert sparseness(one) == pytest.approx(62 / 63, abs=1e-12)


@pytest.mark.parametrize("scale", SCALES)
def test_complexity_by_hand(scale):
    assert complexity(np.full((4, 6), scale)) == pytest.approx(math.log(24), abs=1e-12)
    assert complexity(scale * np.array([0.0, 0.0, 0.0, 1.0])) == pytest.approx(0.0, abs=1e-12)
    assert complexity(scale * np.array([[1.0, 0.0], [1.0, 0.0]])) == pytest.approx(math.log(2), abs=1e-12)
    # shares (1/4, 3/4): -(1/4 ln 1/4 + 3/4 ln 3/4) = 0.5623351446188083
    assert complexity(scale * np.array([1.0, 3.0])) == pytest.approx(0.5623351446188083, abs=1e-12)
    assert complexity(scale * np.array([-1.0, 3.0])) == pytest.approx(0.5623351446188083, abs=1e-12)


def test_zero_map_is_scored_as_a_constant_one():
    zero = np.zeros((8, 8), np.float32)
    assert sparseness(zero) == 0.0
    assert complexity(zero) == pytest.approx(math.log(64), abs=1e-12)
    assert complexity(np.zeros(1)) == 0.0 and sparseness(np.zeros(1)) == 0.0


def test_extreme_scales_neither_overflow_nor_underflow():
    rng = np.random.default_rng(1)
    a = rng.random((16, 16))
    for scale in (1e-310, 1e-30, 1e30, 1e306):
        assert sparseness(a * scale) == pytest.approx(sparseness(a), abs=1e-12)
        assert complexity(a * scale) == pytest.approx(complexity(a), abs=1e-12)


@pytest.mark.parametrize("seed", range(6))
def test_against_pairwise_and_loop_oracles(seed):
    rng = np.random.default_rng(seed)
    shape = [(5, 7), (12, 12), (1, 30)][seed % 3]
    a = rng.random(shape) ** (1 + 3 * seed)  # from spread out to concentrated
    a[rng.random(shape) < 0.3] = 0.0
    for scale in SCALES:
        assert sparseness(a * scale) == pytest.approx(gini_by_pairs(a * scale), abs=1e-12)
        assert complexity(a * scale) == pytest.approx(entropy_by_loop(a * scale), abs=1e-12)


def test_against_scipy_entropy():
    stats = pytest.importorskip("scipy.stats")
    a = np.random.default_rng(3).random((20, 20)).astype(np.float32)
    assert complexity(a) == pytest.approx(float(stats.entropy(a.ravel().astype(np.float64))), abs=1e-12)


def test_more_concentrated_maps_score_sparser_and_simpler():
    y, x = np.mgrid[:32, :32]
    wide = np.exp(-((y - 16) ** 2 + (x - 16) ** 2) / (2 * 10.0**2))
    narrow = np.exp(-((y - 16) ** 2 + (x - 16) ** 2) / (2 * 2.0**2))
    assert sparseness(narrow) > sparseness(wide)
    assert complexity(narrow) < complexity(wide)


def test_bad_maps_are_refused_and_inputs_untouched():
    for bad in (np.array([0.1, np.nan]), np.array([np.inf, 1.0])):
        with pytest.raises(HeatmapError):
            sparseness(bad)
        with pytest.raises(HeatmapError):
            complexity(bad)
    with pytest.raises(HeatmapError, match="empty"):
        sparseness(np.zeros((0, 3)))
    a = np.array([[0.5, -0.25], [0.0, 1.0]], np.float32)
    kept = a.copy()
    sparseness(a), complexity(a)
    np.testing.assert_array_equal(a, kept)


@pytest.mark.parametrize("seed", range(4))
def test_against_quantus(seed):
    """Quantus' Sparseness and Complexity (defaults: abs, normalised by the maximum) on the same maps: equal up
    to its small constants (1e-7 added to the normalised map; 1e-12 in the logarithm)."""
    quantus = pytest.importorskip("quantus")
    rng = np.random.default_rng(seed)
    a = rng.random((1, 14, 14)) ** (1 + 2 * seed)
    a[0, rng.random((14, 14)) < 0.2] = 0.0
    x = rng.random((1, 14, 14, 3))
    y = np.array([0])
    for scale in SCALES:
        theirs_gini = quantus.Sparseness(disable_warnings=True)(model=None, x_batch=x, y_batch=y, a_batch=a * scale)
        theirs_entropy = quantus.Complexity(disable_warnings=True)(model=None, x_batch=x, y_batch=y, a_batch=a * scale)
        assert sparseness(a[0] * scale) == pytest.approx(float(theirs_gini[0]), abs=1e-6)
        assert complexity(a[0] * scale) == pytest.approx(float(theirs_entropy[0]), abs=1e-8)
