"""One-call helpers for using gradcam from Python."""
from __future__ import annotations

import os

import numpy as np

from .heatmap import normalize, upsample
from .images import load_image, resize_for_model


def explain_image(explainer, path: str | os.PathLike, class_index: int | None = None) -> tuple[np.ndarray, dict]:
    """Explain one image file.

    Returns:
        (heatmap, info): heatmap is float32 (H, W) in [0, 1] at the photo's
        size; info has ``class_index``, ``class_name``, ``probability``,
        ``layer`` and ``zero_heatmap``.
    """
    photo = load_image(path)
    result = explainer.explain_batch(resize_for_model(photo, explainer.input_size)[None], class_index)
    heatmap, is_zero = normalize(result.cams[0])
    index = int(result.class_index[0])
    info = {"class_index": index, "class_name": explainer.class_name(index),
            "probability": float(result.probability[0]), "layer": explainer.layer_name, "zero_heatmap": is_zero}
    return upsample(heatmap, photo.shape[:2]), info
