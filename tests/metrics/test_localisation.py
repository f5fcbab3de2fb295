"""Localisation scores against ground truth: hand-worked small maps (ties, the tolerance's boundary, maps at
scales 1e-4 and 1), a from-scratch oracle in plain Python loops on random maps, and Quantus where installed."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gradcam.metrics.localisation import (
    LOCALISATION_KEYS,
    energy_pointing_game,
    localisation_scores,
    pointing_game,
    relevance_mass,
    relevance_rank,
)


def truth_at(shape, *pixels):
    truth = np.zeros(shape, bool)
    for row, column in pixels:
        truth[row, column] = True
    return truth


@pytest.mark.parametrize("scale", [1.0, 1e-4])
def test_pointing_game_by_hand(scale):
    heatmap = np.zeros((5, 5), np.float32)
    heatmap[2, 2] = 1.0 * scale
    heatmap[4, 0] = 0.5 * scale
    beside = truth_at((5, 5), (2, 4))  # distance 2 from the peak
    assert not pointing_game(heatmap, beside, tolerance=2.0)  # 4 < 4 is false: strictly within
    assert pointing_game(heatmap, beside, tolerance=2.01)
    assert not pointing_game(heatmap, beside, tolerance=1.0)
    on_peak = truth_at((5, 5), (2, 2))
    assert pointing_game(heatmap, on_peak, tolerance=1.0)  # 0 < 1: the peak's own pixel
    assert not pointing_game(heatmap, on_peak, tolerance=0.0)  # 0 < 0 is false: tolerance 0 hits nothing
    diagonal = truth_at((5, 5), (3, 3))  # distance sqrt(2)
    assert not pointing_game(heatmap, diagonal, tolerance=1.4)
    assert pointing_game(heatmap, diagonal, tolerance=1.415)


def test_pointing_game_tolerance_boundary_15():
    heatmap = np.zeros((30, 30), np.float32)
    heatmap[0, 0] = 1.0
    at_15 = truth_at((30, 30), (9, 12))  # 81 + 144 = 225 = 15^2
    assert not pointing_game(heatmap, at_15, tolerance=15.0)
    assert not pointing_game(heatmap, at_15, tolerance=14.9)
    assert pointing_game(heatmap, at_15, tolerance=15.001)
    assert not pointing_game(heatmap, at_15)  # the default tolerance is 15
    inside = truth_at((30, 30), (10, 11))  # 100 + 121 = 221: 14.866 px
    assert pointing_game(heatmap, inside, tolerance=15.0)
    assert pointing_game(heatmap, inside, tolerance=14.9)  # 221 < 222.01
    assert not pointing_game(heatmap, inside, tolerance=14.8)  # 221 >= 219.04
    straight = truth_at((30, 30), (0, 15))
    assert not pointing_game(heatmap, straight, tolerance=15.0)
    assert pointing_game(heatmap, straight, tolerance=15.5)


def test_pointing_game_ties_take_the_first_maximum_in_row_major_order():
    heatmap = np.zeros((4, 5), np.float32)
    heatmap[0, 4] = heatmap[3, 1] = 0.7  # two equal maxima: (0, 4) comes first
    assert pointing_game(heatmap, truth_at((4, 5), (0, 4)), tolerance=1.0)
    assert not pointing_game(heatmap, truth_at((4, 5), (3, 1)), tolerance=1.0)
    flat = np.zeros((4, 5), np.float32)  # a flat map points at (0, 0)
    assert pointing_game(flat, truth_at((4, 5), (0, 0)), tolerance=1.0)
    assert not pointing_game(flat, truth_at((4, 5), (1, 1)), tolerance=1.0)


@pytest.mark.parametrize("scale", [1.0, 1e-4])
def test_energy_and_mass_by_hand(scale):
    heatmap = np.array([[0.1, 0.2, 0.3], [0.4, 0.0, 0.0]], np.float32) * scale
    truth = truth_at((2, 3), (0, 0), (0, 1))
    assert energy_pointing_game(heatmap, truth) == pytest.approx(0.3 / 1.0, rel=1e-6)
    assert relevance_mass(heatmap, truth) == pytest.approx(0.3, rel=1e-6)
    assert energy_pointing_game(heatmap, truth_at((2, 3), (0, 2), (1, 0))) == pytest.approx(0.7, rel=1e-6)
    zero = np.zeros((2, 3), np.float32)
    assert energy_pointing_game(zero, truth) == 0.0 and relevance_mass(zero, truth) == 0.0


@pytest.mark.parametrize("scale", [1.0, 1e-4])
def test_relevance_rank_by_hand(scale):
    heatmap = np.array([[0.9, 0.1, 0.8], [0.5, 0.4, 0.0]]) * scale
    # K = 2: the top two are 0.9 at (0, 0) (inside) and 0.8 at (0, 2) (outside)
    assert relevance_rank(heatmap, truth_at((2, 3), (0, 0), (1, 1))) == pytest.approx(0.5)
    # K = 3: 0.9, 0.8, 0.5, all inside
    assert relevance_rank(heatmap, truth_at((2, 3), (0, 0), (0, 2), (1, 0))) == pytest.approx(1.0)
    ties = np.array([[0.5, 0.5, 0.5], [0.5, 0.9, 0.0]]) * scale
    # K = 3: 0.9 at (1, 1), then of the four 0.5s the first two in row-major order, (0, 0) and (0, 1)
    assert relevance_rank(ties, truth_at((2, 3), (0, 1), (1, 1), (1, 2))) == pytest.approx(2 / 3)
    assert relevance_rank(ties, truth_at((2, 3), (0, 2), (1, 1), (1, 2))) == pytest.approx(1 / 3)
    # an all-zero map: the first K pixels in row-major order
    zero = np.zeros((2, 3))
    assert relevance_rank(zero, truth_at((2, 3), (1, 1), (1, 2))) == 0.0
    assert relevance_rank(zero, truth_at((2, 3), (0, 0), (1, 2))) == 0.5


def test_localisation_scores_keys_and_values():
    heatmap = np.array([[0.0, 1.0, 0.25], [0.5, 0.25, 0.0]], np.float32)
    truth = truth_at((2, 3), (0, 1), (1, 0))
    scores = localisation_scores(heatmap, truth, tolerance=1.0)
    assert tuple(scores) == LOCALISATION_KEYS
    assert scores == {"pointing_game": 1.0, "energy_pointing_game": pytest.approx(1.5 / 2.0),
                      "relevance_mass": pytest.approx(0.75), "relevance_rank": pytest.approx(1.0)}
    assert localisation_scores(heatmap, truth_at((2, 3), (1, 2)), tolerance=1.0)["pointing_game"] == 0.0


def test_inputs_are_checked_and_left_alone():
    heatmap = np.array([[0.2, 0.9], [0.1, 0.0]], np.float32)
    truth = truth_at((2, 2), (1, 0))
    before_map, before_truth = heatmap.copy(), truth.copy()
    localisation_scores(heatmap, truth)
    np.testing.assert_array_equal(heatmap, before_map)
    np.testing.assert_array_equal(truth, before_truth)
    for bad_map, bad_truth, message in [
        (heatmap, np.zeros((2, 2), bool), "no pixel set"),
        (heatmap, truth_at((2, 3), (0, 0)), "one shape"),
        (heatmap, truth.astype(np.uint8), "bool"),
        (np.array([[np.nan, 0], [0, 0]]), truth, "finite"),
        (np.array([[-0.1, 0], [0, 0]]), truth, ">= 0"),
        (np.zeros(4), np.ones(4, bool), "2-D"),
    ]:
        for score in (pointing_game, energy_pointing_game, relevance_mass, relevance_rank, localisation_scores):
            with pytest.raises(ValueError, match=message):
                score(bad_map, bad_truth)
    for tolerance in (-1.0, math.inf, math.nan):
        with pytest.raises(ValueError, match="tolerance"):
            pointing_game(heatmap, truth, tolerance)


# -- an oracle written from the definitions, in plain Python loops ------------------------------------


def oracle(heatmap: np.ndarray, truth: np.ndarray, tolerance: float) -> dict[str, float]:
    rows, columns = heatmap.shape
    values = [[float(heatmap[r, c]) for c in range(columns)] for r in range(rows)]
    peak, best = (0, 0), values[0][0]
    for r in range(rows):
        for c in range(columns):
            if values[r][c] > best:  # strictly greater: the first maximum stays
                peak, best = (r, c), values[r][c]
    hit = any(truth[r, c] and math.hypot(r - peak[0], c - peak[1]) < tolerance
              for r in range(rows) for c in range(columns))
    total = sum(sum(row) for row in values)
    inside = sum(values[r][c] for r in range(rows) for c in range(columns) if truth[r, c])
    share = inside / total if total > 0 else 0.0
    ranked = sorted(((-values[r][c], r, c) for r in range(rows) for c in range(columns)))
    k = int(truth.sum())
    rank = sum(1 for _, r, c in ranked[:k] if truth[r, c]) / k
    return {"pointing_game": float(hit), "energy_pointing_game": share, "relevance_mass": share,
            "relevance_rank": rank}


@settings(max_examples=200, deadline=None)
@given(seed=st.integers(0, 2 ** 32 - 1), height=st.integers(1, 12), width=st.integers(1, 12),
       levels=st.sampled_from([0, 3, 1000]), scale=st.sampled_from([1.0, 1e-4]),
       tolerance=st.sampled_from([0.0, 1.0, 1.5, 2.0, 3.0, 5.0, 15.0]))
def test_scores_match_an_oracle_written_with_loops(seed, height, width, levels, scale, tolerance):
    rng = np.random.default_rng(seed)
    raw = rng.random((height, width))
    heatmap = ((np.floor(raw * levels) / levels if levels else raw) * scale).astype(np.float32)  # levels: ties
    truth = rng.random((height, width)) < rng.uniform(0.05, 0.9)
    truth[rng.integers(height), rng.integers(width)] = True
    expected = oracle(heatmap.astype(np.float64), truth, tolerance)
    scores = localisation_scores(heatmap, truth, tolerance)
    assert scores["pointing_game"] == expected["pointing_game"]
    assert scores["relevance_rank"] == pytest.approx(expected["relevance_rank"], abs=1e-12)
    for key in ("energy_pointing_game", "relevance_mass"):
        assert scores[key] == pytest.approx(expected[key], rel=1e-9, abs=1e-12)


def test_against_quantus():
    """Quantus 0.6 (Hedström et al., 2023) on fixed random maps without ties: its PointingGame (a hit
    when a maximum is on the object, no tolerance) is ours at tolerance 1 (the peak's own pixel); its
    RelevanceMassAccuracy, RelevanceRankAccuracy and AttributionLocalisation (inside over total,
    + 1e-9) are ours without normalising or taking absolute values."""
    quantus = pytest.importorskip("quantus")
    rng = np.random.default_rng(25)
    heatmaps = rng.random((6, 1, 9, 11))
    heatmaps[:3, 0, 4, 5] = 1.5  # a peak on the object in the first three
    truths = np.zeros(heatmaps.shape, bool)
    truths[:, :, 3:7, 2:8] = True
    truths[5, :, 0, 0] = True  # a second region
    batch = {"model": None, "x_batch": np.zeros(heatmaps.shape, np.float32), "y_batch": np.zeros(6, int),
             "a_batch": heatmaps, "s_batch": truths.astype(np.float32)}
    options = {"abs": False, "normalise": False, "disable_warnings": True}
    theirs = {
        "pointing_game": quantus.PointingGame(**options)(**batch),
        "relevance_mass": quantus.RelevanceMassAccuracy(**options)(**batch),
        "relevance_rank": quantus.RelevanceRankAccuracy(**options)(**batch),
        "energy_pointing_game": quantus.AttributionLocalisation(**options)(**batch),
    }
    for index in range(6):
        ours = localisation_scores(heatmaps[index, 0], truths[index, 0], tolerance=1.0)
        assert ours["pointing_game"] == float(theirs["pointing_game"][index])
        assert ours["relevance_mass"] == pytest.approx(float(theirs["relevance_mass"][index]), rel=1e-12)
        assert ours["relevance_rank"] == pytest.approx(float(theirs["relevance_rank"][index]), rel=1e-12)
        assert ours["energy_pointing_game"] == pytest.approx(float(theirs["energy_pointing_game"][index]), rel=1e-8)
    assert [float(hit) for hit in theirs["pointing_game"]][:3] == [1.0, 1.0, 1.0]
