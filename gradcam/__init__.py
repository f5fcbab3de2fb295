"""Grad-CAM heatmaps for Keras image classifiers.

Importing the package is cheap: TensorFlow is loaded only when an explainer
or model is first used.

>>> from gradcam import Explainer, load_classifier, load_image   # doctest: +SKIP
>>> explainer = Explainer(load_classifier("vgg19"))               # doctest: +SKIP
>>> heatmap, record = explain_image(explainer, "cat.jpg")         # doctest: +SKIP
"""
from __future__ import annotations

from importlib import metadata as _metadata

try:
    __version__ = _metadata.version("gradcam")
except _metadata.PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

_LAZY = {
    "Explainer": "cam", "METHODS": "cam", "BatchResult": "cam",
    "load_classifier": "models", "Classifier": "models", "ARCHITECTURES": "models",
    "load_image": "images", "discover_inputs": "images",
    "normalize": "heatmap", "upsample": "heatmap",
    "overlay": "render", "colorize": "render",
    "explain_image": "api",
    "GradcamError": "errors", "UsageError": "errors", "ImageError": "errors",
}

__all__ = ["__version__", *sorted(_LAZY)]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
