"""The one GradientTape: the forward pass, the gradient and a method's weighted sum for a batch of
images in one compiled step (:class:`GradientStep`), the forward-only steps beside it, and the graph
they run: the model, layer and score head explained, the layer's token grid.

Maps are (batch, h, w) float32 at the explained layer's size (its token grid for a transformer
layer), not yet normalised (see :mod:`gradcam.explainers.heatmap`); the maths of each method is in
:mod:`gradcam.explainers.methods`.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from .._tf import import_tf
from ..errors import UsageError
from ..models.graph import ScoreHead, find_score_head, output_view
from ..models.layers import LayerInfo, resolve_layer, token_grid, tokens_to_grid
from .methods import GUIDED_METHOD, PERTURBATION_METHODS, guided_gradcam_map, method_map
from .results import BatchResult
from .targets import Targets


def input_kind(model) -> tuple[bool, int, int]:
    """(volumetric, channels, ndim) of a Keras model's input: a volumetric (3-D) model takes (B, D, H, W, C)
    and gives maps (B, d, h, w); channels are 3 for photos; ndim counts the spatial axes (2 or 3)."""
    volumetric = len(model.inputs[0].shape) == 5
    return volumetric, int(model.inputs[0].shape[-1]) if volumetric else 3, 3 if volumetric else 2


def explained_layer(model, output: str | None, layer: str | None,
                    extra_tokens: int | None) -> tuple[object, LayerInfo, int | None, ScoreHead]:
    """The Keras model explained (the caller's, or a one-output view of it), its explained layer (default:
    the last convolutional feature map), the layer's extra tokens (see :func:`token_count`) and its score head."""
    model = output_view(model, output)
    target = resolve_layer(model, layer)
    return model, target, token_count(target, extra_tokens), find_score_head(model)


def token_count(target: LayerInfo, extra_tokens: int | None) -> int | None:
    """A token layer's leading non-patch tokens (``extra_tokens``, or detected when None), checked to
    leave a square grid; None for a spatial layer."""
    if not target.tokens:  # resolve_layer admits no other 3-D layer
        return None
    grid = token_grid(int(target.output_shape[1]), extra_tokens)
    if grid is None:
        raise UsageError(f"layer {target.path!r} has {target.output_shape[1]} tokens: "
                         f"{extra_tokens} extra token(s) leave no square grid")
    return grid[0]


def layer_map_size(target: LayerInfo, extra_tokens: int | None) -> tuple[int, ...]:
    """(h, w) ((d, h, w) for a volume) of the maps of the layer: its spatial size, or its token grid."""
    if extra_tokens is not None:
        side = token_grid(int(target.output_shape[1]), extra_tokens)[1]
        return side, side
    return tuple(int(d) for d in target.output_shape[1:-1])


class GradientStep:
    """The compiled steps of one Explainer, each a ``tf.function`` with a fixed image size and a free
    batch size, traced once; they read the caller's variables, so later changes of the weights count.

    Args:
        model: the Keras model of two outputs: the explained layer's activations and the raw output.
        targets: the classes (and regions) explained; its ``top_k`` is fixed from here on.
        preprocess: the model's preprocessing, applied in the graph to photos float32 0-255.
        guided: guided-gradcam: the guided-backpropagation model, else None.
        extra_tokens: a token layer's leading non-patch tokens, None for a spatial layer.
        image_shape: one image's shape, (H, W, 3) or (D, H, W, C).

    Attributes:
        step: images float32 (B, *image_shape), classes int32 (B, K) -> see :meth:`compute`.
        forward: images -> probabilities (B, C).
        features: images, classes -> activations (B, h, w, n), classes (B, K), probabilities, scores (B, C).
    """

    def __init__(self, model, targets: Targets, preprocess: Callable, method: str, eigen_smooth: bool,
                 guided, extra_tokens: int | None, image_shape: tuple[int, ...]):
        tf, _ = import_tf()
        self.model, self.targets, self.preprocess = model, targets, preprocess
        self.method, self.guided, self.extra_tokens = method, guided, extra_tokens
        self.top_k, self.image_shape = targets.top_k, tuple(image_shape)
        self._map = None if method in PERTURBATION_METHODS else method_map(
            "gradcam" if method == GUIDED_METHOD else method, eigen_smooth)
        images_spec = tf.TensorSpec((None, *image_shape), tf.float32)
        classes_spec = tf.TensorSpec((None, self.top_k), tf.int32)
        self.forward = tf.function(self._probabilities, input_signature=[images_spec])
        self.step = tf.function(self.compute, input_signature=[images_spec, classes_spec])
        self.features = tf.function(self._features, input_signature=[images_spec, classes_spec])

    def batch(self, images: np.ndarray) -> np.ndarray:
        """``images`` as float32 (B, *image_shape); ValueError for another shape."""
        batch = np.asarray(images, dtype=np.float32)
        if batch.shape[1:] != self.image_shape:
            raise ValueError(f"images must be (B, {', '.join(map(str, self.image_shape))}); got {batch.shape}")
        return batch

    def explain(self, batch: np.ndarray, classes: np.ndarray) -> BatchResult:
        """:meth:`compute` as NumPy: photos float32 (B, *image_shape), classes int32 (B, K), -1 = ranked."""
        tf, _ = import_tf()
        cams, chosen, probabilities, negative, regions = self.step(tf.constant(batch), tf.constant(classes))
        return BatchResult(cams.numpy(), chosen.numpy(), probabilities.numpy(), bool(negative),
                           regions.numpy() > 0.5 if self.targets.segmentation else None)

    def predict(self, images: np.ndarray, batch_size: int) -> np.ndarray:
        """Probabilities (B, C) for photos float32 (B, *image_shape), ``batch_size`` per forward pass."""
        tf, _ = import_tf()
        batch = np.asarray(images, dtype=np.float32)
        parts = [self.forward(tf.constant(batch[i : i + batch_size])).numpy() for i in range(0, len(batch), batch_size)]
        return np.concatenate(parts) if parts else np.zeros((0, self.targets.num_classes), np.float32)

    def grid(self, values):
        """Layer output as float32 (B, h, w, K): token layers reshaped to their square grid."""
        tf, _ = import_tf()
        values = tf.cast(values, tf.float32)
        return tokens_to_grid(values, self.extra_tokens) if self.extra_tokens is not None else values

    def compute(self, images, classes):
        """images float32 (B, H, W, 3) in [0, 255]; classes int32 (B, K), -1 = ranked.

        Returns cams (B, K, h, w) -- (B, K, H, W) for guided-gradcam --, classes (B, K), probabilities (B, C),
        whether any activation is negative, and the regions (B, K, h, w) (see :meth:`Targets.pick`).
        """
        tf, _ = import_tf()
        gradient_free = self.method == "eigencam"
        with tf.GradientTape(watch_accessed_variables=False, persistent=self.top_k > 1) as tape:
            tape.watch(images)  # so frozen (non-trainable) models are recorded too
            activations, raw = self.model(self.preprocess(images), training=False)
            scores, probabilities, chosen, regions = self.targets.pick(raw, classes, tf.shape(images)[0])
            picked = [tf.gather(scores, chosen[:, k], axis=1, batch_dims=1) for k in range(self.top_k)]
        grid = self.grid(activations)
        guided = self._guided_gradients(images, chosen) if self.guided is not None else None
        cams = []
        for k, score in enumerate(picked):
            gradients = None if gradient_free else self.grid(tape.gradient(score, activations))
            cam = self._map(grid, gradients)
            if guided is not None:
                cam = guided_gradcam_map(guided[k], cam)
            cams.append(cam)
        return tf.stack(cams, axis=1), chosen, probabilities, tf.reduce_any(grid < 0), regions

    def _guided_gradients(self, images, chosen):
        """Guided-backpropagation gradients w.r.t. the image, one guided forward pass for all ranks.

        Args:
            chosen: int32 (B, K) classes.
        Returns:
            K tensors (B, H, W, 3), one per rank.
        """
        tf, _ = import_tf()
        with tf.GradientTape(watch_accessed_variables=False, persistent=self.top_k > 1) as tape:
            tape.watch(images)
            raw = self.guided(self.preprocess(images), training=False)
            scores, _ = self.targets.scores_and_probabilities(raw)
            picked = [tf.gather(scores, chosen[:, k], axis=1, batch_dims=1) for k in range(self.top_k)]
        return [tf.cast(tape.gradient(score, images), tf.float32) for score in picked]

    def _features(self, images, classes):
        """Forward pass only: activations (B, h, w, K), classes (B, K), probabilities (B, C), scores (B, C)."""
        activations, raw = self.model(self.preprocess(images), training=False)
        scores, probabilities = self.targets.scores_and_probabilities(raw)
        return self.grid(activations), self.targets.choose(probabilities, classes), probabilities, scores

    def _probabilities(self, images):
        _, raw = self.model(self.preprocess(images), training=False)
        return self.targets.scores_and_probabilities(raw)[1]
