"""Finding layers: by name or nested path, the default layer, the list for ``--list-layers``.

Layers are searched through nested models (a base model inside a Sequential); a
:class:`LayerInfo` keeps the path and the nested models that hold a layer.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

from ._tf import import_tf
from .errors import UsageError
from .names import closest

_POOLING_OR_IDENTITY = ("Pooling", "Dropout", "GaussianNoise", "GaussianDropout", "ActivityRegularization")


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
        close = closest(layer_name, names, cutoff=0.5)
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
