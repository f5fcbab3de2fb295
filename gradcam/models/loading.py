"""Loading a classifier: which model, which weights, which preprocessing.

A :class:`Classifier` is the caller's Keras model (never modified) with how to feed it.
"""
from __future__ import annotations

import contextlib
import re
import socket
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from .._tf import import_tf
from .classes import imagenet_class_names, imagenet_synonyms, read_labels
from ..errors import UsageError, WeightsError, first_line
from .hdf5_check import check_declared_sizes
from .model_config import input_rank, read_config
from . import efficientnet_lite
from ..names import ARCHITECTURES, MODEL_NAMES, PREPROCESS_FAMILIES, Architecture, did_you_mean


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
    check_model_request(model, weights, preprocess)
    _, keras = import_tf(verbose)
    key = model.lower()
    if key in MODEL_NAMES:  # a named ImageNet classifier: keras.applications, or EfficientNet-Lite0
        if key == efficientnet_lite.NAME:
            loaded, input_size, family = _load_efficientnet_lite0(keras, weights), efficientnet_lite.INPUT_SIZE, "none"
        else:
            arch = ARCHITECTURES[key]
            loaded, input_size, family = _load_application(keras, key, arch, weights), arch.input_size, arch.preprocess
        classifier = Classifier(loaded, key, input_size, preprocess or family, imagenet_class_names(),
                                class_synonyms=imagenet_synonyms(), weights=weights)
        if weights == "random":
            classifier.notes.append("random weights: the heatmaps show nothing about a trained model")
    else:
        path = Path(model)
        loaded = load_model_file(path)
        classifier = Classifier(loaded, str(path), model_input_size(loaded), preprocess or "none", None)
    if labels is not None:
        classifier.class_names = read_labels(labels)
        classifier.class_synonyms = None
    return classifier


def _load_efficientnet_lite0(keras, weights: str):
    """EfficientNet-Lite0 with ``imagenet`` weights (from their package: nothing is downloaded), seeded
    ``random`` ones, or a ``.pth`` state dict or a Keras weights file."""
    if weights == "random":
        return _untrained(keras, efficientnet_lite.build_model)
    path = efficientnet_lite.packaged_weights() if weights == "imagenet" else Path(weights)
    model = efficientnet_lite.build_model()
    if weights == "imagenet" or path.suffix.lower() in efficientnet_lite.STATE_DICT_SUFFIXES:
        efficientnet_lite.load_state_dict(model, efficientnet_lite.read_torch_state_dict(path))
    else:
        load_weights_file(model, path, efficientnet_lite.NAME)
    return model


def check_model_request(model: str, weights: str = "imagenet", preprocess: str | None = None) -> None:
    """What can be checked of a model, its weights and preprocessing without TensorFlow: unknown
    names, missing files, files that are no model.

    Raises:
        UsageError: an unknown model or preprocessing name, a missing model or weights file.
        WeightsError: a model file that is empty or not a Keras model file.
    """
    if preprocess is not None and preprocess not in PREPROCESS_FAMILIES:
        raise UsageError(_unknown("preprocessing", preprocess, PREPROCESS_FAMILIES))
    if model.lower() in MODEL_NAMES:
        if weights not in ("imagenet", "random") and not Path(weights).is_file():
            raise UsageError(f"weights file not found: {weights} (use --weights imagenet, random, or a file)")
        return
    path = Path(model)
    if not path.suffix and not path.exists():
        raise UsageError(_unknown("model", model, list(MODEL_NAMES)) + " (or give a .keras/.h5 file)")
    check_model_file(path)


#: the seed of ``--weights random``: two runs give the same untrained model, so the same maps
RANDOM_WEIGHTS_SEED = 0


def _untrained(keras, build: Callable):
    """``build()`` with seeded initial weights (``--weights random``): two runs give the same model."""
    keras.utils.set_random_seed(RANDOM_WEIGHTS_SEED)  # Keras draws initial weights from its global seed
    return build()


def _load_application(keras, key: str, arch: Architecture, weights: str):
    constructor = getattr(keras.applications, arch.constructor)
    if weights == "random":
        return _untrained(keras, lambda: constructor(weights=None))
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
    model = constructor(weights=None)
    load_weights_file(model, path, key)
    return model


_LAYER_NAME = re.compile(r"name=([^,>\s]+)")


def load_weights_file(model, path: Path, model_name: str) -> None:
    """Load a weights file into ``model``, quietly; a file that does not fit is one line that says
    which file, which model and how many weight tensors did not fit.

    Raises:
        WeightsError: the file cannot be read, or some of its weights do not fit the model (Keras
            would otherwise warn once per layer, or leave layers with their initial weights).
    """
    check_declared_sizes(path, "weights")
    total = len(model.weights)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            model.load_weights(str(path))
            error = None
        except Exception as exc:  # Keras raises ValueError, OSError, KeyError... for files that do not fit
            error = exc
    skipped = [w for w in caught if "could not be loaded" in str(w.message) or "Skipping" in str(w.message)
               or "freshly-initialized" in str(w.message)]
    if error is None and not skipped:
        return
    names = set(_LAYER_NAME.findall(str(error))) if error is not None else set()
    names |= {name for w in skipped for name in _LAYER_NAME.findall(str(w.message))}
    layers = {layer.name: layer for layer in _all_layers(model)}
    misfits = sum(len(layers[name].weights) for name in names if name in layers)
    if misfits:
        how = f"{misfits} of its {total} weight tensors do not fit"
    elif error is not None:
        how = f"the file does not fit ({first_line(error, 120)})"
    else:
        how = f"{len(skipped)} part(s) of the model found no weights in the file"
    raise WeightsError(f"cannot load weights from {path} into {model_name}: {how} "
                       "(is it a weights file of another architecture?)")


def _all_layers(model) -> list:
    """Every layer of a model, nested models' layers included."""
    found = []
    for layer in model.layers:
        found.append(layer)
        if hasattr(layer, "layers"):
            found.extend(_all_layers(layer))
    return found


def check_model_file(path: Path) -> None:
    """Raise a one-line error for a model path that is no model file: missing, empty, or neither a
    .keras zip nor an HDF5 file (read from its first bytes, before Keras sees it)."""
    if not path.is_file():
        raise UsageError(f"model file not found: {path}")
    try:
        with open(path, "rb") as handle:
            head = handle.read(8)
    except OSError as exc:
        raise WeightsError(f"cannot read model {path}: {exc.strerror or exc}") from None
    if not head:
        raise WeightsError(f"cannot load model {path}: empty file")
    if not (head.startswith(b"PK") or head == b"\x89HDF\r\n\x1a\n"):
        raise WeightsError(f"cannot load model {path}: not a Keras model file (a .keras zip or an HDF5 .h5 file)")
    if head.startswith(b"PK") and read_config(path) is None:  # Keras would inflate and parse it as it is
        raise WeightsError(f"cannot load model {path}: its config.json is missing, not JSON, or larger than "
                           "64 MB (a damaged or crafted .keras file)")


def peek_input_rank(path: str | Path) -> int | None:
    """The rank of a saved model's first input (4 for image batches, 5 for volume batches) from the
    file's configuration alone, without TensorFlow; None when it cannot be told (the model is then
    loaded to find out)."""
    return input_rank(read_config(path))


def load_model_file(path: str | Path):
    """Load a saved ``.keras`` or ``.h5`` model, never executing code from it (``safe_mode``)."""
    _, keras = import_tf()
    path = Path(path)
    check_model_file(path)
    check_declared_sizes(path, "model")
    try:
        return keras.models.load_model(path, compile=False, safe_mode=True)
    except Exception as exc:
        if "safe_mode" in str(exc):
            raise WeightsError(
                f"cannot load model {path}: it contains Python code (e.g. a Lambda layer's function), "
                "which gradcam never runs: model files are loaded with Keras's safe_mode on"
            ) from None
        raise WeightsError(f"cannot load model {path}: {first_line(exc)}") from None


def model_input_size(model) -> tuple[int, ...]:
    """(height, width) of a Keras model's image input; (224, 224) where it takes any size; (depth,
    height, width) of a volumetric model's input (batch, depth, height, width, channels).

    Raises:
        UsageError: the input is not an image batch (batch, height, width, 1 or 3), nor a volume batch
            of known size.
    """
    shape = tuple(model.inputs[0].shape)
    if len(shape) == 5:
        if None in shape[1:]:
            raise UsageError(f"volume model input shape {shape} needs a fixed depth, height, width and channels")
        return tuple(int(d) for d in shape[1:4])
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
