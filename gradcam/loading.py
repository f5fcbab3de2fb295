"""Loading a classifier: which model, which weights, which preprocessing.

A :class:`Classifier` is the caller's Keras model (never modified) with how to feed it.
"""
from __future__ import annotations

import contextlib
import re
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from ._tf import import_tf
from .classes import imagenet_class_names, imagenet_synonyms, read_labels
from .errors import UsageError, WeightsError, first_line
from .names import ARCHITECTURES, PREPROCESS_FAMILIES, Architecture, did_you_mean


@dataclass
class Classifier:
    """A loaded image classifier and how to feed it.

    Attributes:
        model: the caller's Keras model (never modified).
        name: its ``--model`` name or file path.
        input_size: (height, width) the photos are resized to.
        preprocess: name of a :data:`PREPROCESS_FAMILIES` entry.
        class_names: one name per class index, or None.
        weights: where the weights came from (``imagenet``, ``random``, a file path), or
            None for a model given in memory or loaded whole from a file.
    """

    model: object
    name: str
    input_size: tuple[int, int]
    preprocess: str = "none"
    class_names: list[str] | None = None
    notes: list[str] = field(default_factory=list)
    class_synonyms: list[list[str]] | None = None
    weights: str | None = None


@contextlib.contextmanager
def _socket_timeout(seconds: float) -> Iterator[None]:
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(old)


def load_classifier(
    model: str = "vgg19",
    weights: str = "imagenet",
    preprocess: str | None = None,
    labels: str | None = None,
    verbose: bool = False,
) -> Classifier:
    """Load a keras.applications classifier by name, or a saved model file.

    Args:
        model: a key of :data:`ARCHITECTURES`, or a path to a ``.keras``/``.h5`` model.
        weights: ``imagenet`` (Keras downloads and caches them), ``random``
            (untrained; for tests and benchmarks), or a path to a weights file.
        preprocess: overrides the preprocessing family (default: the
            architecture's own; ``none`` for model files).
        labels: a file with one class name per line.

    Raises:
        UsageError: unknown model name, missing file.
        WeightsError: weights that cannot be downloaded or loaded.
    """
    _, keras = import_tf(verbose)
    if preprocess is not None and preprocess not in PREPROCESS_FAMILIES:
        raise UsageError(_unknown("preprocessing", preprocess, PREPROCESS_FAMILIES))
    key = model.lower()
    if key in ARCHITECTURES:
        arch = ARCHITECTURES[key]
        loaded = _load_application(keras, key, arch, weights)
        classifier = Classifier(loaded, key, arch.input_size, preprocess or arch.preprocess, imagenet_class_names(),
                                class_synonyms=imagenet_synonyms(), weights=weights)
        if weights == "random":
            classifier.notes.append("random weights: the heatmaps show nothing about a trained model")
    else:
        path = Path(model)
        if not path.suffix and not path.exists():
            raise UsageError(_unknown("model", model, list(ARCHITECTURES)) + " (or give a .keras/.h5 file)")
        loaded = load_model_file(path)
        classifier = Classifier(loaded, str(path), model_input_size(loaded), preprocess or "none", None)
    if labels is not None:
        classifier.class_names = read_labels(labels)
        classifier.class_synonyms = None
    return classifier


def _load_application(keras, key: str, arch: Architecture, weights: str):
    constructor = getattr(keras.applications, arch.constructor)
    if weights == "random":
        return constructor(weights=None)
    if weights == "imagenet":
        try:
            with _socket_timeout(20):
                return constructor(weights="imagenet")
        except Exception as exc:
            url = re.search(r"https?://\S+?\.h5", str(exc))
            file = url.group(0).rsplit("/", 1)[-1] if url else "the ImageNet weights file"
            where = f" from {url.group(0)}" if url else ""
            reason = first_line(exc).rsplit(" -- ", 1)[-1]  # Keras repeats the URL before the cause
            raise WeightsError(
                f"could not download the ImageNet weights for {key} ({file}{where}): "
                f"{reason}. Download that file where there is internet access and pass it "
                f"with --weights PATH/{file}, or put it in ~/.keras/models/"
            ) from None
    path = Path(weights)
    if not path.is_file():
        raise UsageError(f"weights file not found: {weights} (use --weights imagenet, random, or a file)")
    try:
        return constructor(weights=str(path))
    except Exception as exc:
        raise WeightsError(f"cannot load weights from {weights} into {key}: {first_line(exc)}") from None


def load_model_file(path: str | Path):
    """Load a saved ``.keras`` or ``.h5`` model, never executing code from it (``safe_mode``)."""
    _, keras = import_tf()
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"model file not found: {path}")
    try:
        return keras.models.load_model(path, compile=False, safe_mode=True)
    except Exception as exc:
        if "safe_mode" in str(exc):
            raise WeightsError(
                f"cannot load model {path}: it contains Python code (e.g. a Lambda layer's function), "
                "which gradcam never runs: model files are loaded with Keras's safe_mode on"
            ) from None
        raise WeightsError(f"cannot load model {path}: {first_line(exc)}") from None


def model_input_size(model) -> tuple[int, int]:
    """(height, width) of a Keras model's image input; (224, 224) where it takes any size.

    Raises:
        UsageError: the input is not an image batch (batch, height, width, 1 or 3).
    """
    shape = tuple(model.inputs[0].shape)
    if len(shape) != 4 or shape[3] not in (1, 3, None):
        raise UsageError(f"model input shape {shape} is not an image batch (batch, height, width, 3)")
    if shape[1] is None or shape[2] is None:
        return (224, 224)
    return (int(shape[1]), int(shape[2]))


def _unknown(what: str, name: str, choices) -> str:
    return f"unknown {what} {name!r}{did_you_mean(name, choices, cutoff=0.5, list_all=True)}"


def preprocess_function(family: str) -> Callable:
    """The ``preprocess_input`` of a keras.applications family (identity for ``none``)."""
    if family == "none":
        return lambda images: images
    _, keras = import_tf()
    return getattr(keras.applications, family).preprocess_input
