"""Grad-CAM heatmaps for Keras image classifiers.

Importing the package is cheap: TensorFlow is loaded only when an explainer
or model is first used.

>>> import gradcam                                             # doctest: +SKIP
>>> result = gradcam.explain("vgg19", "cat.jpg")               # doctest: +SKIP
>>> result.heatmap, result.class_name, result.overlay()        # doctest: +SKIP
"""
from __future__ import annotations

from importlib import metadata as _metadata

try:
    __version__ = _metadata.version("gradcam")
except _metadata.PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

#: public name -> the module that defines it (imported on first use).
_LAZY = {
    "explain": "api", "Explanation": "api",
    "run": "pipeline", "RunOptions": "pipeline", "Summary": "status",
    "faithfulness_scores": "faithfulness", "Faithfulness": "faithfulness",
    "sanity_check": "sanity", "cascading_randomization": "sanity", "SanityReport": "sanity",
    "Explainer": "cam", "BatchResult": "results", "METHODS": "methods",
    "load_classifier": "loading", "Classifier": "loading", "ARCHITECTURES": "names",
    "load_image": "images", "discover_inputs": "images",
    "normalize": "heatmap", "upsample": "heatmap",
    "overlay": "render", "colorize": "render",
    "GradcamError": "errors", "UsageError": "errors", "ImageError": "errors", "HeatmapError": "errors",
}

__all__ = ["__version__", *sorted(_LAZY)]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
