"""Graph surgery on the caller's model, which is never changed: the explainer graph
(images -> [layer activations, pre-softmax class scores]); the guided-backpropagation graph is
built in :mod:`gradcam.guided` with the same helpers.

Both are new Keras graphs that *reuse* the caller's layers and their variables, nothing copied,
so they follow later changes of the caller's weights; the final softmax/sigmoid layer is called
without its activation, on its own variables.
"""
from __future__ import annotations

from dataclasses import dataclass

from .._tf import import_tf
from ..errors import UsageError
from .dense_backward import fast_backward_dense, plain_dense, wrapper_options
from .layers import LayerInfo


@dataclass(frozen=True)
class ScoreHead:
    """How class scores are taken from the model's last layer.

    ``kind``: ``pre-softmax``, ``pre-sigmoid``, ``logits`` (the model already
    outputs linear scores), ``value`` (one linear unit: a regression, explained
    as its value) or ``output`` (could not tell; explained as is).
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
        units = getattr(layer, "units", None)
        if units == 1:  # one linear unit: a regression output, explained as its value
            return ScoreHead(layer, containers, "value", "none")
        return ScoreHead(layer, containers, "logits", "softmax")
    return ScoreHead(layer, containers, "output", "none")


def output_view(model, output: str | None):
    """The model as a one-output model: itself when it has one output; for several, the output named
    ``output`` (an output name or the name of the layer that gives it), as a new Keras model over the
    caller's own layers (nothing copied or changed).

    Raises:
        UsageError: several outputs and none named, or an unknown name.
    """
    _, keras = import_tf()
    names = [str(name) for name in getattr(model, "output_names", None) or []]
    if len(model.outputs) == 1 and output is None:
        return model
    if output is None:
        raise UsageError(f"the model has {len(model.outputs)} outputs ({', '.join(names)}): choose one with "
                         "--model-output NAME")
    producers = [tensor._keras_history.operation.name for tensor in model.outputs]
    for index, (name, producer) in enumerate(zip(names or producers, producers)):
        if output in (name, producer):
            if len(model.outputs) == 1:
                return model
            return keras.Model(model.inputs, model.outputs[index], name=f"{model.name}_{name}")
    raise UsageError(f"the model has no output named {output!r}; its outputs: {', '.join(names or producers)}")


def scores_and_probabilities(raw, head: ScoreHead, binary: bool):
    """Per-class scores (B, C) and probabilities (B, C) from the model's last layer's output ``raw``
    (taken before its softmax/sigmoid when ``head`` says so). ``binary`` (one output): class 1 is
    the output, class 0 its negation."""
    tf, _ = import_tf()
    raw = tf.cast(raw, tf.float32)
    if head.kind == "value":  # a regression: the value is the score, and what is reported
        return raw, raw
    if binary:
        if head.activation == "none":
            return tf.concat([1.0 - raw, raw], axis=1), tf.concat([1.0 - raw, raw], axis=1)
        positive = tf.sigmoid(raw)
        return tf.concat([-raw, raw], axis=1), tf.concat([1.0 - positive, positive], axis=1)
    if head.activation == "softmax":
        return raw, tf.nn.softmax(raw, axis=-1)
    if head.activation == "sigmoid":
        return raw, tf.sigmoid(raw)
    return raw, raw


class _Linear:
    """Stands in for a layer inside its own ``call``: every attribute is the layer's (its variables
    included), except ``activation``, which is the identity."""

    def __init__(self, layer):
        object.__setattr__(self, "_layer", layer)

    def __getattr__(self, name):
        return getattr(self._layer, name)

    @staticmethod
    def activation(values):
        return values


_PRE_ACTIVATION: list = []


def _pre_activation_class():
    """The Keras layer class that calls another layer without its activation (made once, lazily)."""
    if not _PRE_ACTIVATION:
        tf, keras = import_tf()

        class PreActivation(keras.layers.Layer):
            """``layer``'s output before its activation, computed by ``layer``'s own ``call`` on its
            own variables: a later change of the caller's weights (fine-tuning in a notebook) is seen
            by every graph built here, with nothing copied."""

            def __init__(self, layer, **kwargs):
                super().__init__(**wrapper_options(layer, "pre_activation"), **kwargs)
                self._wrapped = [layer]  # the caller's variables, used not copied

            @tf.autograph.experimental.do_not_convert
            def call(self, inputs):
                layer = self._wrapped[0]
                return type(layer).call(_Linear(layer), inputs)

            def compute_output_shape(self, input_shape):
                return self._wrapped[0].compute_output_shape(input_shape)

        _PRE_ACTIVATION.append(PreActivation)
    return _PRE_ACTIVATION[0]


def segmentation_classes(head: ScoreHead, channels: int) -> int:
    """The classes of a segmentation model with ``channels`` output channels: 2 for one channel that is
    not a value (a binary segmenter: class 0 the background, class 1 the foreground), else ``channels``."""
    return 2 if channels == 1 and head.kind != "value" else channels


def region_scores_and_probabilities(raw, head: ScoreHead, regions):
    """A segmentation model's class scores over a region (pytorch-grad-cam's SemanticSegmentationTarget).

    Each class c has per-pixel scores and probabilities, and its own pixels: a softmax (or unknown)
    output's argmax; several sigmoid channels: each channel's pixels of probability > 0.5 (logit > 0);
    one channel (a binary segmenter; a one-channel "softmax" is taken as a sigmoid): class 1 the
    pixels of logit > 0 (probability > 0.5), scored by the logit, class 0 the others, scored by the
    negated logit (as for binary classifiers). A one-channel value (regression) is its one class.

    Args:
        raw: (B, h, w, C) per-pixel scores (before the softmax/sigmoid when ``head`` says so).
        regions: (B, h, w): 1 inside the region and 0 outside; where an image's first value is
            negative, each class's region is its own pixels.

    Returns, with K = :func:`segmentation_classes`: scores (B, K): the sum of class c's pixel scores
    over its region; probabilities (B, K): class c's mean pixel probability over it (0 for an empty
    region); masks (B, h, w, K): the regions; ranking (B, K): the order of the most likely classes
    (their probabilities; with their own pixels, a binary segmenter's foreground first when it has any).
    """
    tf, _ = import_tf()
    raw = tf.cast(raw, tf.float32)
    channels = int(raw.shape[-1])
    own_regions = regions[:, :1, :1, None] < 0  # (B, 1, 1, 1)
    binary = channels == 1 and segmentation_classes(head, channels) == 2
    if binary:
        if head.activation == "none":  # probabilities already: class 0 is 1 - p, as for binary classifiers
            probability, positive, negative = raw, raw > 0.5, 1.0 - raw
        else:
            probability, positive, negative = tf.sigmoid(raw), raw > 0, -raw
        pixel_scores = tf.concat([negative, raw], axis=-1)
        probabilities = tf.concat([1.0 - probability, probability], axis=-1)
        own = tf.cast(tf.concat([~positive, positive], axis=-1), tf.float32)
    else:
        pixel_scores = raw
        if head.activation == "softmax":
            probabilities = tf.nn.softmax(raw, axis=-1)
        elif head.activation == "sigmoid":
            probabilities = tf.sigmoid(raw)
        else:
            probabilities = raw
        if head.activation == "sigmoid":  # multi-label: each channel its own pixels
            own = tf.cast(raw > 0, tf.float32)
        else:
            own = tf.one_hot(tf.argmax(probabilities, axis=-1), channels, dtype=tf.float32)
    given = tf.broadcast_to(tf.cast(regions, tf.float32)[..., None], tf.shape(own))
    masks = tf.where(own_regions, own, given)
    scores = tf.reduce_sum(pixel_scores * masks, axis=(1, 2))
    area = tf.reduce_sum(masks, axis=(1, 2))
    mean = tf.math.divide_no_nan(tf.reduce_sum(probabilities * masks, axis=(1, 2)), area)
    ranking = mean
    if binary:  # own pixels: the foreground when there is any, else background
        present = tf.cast(area > 0, tf.float32) * tf.constant([1.0, 2.0])
        ranking = tf.where(own_regions[:, 0, 0], present, mean)
    return scores, mean, masks, ranking


def _call_without_activation(layer, *args, **kwargs):
    """Call ``layer`` on symbolic inputs without its activation.

    A separate Softmax/Activation layer is simply skipped (its input is returned); any other
    layer is called through a :class:`PreActivation` wrapper that shares its variables.
    """
    _, keras = import_tf()
    if isinstance(layer, (keras.layers.Softmax, keras.layers.Activation)):
        return args[0]
    return _pre_activation_class()(layer)(args[0])


def call_layer(layer, linear: bool, *args, **kwargs):
    """Call one of the caller's layers on symbolic inputs in a graph that is differentiated: without its
    activation when ``linear``; a plain Dense layer through :func:`~.dense_backward.fast_backward_dense` (the
    same values, its input gradient computed faster on a CPU; ``Dense.call`` takes nothing else that counts)."""
    if len(args) == 1 and plain_dense(layer, args[0]):
        return fast_backward_dense(layer, linear)(args[0])
    if linear:
        return _call_without_activation(layer, *args, **kwargs)
    return layer(*args, **kwargs)


def build_explainer_model(model, target: LayerInfo, head: ScoreHead, channel_scale=None):
    """A new Keras model: images -> [activations of ``target``, class scores].

    The graph is rebuilt by calling the caller's own layers (shared, not
    copied), descending into the nested models that hold the target or the
    final layer, so inner layers are reachable without "graph disconnected"
    errors. The final softmax/sigmoid is left out when ``head`` says so.

    With ``channel_scale``, a tf.Variable (rows >= batch, channels), the target's output is
    multiplied, image i by row i, channel by channel, before the rest of the network sees it
    (Ablation-CAM zeroes one channel at a time this way).
    """
    tf, keras = import_tf()
    captured: dict[str, object] = {}
    along_path = {id(m) for m in target.containers + head.containers}

    class ChannelScale(keras.layers.Layer):
        def call(self, values):
            rows = tf.shape(values)[0]
            factors = tf.cast(channel_scale[:rows], values.dtype)
            return values * tf.reshape(factors, tf.concat([[rows], tf.ones(len(values.shape) - 2, tf.int32),
                                                           [tf.shape(factors)[1]]], 0))

    def call(layer, *args, **kwargs):
        if id(layer) in along_path:
            out = _rebuild(layer, args[0], call)
        else:
            out = call_layer(layer, layer is head.layer and head.kind.startswith("pre-"), *args, **kwargs)
        if layer is target.layer:
            captured["activations"] = out
            if channel_scale is not None:
                out = ChannelScale(name="gradcam_channel_scale", autocast=False)(out)  # activations as they are
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
