"""The model side of Score-CAM and Ablation-CAM: :class:`PerturbedModelSide` gives the Explainer the
narrow :class:`~gradcam.explainers.perturbation.PerturbedModel` interface with compiled steps (the
weights' arithmetic is in :mod:`gradcam.explainers.perturbation`). The masking and ablation steps are
compiled when first needed and kept."""
from __future__ import annotations

import numpy as np

from .._tf import import_tf
from ..models.graph import ScoreHead, build_explainer_model
from ..models.layers import LayerInfo
from .step import GradientStep


class PerturbedModelSide:
    """Mixin: forward passes of masked or channel-ablated photos for the explained layer.

    The class it is mixed into provides ``_steps`` (its :class:`~gradcam.explainers.step.GradientStep`:
    the two-output model, the preprocessing and the targets), ``model`` (the explained Keras model),
    ``target`` (its layer), ``head`` (its score head), ``input_size`` (H, W) and ``batch_size``.
    """

    _steps: GradientStep
    target: LayerInfo
    head: ScoreHead
    input_size: tuple[int, ...]
    batch_size: int
    _scorecam_step = _ablation_step = None  # compiled when first needed

    def features(self, batch: np.ndarray, classes: np.ndarray) -> tuple[np.ndarray, ...]:
        """Forward pass only: activations (B, h, w, n), classes (B, K), probabilities (B, C), scores (B, C)."""
        tf, _ = import_tf()
        return tuple(t.numpy() for t in self._steps.features(tf.constant(batch), tf.constant(classes)))

    def masked_probabilities(self, image: np.ndarray, maps: np.ndarray) -> np.ndarray:
        """Probabilities (n, C) of the photo (H, W, 3) masked in model space by each map (n, h, w),
        upsampled bilinearly (pixel centres) to the input and scaled min-max to [0, 1]."""
        tf, _ = import_tf()
        steps = self._steps
        if self._scorecam_step is None:
            height, width = self.input_size

            def step(model_input, maps):
                masks = tf.image.resize(maps[..., None], (height, width), method="bilinear")  # half-pixel centres
                low = tf.reduce_min(masks, axis=(1, 2, 3), keepdims=True)
                high = tf.reduce_max(masks, axis=(1, 2, 3), keepdims=True)
                masks = tf.math.divide_no_nan(masks - low, high - low)
                _, raw = steps.model(model_input * masks, training=False)
                return steps.targets.scores_and_probabilities(raw)[1]

            self._scorecam_step = tf.function(step, input_signature=[
                tf.TensorSpec((1, height, width, 3), tf.float32), tf.TensorSpec((None, None, None), tf.float32)])
        model_input = steps.preprocess(tf.constant(image[None]))
        return self._scorecam_step(model_input, tf.constant(maps)).numpy()

    def ablated_scores(self, images: np.ndarray, scale: np.ndarray) -> np.ndarray:
        """Pre-softmax scores (n, C) of photos (n, H, W, 3), n <= batch_size, with the layer's channels
        multiplied by ``scale`` (n, channels)."""
        tf, _ = import_tf()
        steps = self._steps
        if self._ablation_step is None:
            height, width = self.input_size
            channels, rows = int(self.target.output_shape[-1]), self.batch_size
            scale_variable = tf.Variable(tf.ones((rows, channels)), trainable=False, name="gradcam_ablation_scale")
            model = build_explainer_model(self.model, self.target, self.head, scale_variable)

            def step(images, scale):
                padding = tf.ones((rows - tf.shape(scale)[0], channels))
                scale_variable.assign(tf.concat([scale, padding], axis=0))
                _, raw = model(steps.preprocess(images), training=False)
                return steps.targets.scores_and_probabilities(raw)[0]

            self._ablation_step = tf.function(step, input_signature=[
                tf.TensorSpec((None, height, width, 3), tf.float32), tf.TensorSpec((None, channels), tf.float32)])
        return self._ablation_step(tf.constant(images), tf.constant(scale)).numpy()
