"""Normalising and upsampling, checked by hand and by property."""
from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from gradcam.heatmap import normalize, upsample


def test_normalize_by_hand():
    heatmap, zero = normalize(np.array([[0.0, 2.0], [1.0, 4.0]]))
    np.testing.assert_allclose(heatmap, [[0, 0.5], [0.25, 1]])
    assert heatmap.dtype == np.float32 and not zero


def test_zero_map_stays_zero_without_nan():
    heatmap, zero = normalize(np.zeros((3, 3)))
    assert zero and np.all(heatmap == 0) and not np.isnan(heatmap).any()


def test_non_finite_values_do_not_spread():
    heatmap, zero = normalize(np.array([[np.nan, 1.0], [np.inf, 2.0]]))
    np.testing.assert_allclose(heatmap, [[0, 0.5], [0, 1]])


def test_upsample_by_hand():
    # order-1 zoom of a 2x2 map to 3x3 keeps the corners and interpolates between them
    big = upsample(np.array([[0.0, 1.0], [1.0, 0.0]]), (3, 3))
    np.testing.assert_allclose(big, [[0, 0.5, 1], [0.5, 0.5, 0.5], [1, 0.5, 0]], atol=1e-6)


def test_upsample_input_not_mutated():
    small = np.array([[0.0, 1.0], [0.5, 0.25]], np.float32)
    copy = small.copy()
    upsample(small, (7, 9))
    np.testing.assert_array_equal(small, copy)


@settings(max_examples=60, deadline=None)
@given(h=st.integers(1, 16), w=st.integers(1, 16), H=st.integers(1, 700), W=st.integers(1, 700), seed=st.integers(0, 9))
def test_upsample_exact_shape_and_range(h, w, H, W, seed):
    small = np.random.default_rng(seed).uniform(0, 1, (h, w))
    big = upsample(small, (H, W))
    assert big.shape == (H, W) and big.dtype == np.float32
    assert big.min() >= 0 and big.max() <= 1
