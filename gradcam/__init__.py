"""Grad-CAM heatmaps for Keras image classifiers.

Importing the package is cheap: TensorFlow is loaded only when an explainer
or model is first used.

>>> import gradcam                                             # doctest: +SKIP
>>> result = gradcam.explain("vgg19", "cat.jpg")               # doctest: +SKIP
>>> result.heatmap, result.class_name, result.overlay()        # doctest: +SKIP
"""
from __future__ import annotations

from . import _moved
from ._version import __version__

_moved.install()  # gradcam.cam and the other paths of 0.3 still import, with a DeprecationWarning

#: public name -> the module that defines it (imported on first use).
_LAZY = {
    "explain": "api", "Explanation": "api",
    "run": "api", "RunOptions": "runs.pipeline", "Summary": "runs.status",
    "faithfulness_scores": "metrics.faithfulness", "Faithfulness": "metrics.faithfulness",
    "evaluate": "metrics.evaluate", "EvaluationTable": "metrics.evaluate", "Ranking": "metrics.ranking",
    "atlas": "metrics.atlas", "compare": "metrics.compare",
    "sanity_check": "metrics.sanity", "cascading_randomization": "metrics.sanity", "SanityReport": "metrics.sanity",
    "Explainer": "explainers.explainer", "BatchResult": "explainers.results", "METHODS": "explainers.methods",
    "load_classifier": "models.loading", "Classifier": "models.loading", "ARCHITECTURES": "names",
    "load_image": "inputs.images", "discover_inputs": "inputs.discovery",
    "normalize": "explainers.heatmap", "upsample": "explainers.heatmap",
    "overlay": "outputs.render", "colorize": "outputs.render",
    "GradcamError": "errors", "UsageError": "errors", "ImageError": "errors", "HeatmapError": "errors",
}

__all__ = ["__version__", *sorted(_LAZY)]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
