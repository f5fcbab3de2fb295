"""Finding layers: by name or nested path, the default layer, the list for ``--list-layers``.

Layers are searched through nested models (a base model inside a Sequential); a
:class:`LayerInfo` keeps the path and the nested models that hold a layer. Explainable
layers give a spatial map (batch, height, width, channels), or tokens (batch, tokens,
channels) whose tokens, less K leading extra ones (class, distillation), fill a square grid.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

from .._tf import import_tf
from ..errors import UsageError
from .model_config import unknown_layer_error

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
        """True for a 4-D output (batch, height, width, channels), or a 5-D one (batch, depth, height,
        width, channels) of a volumetric (3-D) network: explainable by Grad-CAM."""
        return self.output_shape is not None and len(self.output_shape) in (4, 5)

    @property
    def tokens(self) -> bool:
        """True for a 3-D output (batch, tokens, channels) whose tokens can fill a square grid."""
        shape = self.output_shape
        return shape is not None and len(shape) == 3 and shape[1] is not None and token_grid(shape[1]) is not None

    @property
    def explainable(self) -> bool:
        return (self.spatial or self.tokens) and not _is_model(self.layer)

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
    """Layers with a spatial (4-D) or token (3-D, square grid) output, in graph order."""
    return [info for info in iter_layers(model) if info.explainable]


def token_grid(tokens: int, extra: int | None = None) -> tuple[int, int] | None:
    """(extra, side) for ``tokens`` tokens: the K leading extra tokens (class, distillation) and the
    side of the square grid the others fill. ``extra`` None: the smallest K (at most 8) that leaves
    a square of side >= 2. None where nothing fits (or the given ``extra`` leaves no square)."""
    for k in ([extra] if extra is not None else range(0, min(tokens, 9))):
        side = int(round((tokens - k) ** 0.5)) if tokens > k else 0
        if side >= 2 and side * side == tokens - k:
            return k, side
    return None


def tokens_to_grid(values, extra: int):
    """(B, T, C) tokens -> (B, side, side, C), dropping the ``extra`` leading tokens (row-major grid)."""
    tf, _ = import_tf()
    grid = values[:, extra:, :]
    side = int(round(int(grid.shape[1]) ** 0.5))
    return tf.reshape(grid, (-1, side, side, grid.shape[-1]))


def _is_model(layer) -> bool:
    _, keras = import_tf()
    return isinstance(layer, keras.Model)


def default_layer(model) -> LayerInfo:
    """The last convolutional feature map before pooling/flattening; for transformers, the input of
    the last attention layer.

    CNNs: the last layer with a spatial output that is not a pooling, dropout or noise layer:
    VGG19's ``block5_conv4``, ResNet50's ``conv5_block3_out``; for a segmentation model (a spatial
    output), never a layer of its output head (:func:`output_head_layers`): a U-Net's last decoder
    feature map. Token models (ViT, DeiT): the layer
    feeding the last attention layer (the last block's first normalisation, as pytorch-grad-cam's
    ``blocks[-1].norm1``): after the last attention, patch tokens no longer reach the class token,
    so the class score's gradient with respect to them is zero.

    Raises:
        UsageError: the model has no such layer.
    """
    head = {id(layer) for layer in output_head_layers(model)}
    candidates = [
        info for info in explainable_layers(model)
        if not any(word in type(info.layer).__name__ for word in _POOLING_OR_IDENTITY) and id(info.layer) not in head
    ]
    if not candidates:
        raise UsageError("this model has no layer with a spatial (height x width x channels) or token "
                         "(tokens x channels) output to explain" + (" before its output head (name one with "
                                                                     "--layer)" if head else ""))
    last = candidates[-1]
    if last.tokens:
        return _attention_input(model, candidates) or last
    return last


def output_head_layers(model) -> list:
    """The layers of the output head of each spatial (segmentation) output of ``model``: the output layer,
    the weightless one-input layers before it (a separate softmax, an upsampling to the input's size), down to
    and including the first layer with weights (the 1x1 conv that gives the class scores) or with several
    inputs. Nested models are followed. Empty for a model without a spatial output."""
    _, keras = import_tf()
    head = []
    for tensor in model.outputs:
        if len(tensor.shape) not in (4, 5):
            continue
        layer = _producer(tensor)
        while layer is not None:
            if isinstance(layer, keras.Model):  # the output of a nested model: its own head
                head.extend(output_head_layers(layer))
                break
            head.append(layer)
            if layer.weights:
                break
            layer = _producer(layer.input)  # None for several inputs
    return head


def _producer(tensor):
    """The layer that gives a symbolic tensor; None for a model input, several inputs, or a layer called
    more than once."""
    _, keras = import_tf()
    try:
        layer = tensor._keras_history.operation
        return None if isinstance(layer, keras.layers.InputLayer) else layer
    except Exception:
        return None


def _attention_input(model, candidates: list[LayerInfo]) -> LayerInfo | None:
    """The token layer whose output is the query of the model's last attention layer, if any."""
    _, keras = import_tf()
    attentions = [info for info in iter_layers(model) if isinstance(info.layer, keras.layers.MultiHeadAttention)]
    if not attentions:
        return None
    try:
        query = attentions[-1].layer.input
    except Exception:  # called more than once
        return None
    query = query[0] if isinstance(query, (list, tuple)) else query
    for info in candidates:
        try:
            if info.layer.output is query:
                return info
        except Exception:
            continue
    return None


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
        raise unknown_layer_error(layer_name, [info.path for info in layers]
                                  + [info.name for info in layers if info.depth])
    if len(matches) > 1:
        raise UsageError(
            f"layer name {layer_name!r} is ambiguous; name it by path: {', '.join(m.path for m in matches)}"
        )
    info = matches[0]
    if not info.explainable:
        allowed = [layer.path for layer in explainable_layers(model)]
        shown = allowed if len(allowed) <= 20 else allowed[-20:]
        more = "" if len(allowed) <= 20 else f" (and {len(allowed) - 20} earlier; see --list-layers)"
        raise UsageError(
            f"layer {layer_name!r} has output shape {_shape_text(info.output_shape)}; Grad-CAM needs a "
            f"convolutional layer with a spatial output, or a token layer (batch, tokens, channels) whose "
            f"tokens fill a square grid. Layers that can be explained: {', '.join(shown)}{more}"
        )
    return info


def _shape_text(shape: tuple | None) -> str:
    return "unknown" if shape is None else "(" + ", ".join("None" if d is None else str(d) for d in shape) + ")"


def describe_layers(model) -> list[str]:
    """Lines for ``--list-layers``: every spatial and token layer, indented by nesting, the default marked."""
    default = default_layer(model)
    lines = []
    for info in iter_layers(model):
        if _is_model(info.layer):
            lines.append(f"{'  ' * info.depth}{info.path}/  ({type(info.layer).__name__}, nested model)")
        elif info.explainable:
            kind = ""
            if info.tokens:
                extra, side = token_grid(info.output_shape[1])
                kind = f"  tokens: {extra} extra + {side}x{side} grid"
            mark = ""
            if info.path == default.path:
                mark = "   <- default" + (" (input of the last attention)" if info.tokens else "")
            lines.append(f"{'  ' * info.depth}{info.path:<40} {_shape_text(info.output_shape)}{kind}{mark}")
    return lines
