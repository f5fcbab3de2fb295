"""Baseline maps: seeded uniform noise, and the Sobel edges of the photo against a hand convolution, a case
worked out by hand, and OpenCV's pytorch-grad-cam ``sobel_cam`` itself where OpenCV is installed."""
from __future__ import annotations

import hashlib

import numpy as np
import pytest

from gradcam.errors import ImageError
from gradcam.metrics.baselines import GREY_WEIGHTS, random_map, seed_from, sobel_map

KERNEL_ACROSS = [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]]  # d/dx (columns), smoothed down the rows
KERNEL_DOWN = [[-1, -2, -1], [0, 0, 0], [1, 2, 1]]  # d/dy (rows), smoothed across


def mirrored(index: int, length: int) -> int:
    """OpenCV's BORDER_REFLECT_101: ... 2 1 | 0 1 2 ... n-1 | n-2 n-3 ..."""
    if index < 0:
        return -index
    if index > length - 1:
        return 2 * (length - 1) - index
    return index


def sobel_by_hand(image: np.ndarray) -> np.ndarray:
    """0.5 |Gx| + 0.5 |Gy| of the grey image, min-max scaled, with explicit loops over pixels and taps."""
    rows, cols = image.shape[:2]
    grey = [[sum(w * float(image[i, j, c]) for c, w in enumerate(GREY_WEIGHTS)) for j in range(cols)]
            for i in range(rows)]
    edges = np.zeros((rows, cols))
    for i in range(rows):
        for j in range(cols):
            across = down = 0.0
            for di in (-1, 0, 1):
                for dj in (-1, 0, 1):
                    value = grey[mirrored(i + di, rows)][mirrored(j + dj, cols)]
                    across += KERNEL_ACROSS[di + 1][dj + 1] * value
                    down += KERNEL_DOWN[di + 1][dj + 1] * value
            edges[i, j] = 0.5 * abs(across) + 0.5 * abs(down)
    low, high = edges.min(), edges.max()
    return (edges - low) / (high - low)


def test_sobel_of_one_bright_pixel_by_hand():
    """A grey pixel of 8 in the centre of a black 5x5: around it each of the 8 neighbours sees it once,
    with weight 2 in one derivative (edge neighbours: 0.5 * 16 = 8) or weight 1 in both (corners:
    0.5 * 8 + 0.5 * 8 = 8); the centre's own derivatives are 0, as is everything further out."""
    image = np.zeros((5, 5, 3), np.float32)
    image[2, 2] = 8.0
    expected = np.zeros((5, 5), np.float32)
    expected[1:4, 1:4] = 1.0
    expected[2, 2] = 0.0
    np.testing.assert_allclose(sobel_map(image), expected, atol=1e-6)


def test_sobel_against_hand_convolution():
    rng = np.random.default_rng(0)
    for shape in ((5, 5, 3), (4, 7, 3)):
        image = rng.uniform(0, 255, shape).astype(np.float32)
        kept = image.copy()
        ours = sobel_map(image)
        assert ours.dtype == np.float32 and ours.shape == shape[:2]
        np.testing.assert_allclose(ours, sobel_by_hand(image), atol=1e-6)
        np.testing.assert_array_equal(image, kept)


def test_sobel_colour_weights_and_strong_edges_keep_their_order():
    """Two vertical steps, 50 and 200 grey levels: inside the picture a step of h has |Gx| = 4 h and Gy = 0,
    so 0.5 |Gx| = 2 h: 100 and 400, scaled by the larger -- where OpenCV's 8 bits would clip both
    (|Gx| = 200 and 800 -> 200 and 255). A red-only step counts 0.299 of its height."""
    image = np.zeros((6, 12, 3), np.float32)
    image[:, 3:] += 50.0
    image[:, 8:] += 200.0
    edges = sobel_map(image)
    np.testing.assert_allclose(edges[:, 2:4], 0.25, atol=1e-6)
    np.testing.assert_allclose(edges[:, 7:9], 1.0, atol=1e-6)
    assert edges[:, [0, 5, 10, 11]].max() == 0.0
    photo = np.zeros((4, 9, 3), np.float32)
    photo[:, :2, 1] = 100.0  # a green step between columns 1 and 2: grey 58.7, seen at columns 1 and 2
    photo[:, 6:, 0] = 100.0  # a red step between columns 5 and 6: grey 29.9, seen at columns 5 and 6
    both = sobel_map(photo)
    np.testing.assert_allclose(both[:, [1, 2]], 1.0, atol=1e-6)
    np.testing.assert_allclose(both[:, [5, 6]], 0.299 / 0.587, rtol=1e-5)


def test_sobel_against_pytorch_grad_cam_definition_in_opencv():
    """pytorch-grad-cam's sobel_cam, written out in OpenCV as it is there, on an 8-bit grey photo of even
    values under 64: the grey image is exact, no derivative reaches 255 (4 * 62 = 248), and 0.5 |Gx| +
    0.5 |Gy| is a whole number, so OpenCV's uint8 result is exact and the normalised maps agree."""
    cv2 = pytest.importorskip("cv2")

    def sobel_cam(img):  # pytorch_grad_cam/sobel_cam.py
        gray = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
        grad_x = cv2.Sobel(gray, cv2.CV_64F, 1, 0, ksize=3)
        grad_y = cv2.Sobel(gray, cv2.CV_64F, 0, 1, ksize=3)
        return cv2.addWeighted(cv2.convertScaleAbs(grad_x), 0.5, cv2.convertScaleAbs(grad_y), 0.5, 0)

    rng = np.random.default_rng(2)
    for shape in ((5, 5), (17, 23)):
        grey = 2 * rng.integers(0, 32, shape)
        photo = np.repeat(grey[..., None], 3, axis=2).astype(np.uint8)
        theirs = sobel_cam(photo).astype(np.float64)
        expected = (theirs - theirs.min()) / (theirs.max() - theirs.min())
        np.testing.assert_allclose(sobel_map(photo.astype(np.float32)), expected, atol=1e-6)


def test_constant_photo_gives_a_zero_map_and_bad_images_are_refused():
    for value in (0.0, 37.5, 255.0):
        edges = sobel_map(np.full((9, 7, 3), value, np.float32))
        assert edges.dtype == np.float32 and edges.shape == (9, 7) and not edges.any()
    for shape in ((5, 5), (5, 5, 4), (0, 5, 3)):
        with pytest.raises(ImageError):
            sobel_map(np.zeros(shape, np.float32))
    nan = np.zeros((4, 4, 3), np.float32)
    nan[1, 1, 1] = np.nan
    with pytest.raises(ImageError, match="finite"):
        sobel_map(nan)


def test_random_map_is_uniform_and_reproducible():
    from scipy import stats

    digest = hashlib.sha256(b"a photo's bytes").hexdigest()
    first = random_map((64, 48), digest)
    assert first.dtype == np.float32 and first.shape == (64, 48)
    assert first.min() >= 0.0 and first.max() < 1.0
    np.testing.assert_array_equal(first, random_map((64, 48), digest))
    assert not np.array_equal(first, random_map((64, 48), hashlib.sha256(b"another photo").hexdigest()))
    np.testing.assert_array_equal(random_map((3, 4), 7), random_map((3, 4), np.int64(7)))
    assert not np.array_equal(random_map((3, 4), 7), random_map((3, 4), 8))
    np.testing.assert_array_equal(random_map((3, 4), digest), random_map((3, 4), digest.encode()))
    # uniform on [0, 1): Kolmogorov-Smirnov against U(0, 1) over 3072 draws (fixed seed: no flakes)
    assert stats.kstest(first.ravel(), "uniform").pvalue > 0.01
    assert abs(float(first.mean()) - 0.5) < 0.02


def test_seed_from():
    assert seed_from(5) == 5
    assert seed_from(b"\x01\x00") == 256
    assert seed_from("AB") == 0x4142
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError):
            seed_from(bad)
