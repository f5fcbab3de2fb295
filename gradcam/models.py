"""Which model, which weights, which preprocessing, which layer; pre-softmax scores.

Nothing here changes the caller's model: the model used for explaining is a
new graph that *reuses* the caller's layers (and so their weights), in which
the final softmax/sigmoid is replaced by a linear copy of the last layer, and
the chosen layer's activations are a second output.
"""
from __future__ import annotations

import contextlib
import difflib
import json
import re
import socket
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Callable, Iterator, Sequence

from ._tf import import_tf
from .errors import UsageError, WeightsError


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

#: ``--preprocess`` names: keras.applications modules with a ``preprocess_input``.
PREPROCESS_FAMILIES: tuple[str, ...] = (
    "vgg16", "vgg19", "resnet", "resnet_v2", "mobilenet", "mobilenet_v2", "mobilenet_v3",
    "efficientnet", "efficientnet_v2", "inception_v3", "inception_resnet_v2", "xception",
    "densenet", "convnext", "nasnet", "none",
)

_POOLING_OR_IDENTITY = ("Pooling", "Dropout", "GaussianNoise", "GaussianDropout", "ActivityRegularization")


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


# --------------------------------------------------------------------------- loading


def imagenet_class_names() -> list[str]:
    """The 1000 ImageNet class names shipped with the package (index = class index)."""
    return [synonyms[0] for synonyms in imagenet_synonyms()]


def read_labels(path: str | Path) -> list[str]:
    """Read a labels file: one class name per line, blank lines ignored at the end."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read labels file {path}: {exc}") from None
    while lines and not lines[-1].strip():
        lines.pop()
    return [line.strip() for line in lines]


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
        classifier = Classifier(loaded, str(path), _input_size(loaded), preprocess or "none", None)
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
            reason = _first_line(exc).rsplit(" -- ", 1)[-1]  # Keras repeats the URL before the cause
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
        raise WeightsError(f"cannot load weights from {weights} into {key}: {_first_line(exc)}") from None


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
        raise WeightsError(f"cannot load model {path}: {_first_line(exc)}") from None


def _input_size(model) -> tuple[int, int]:
    shape = tuple(model.inputs[0].shape)
    if len(shape) != 4 or shape[3] not in (1, 3, None):
        raise UsageError(f"model input shape {shape} is not an image batch (batch, height, width, 3)")
    if shape[1] is None or shape[2] is None:
        return (224, 224)
    return (int(shape[1]), int(shape[2]))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


def _unknown(what: str, name: str, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, list(choices), n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else f"; choose from {', '.join(choices)}"
    return f"unknown {what} {name!r}{hint}"


def preprocess_function(family: str) -> Callable:
    """The ``preprocess_input`` of a keras.applications family (identity for ``none``)."""
    if family == "none":
        return lambda images: images
    _, keras = import_tf()
    return getattr(keras.applications, family).preprocess_input


# --------------------------------------------------------------------------- layers


@dataclass(frozen=True)
class LayerInfo:
    """A layer found inside a model, possibly nested.

    ``path`` names it through the nested models (``vgg19/block5_conv4``);
    ``containers`` are those nested models, outermost first.
    """

    path: str
    layer: object
    containers: tuple
    output_shape: tuple | None

    @property
    def name(self) -> str:
        return self.layer.name

    @property
    def spatial(self) -> bool:
        """True for a 4-D output (batch, height, width, channels): explainable by Grad-CAM."""
        return self.output_shape is not None and len(self.output_shape) == 4

    @property
    def depth(self) -> int:
        return len(self.containers)


def iter_layers(model, _prefix: str = "", _containers: tuple = ()) -> Iterator[LayerInfo]:
    """Yield every layer of ``model`` in graph order, descending into nested models."""
    _, keras = import_tf()
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        path = f"{_prefix}{layer.name}"
        yield LayerInfo(path, layer, _containers, _output_shape(layer))
        if isinstance(layer, keras.Model):
            yield from iter_layers(layer, f"{path}/", _containers + (layer,))


def _output_shape(layer) -> tuple | None:
    try:
        return tuple(layer.output.shape)
    except Exception:  # a layer called more than once, or never
        return None


def explainable_layers(model) -> list[LayerInfo]:
    """Layers with a spatial (4-D) output, in graph order."""
    return [info for info in iter_layers(model) if info.spatial and not _is_model(info.layer)]


def _is_model(layer) -> bool:
    _, keras = import_tf()
    return isinstance(layer, keras.Model)


def default_layer(model) -> LayerInfo:
    """The last convolutional feature map before pooling/flattening.

    The last layer with a spatial output that is not a pooling, dropout or
    noise layer: VGG19's ``block5_conv4``, ResNet50's ``conv5_block3_out``.

    Raises:
        UsageError: the model has no such layer.
    """
    candidates = [
        info for info in explainable_layers(model)
        if not any(word in type(info.layer).__name__ for word in _POOLING_OR_IDENTITY)
    ]
    if not candidates:
        raise UsageError("this model has no layer with a spatial (height x width x channels) output to explain")
    return candidates[-1]


def resolve_layer(model, layer_name: str | None) -> LayerInfo:
    """Find the layer to explain by path (``vgg19/block5_conv4``) or plain name.

    Raises:
        UsageError: unknown name (with the closest names), an ambiguous
            plain name, or a layer without spatial output.
    """
    if layer_name is None:
        return default_layer(model)
    layers = list(iter_layers(model))
    matches = [info for info in layers if info.path == layer_name]
    if not matches:
        matches = [info for info in layers if info.name == layer_name]
    if not matches:
        names = [info.path for info in layers] + [info.name for info in layers if info.depth]
        close = difflib.get_close_matches(layer_name, names, n=3, cutoff=0.5)
        hint = f"; closest: {', '.join(close)}" if close else ""
        raise UsageError(f"no layer named {layer_name!r} in the model{hint} (see --list-layers)")
    if len(matches) > 1:
        raise UsageError(
            f"layer name {layer_name!r} is ambiguous; name it by path: {', '.join(m.path for m in matches)}"
        )
    info = matches[0]
    if not info.spatial or _is_model(info.layer):
        allowed = [layer.path for layer in explainable_layers(model)]
        shown = allowed if len(allowed) <= 20 else allowed[-20:]
        more = "" if len(allowed) <= 20 else f" (and {len(allowed) - 20} earlier; see --list-layers)"
        raise UsageError(
            f"layer {layer_name!r} has output shape {_shape_text(info.output_shape)}; Grad-CAM needs a "
            f"convolutional layer with a spatial output. Layers that can be explained: {', '.join(shown)}{more}"
        )
    return info


def _shape_text(shape: tuple | None) -> str:
    return "unknown" if shape is None else "(" + ", ".join("None" if d is None else str(d) for d in shape) + ")"


def describe_layers(model) -> list[str]:
    """Lines for ``--list-layers``: every spatial layer, indented by nesting, the default marked."""
    default = default_layer(model)
    lines = []
    for info in iter_layers(model):
        if _is_model(info.layer):
            lines.append(f"{'  ' * info.depth}{info.path}/  ({type(info.layer).__name__}, nested model)")
        elif info.spatial:
            mark = "   <- default" if info.path == default.path else ""
            lines.append(f"{'  ' * info.depth}{info.path:<40} {_shape_text(info.output_shape)}{mark}")
    return lines


# --------------------------------------------------------------------------- scores


@dataclass(frozen=True)
class ScoreHead:
    """How class scores are taken from the model's last layer.

    ``kind``: ``pre-softmax``, ``pre-sigmoid``, ``logits`` (the model already
    outputs linear scores) or ``output`` (could not tell; explained as is).
    ``activation``: the function that turns scores into probabilities:
    ``softmax``, ``sigmoid`` or ``none``.
    """

    layer: object
    containers: tuple
    kind: str
    activation: str


def find_score_head(model) -> ScoreHead:
    """Inspect the model's final layer (inside nested models too)."""
    _, keras = import_tf()
    containers: tuple = ()
    current = model
    while True:
        layer = current.layers[-1]
        if isinstance(layer, keras.Model):
            containers += (layer,)
            current = layer
            continue
        break
    activation = getattr(layer, "activation", None)
    act_name = getattr(activation, "__name__", None) if activation is not None else None
    if isinstance(layer, keras.layers.Softmax):
        act_name = "softmax"
    if act_name in ("softmax", "sigmoid"):
        return ScoreHead(layer, containers, f"pre-{act_name}", act_name)
    if act_name == "linear" and not isinstance(layer, keras.layers.Activation):
        return ScoreHead(layer, containers, "logits", "softmax")
    return ScoreHead(layer, containers, "output", "none")


def _call_without_activation(layer, *args, **kwargs):
    """Call ``layer`` on symbolic inputs without its activation.

    A separate Softmax/Activation layer is simply skipped (its input is
    returned); any other layer is called as a copy of it with a linear
    activation, given a copy of its weights once built.
    """
    _, keras = import_tf()
    if isinstance(layer, (keras.layers.Softmax, keras.layers.Activation)):
        return args[0]
    config = dict(layer.get_config())
    config["activation"] = "linear"
    config["name"] = f"{layer.name}_pre_activation"
    twin = type(layer).from_config(config)
    out = twin(*args, **kwargs)
    twin.set_weights(layer.get_weights())
    return out


def build_explainer_model(model, target: LayerInfo, head: ScoreHead):
    """A new Keras model: images -> [activations of ``target``, class scores].

    The graph is rebuilt by calling the caller's own layers (shared, not
    copied), descending into the nested models that hold the target or the
    final layer, so inner layers are reachable without "graph disconnected"
    errors. The final softmax/sigmoid is left out when ``head`` says so.
    """
    _, keras = import_tf()
    captured: dict[str, object] = {}
    along_path = {id(m) for m in target.containers + head.containers}

    def call(layer, *args, **kwargs):
        if id(layer) in along_path:
            out = _rebuild(layer, args[0], call)
        elif layer is head.layer and head.kind.startswith("pre-"):
            out = _call_without_activation(layer, *args, **kwargs)
        else:
            out = layer(*args, **kwargs)
        if layer is target.layer:
            captured["activations"] = out
        return out

    inputs = keras.Input(batch_shape=tuple(model.inputs[0].shape), name="images")
    scores = _rebuild(model, inputs, call)
    if "activations" not in captured:
        raise UsageError(f"layer {target.path!r} is not on the path from the model's input to its output")
    return keras.Model(inputs, [captured["activations"], scores], name="gradcam_explainer")


def _rebuild(model, inputs, call):
    """Run ``model``'s graph on symbolic ``inputs``, calling each layer through ``call``."""
    _, keras = import_tf()
    if isinstance(model, keras.Sequential):
        x = inputs
        for layer in model.layers:
            x = call(layer, x)
        return x
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise UsageError("only models with one image input and one output can be explained")
    structure = [inputs] if isinstance(model.input, (list, tuple)) else inputs
    clone = keras.models.clone_model(
        model, input_tensors=structure, clone_function=lambda layer: layer, call_function=call
    )
    return clone.outputs[0]


def build_guided_model(model, head: ScoreHead):
    """A new Keras model: images -> class scores, in which every ReLU has the guided gradient.

    The scores are taken before the final softmax/sigmoid exactly as in
    :func:`build_explainer_model` (``head``), so the guided gradient is
    d y^c / d x of the pre-softmax score, not of the probability. Separate ReLU layers are replaced by a guided ReLU; layers with a built-in
    ReLU activation are called as a linear copy (weights copied) followed by
    the guided ReLU. Other activations are left as they are. The caller's
    model is not changed; its other layers are shared.
    """
    _, keras = import_tf()
    from .cam import guided_relu

    class GuidedReLU(keras.layers.Layer):
        def call(self, inputs):
            return guided_relu(inputs)

    def call(layer, *args, **kwargs):
        if isinstance(layer, keras.Model):
            return _rebuild(layer, args[0], call)
        if layer is head.layer and head.kind.startswith("pre-"):
            return _call_without_activation(layer, *args, **kwargs)
        activation = getattr(getattr(layer, "activation", None), "__name__", None)
        is_relu_layer = isinstance(layer, keras.layers.ReLU) and layer.get_config().get("max_value") is None \
            and not layer.get_config().get("negative_slope")
        if is_relu_layer or (isinstance(layer, keras.layers.Activation) and activation == "relu"):
            return GuidedReLU()(args[0])
        if activation == "relu" and not isinstance(layer, keras.layers.Activation):
            return GuidedReLU()(_call_without_activation(layer, *args, **kwargs))
        return layer(*args, **kwargs)

    inputs = keras.Input(batch_shape=tuple(model.inputs[0].shape), name="images")
    return keras.Model(inputs, _rebuild(model, inputs, call), name="gradcam_guided")


def find_class(name: str, class_names: Sequence[str] | None, synonyms: Sequence[Sequence[str]] | None = None) -> int:
    """Class index for a class name (case-insensitive; any ImageNet synonym too).

    Raises:
        UsageError: no class names, or no such class (with the closest names).
    """
    if not class_names:
        raise UsageError("--class needs class names: give --labels FILE (one name per line)")
    wanted = name.strip().casefold().replace("_", " ")
    groups = synonyms if synonyms is not None else [[n] for n in class_names]
    for index, group in enumerate(groups):
        if any(wanted == s.casefold().replace("_", " ") for s in group):
            return index
    every = [s for group in groups for s in group]
    close = difflib.get_close_matches(name, every, n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    raise UsageError(f"no class named {name!r}{hint}")


@lru_cache(maxsize=1)
def imagenet_synonyms() -> list[list[str]]:
    """All WordNet synonyms of the 1000 ImageNet classes (index = class index)."""
    text = resources.files("gradcam").joinpath("data/imagenet_classes.json").read_text(encoding="utf-8")
    return json.loads(text)
