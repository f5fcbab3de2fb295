"""Baseline maps that know nothing of the model, to score beside a real heatmap: uniform noise, and the
edges of the photo (pytorch-grad-cam's ``sobel_cam``). A method whose maps score no better than these
explains nothing the photo's own edges (or chance) would not.

Both are float32 (H, W) in [0, 1], like the tool's heatmaps.
"""
from __future__ import annotations

import numpy as np

from ..errors import ImageError
from ..explainers.heatmap import normalize

__all__ = ["GREY_WEIGHTS", "random_map", "seed_from", "sobel_map"]

#: ITU-R BT.601 luma, the weights of OpenCV's ``COLOR_RGB2GRAY`` (R, G, B)
GREY_WEIGHTS = (0.299, 0.587, 0.114)


def seed_from(seed: int | str | bytes) -> int:
    """A non-negative int for :func:`numpy.random.default_rng`: an int as it is, a str (such as a content
    digest) or bytes read as one big-endian number (a str from its UTF-8 bytes)."""
    if isinstance(seed, str):
        seed = seed.encode("utf-8")
    if isinstance(seed, (bytes, bytearray)):
        return int.from_bytes(bytes(seed), "big")
    if isinstance(seed, (bool, float)) or int(seed) != seed or seed < 0:
        raise ValueError(f"a seed is a non-negative int, a str or bytes, not {seed!r}")
    return int(seed)


def random_map(shape: tuple[int, ...], seed: int | str | bytes) -> np.ndarray:
    """Uniform noise in [0, 1): float32 of ``shape`` (usually (H, W)).

    The same seed gives the same map (NumPy's default generator, PCG64, seeded with :func:`seed_from`),
    so a run can seed it from the input's content digest and a rerun draws the same map.
    """
    return np.random.default_rng(seed_from(seed)).random(tuple(shape), dtype=np.float32)


def sobel_map(image: np.ndarray) -> np.ndarray:
    """The edges of a photo: float32 (H, W) in [0, 1].

    As pytorch-grad-cam's ``sobel_cam``: the grey image (:data:`GREY_WEIGHTS`), its 3 x 3 Sobel
    derivatives across and down (``scipy.ndimage.sobel``, borders reflected without repeating the edge
    pixel, as OpenCV's default ``BORDER_REFLECT_101``), then 0.5 |d/dx| + 0.5 |d/dy|. Then normalised
    min-max to [0, 1] as the tool normalises a class activation map
    (:func:`gradcam.explainers.heatmap.normalize`); a photo of one colour (no edges), or
    of edges equally strong everywhere, gives all zeros.

    Differences from ``sobel_cam``, which works in 8 bits: the grey image is not rounded to integers, and
    neither derivative is rounded or clipped at 255 (OpenCV's ``convertScaleAbs``), so strong edges keep
    their order instead of all saturating at 255; and ``sobel_cam`` returns uint8 in [0, 255], not
    normalised. On an 8-bit grey photo whose derivatives stay under 255 the two agree to rounding.

    Args:
        image: float (H, W, 3), RGB values in [0, 255] (any scale works: the map is normalised); not modified.

    Raises:
        ImageError: not an (H, W, 3) array of finite values.
    """
    from scipy import ndimage

    pixels = np.asarray(image, dtype=np.float64)
    if pixels.ndim != 3 or pixels.shape[2] != 3 or 0 in pixels.shape:
        raise ImageError(f"the Sobel baseline needs an RGB image (H, W, 3), not an array of shape {pixels.shape}")
    if not np.isfinite(pixels).all():
        raise ImageError("the Sobel baseline needs finite pixel values (the image has NaN or infinity)")
    grey = pixels @ np.asarray(GREY_WEIGHTS)
    across = ndimage.sobel(grey, axis=1, mode="mirror")
    down = ndimage.sobel(grey, axis=0, mode="mirror")
    edges = 0.5 * np.abs(across) + 0.5 * np.abs(down)
    return normalize(edges)[0]
