"""What a model's preprocessing does to pixels, measured without knowing its formula."""
from __future__ import annotations

import numpy as np


def zero_pixel(preprocess) -> np.ndarray:
    """float32 (3,): the RGB value v in pixel space with preprocess(v) = 0 in every channel.

    ``preprocess`` maps images (B, H, W, 3) in [0, 255] to model input and is affine per
    pixel for every keras.applications family (caffe's channel flip included), so it is
    measured on four one-pixel images and solved; the result is clipped to [0, 255].
    """
    probes = np.zeros((4, 1, 1, 3), np.float32)
    for channel in range(3):
        probes[channel + 1, 0, 0, channel] = 255.0  # full-scale steps: float32 keeps their precision
    out = np.asarray(preprocess(probes.copy()), dtype=np.float64).reshape(4, 3)
    offset, matrix = out[0], (out[1:] - out[0]).T / 255.0  # model value = matrix @ pixel + offset
    try:
        value = np.linalg.solve(matrix, -offset)
    except np.linalg.LinAlgError:
        value = np.zeros(3)
    return (np.clip(value, 0.0, 255.0) + 0.0).astype(np.float32)  # + 0.0: no -0
