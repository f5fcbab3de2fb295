"""Normalising and upsampling, checked by hand and by property."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gradcam.errors import HeatmapError
from gradcam.explainers.heatmap import normalize, upsample


def test_normalize_by_hand():
    heatmap, zero = normalize(np.array([[0.0, 2.0], [1.0, 4.0]]))
    np.testing.assert_allclose(heatmap, [[0, 0.5], [0.25, 1]])
    assert heatmap.dtype == np.float32 and not zero


@pytest.mark.parametrize("scale", [1.0, 1e-4, 1e-9])
def test_normalize_is_min_max_so_a_positive_floor_is_not_coloured(scale):
    # (cam - 2) / (6 - 2): the minimum 2 becomes 0, not 2/6 as dividing by the maximum gave
    heatmap, zero = normalize(scale * np.array([[2.0, 3.0], [4.0, 6.0]]))
    np.testing.assert_allclose(heatmap, [[0, 0.25], [0.5, 1]], rtol=1e-5, atol=1e-6)
    assert not zero


def test_a_finite_map_wider_than_float32_holds_still_normalises_to_0_1():
    # 3e38 - (-3e38) overflows float32: (cam - low) / (high - low) in float32 gave [0, 0, nan]
    heatmap, zero = normalize(np.array([[-3e38, 0.0, 3e38], [1.5e38, -1.5e38, 0.0]], np.float32))
    np.testing.assert_allclose(heatmap, [[0, 0.5, 1], [0.75, 0.25, 0.5]], rtol=1e-6)
    assert heatmap.dtype == np.float32 and not zero


@pytest.mark.parametrize("value", [0.0, 3.5])
def test_constant_map_is_all_zeros_and_flagged(value):
    heatmap, zero = normalize(np.full((3, 3), value))
    assert zero and np.all(heatmap == 0) and heatmap.dtype == np.float32


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_map_is_an_error_not_a_picture(bad):
    with pytest.raises(HeatmapError, match="heatmap is not finite: "):
        normalize(np.array([[bad, 1.0], [0.5, 2.0]]))


def test_upsample_by_hand():
    # pixel centres: cell 0 of 2 sits at photo x = 0.5 * 4 / 2 = 1 (pixel index 0.5), cell 1 at index 2.5;
    # pixels 0 and 3 lie beyond the centres and hold the edge value, pixels 1 and 2 are 1/4 and 3/4 of the way
    big = upsample(np.array([[0.0, 1.0]]), (1, 4))
    np.testing.assert_allclose(big, [[0, 0.25, 0.75, 1]], atol=1e-6)


@pytest.mark.parametrize("h, w, H, W, i, j", [(7, 7, 224, 224, 3, 2), (14, 14, 225, 301, 5, 9),
                                             (5, 6, 99, 131, 2, 3), (3, 3, 17, 23, 1, 1)])
def test_hot_cell_peaks_at_its_centre_in_the_photo(h, w, H, W, i, j):
    cam = np.zeros((h, w), np.float32)
    cam[i, j] = 1.0
    big = upsample(cam, (H, W))
    # The tent around cell (i, j) is symmetric about its centre (i + 1/2) H / h in photo coordinates,
    # which is pixel index (i + 1/2) H / h - 1/2 (pixel p covers [p, p + 1)).
    rows, cols = np.mgrid[0:H, 0:W]
    centre_row = float((big * rows).sum() / big.sum())
    centre_col = float((big * cols).sum() / big.sum())
    assert centre_row == pytest.approx((i + 0.5) * H / h - 0.5, abs=0.05)  # sampling: a few 1e-3 px
    assert centre_col == pytest.approx((j + 0.5) * W / w - 0.5, abs=0.05)
    peak = np.unravel_index(np.argmax(big), big.shape)
    assert abs(peak[0] + 0.5 - (i + 0.5) * H / h) <= 0.5 and abs(peak[1] + 0.5 - (j + 0.5) * W / w) <= 0.5


def test_upsample_equals_tensorflow_half_pixel_bilinear():
    tf = pytest.importorskip("tensorflow")
    small = np.random.default_rng(3).uniform(0, 1, (7, 9)).astype(np.float32)
    for shape in ((224, 224), (97, 301), (15, 18)):
        expected = tf.image.resize(small[None, ..., None], shape, method="bilinear").numpy()[0, ..., 0]
        np.testing.assert_allclose(upsample(small, shape), expected, atol=1e-5)


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


def test_box_region_by_hand():
    from gradcam.explainers.heatmap import box_region

    # a 100 x 200 photo on a 4 x 4 grid: cell centres at y = 12.5, 37.5, 62.5, 87.5 and x = 25, 75, 125, 175
    region = box_region((50, 30, 130, 70), (100, 200), (4, 4))
    expected = np.zeros((4, 4), np.float32)
    expected[1:3, 1:3] = 1  # y 37.5, 62.5 in [30, 70); x 75, 125 in [50, 130)
    np.testing.assert_array_equal(region, expected)
    assert box_region((0, 0, 10, 10), (100, 200), (4, 4)).sum() == 0  # no centre inside
