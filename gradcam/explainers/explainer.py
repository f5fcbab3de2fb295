"""The one GradientTape: the Explainer runs the forward pass, the gradient and a method's
weighted sum for a batch of images in one compiled step.

Maps are (batch, h, w) float32 at the explained layer's size (its token grid for a
transformer layer), not yet normalised (see :mod:`gradcam.heatmap`); the maths of each
method is in :mod:`gradcam.methods`, Score-CAM and Ablation-CAM in :mod:`gradcam.perturbation`.
"""
from __future__ import annotations

import time
import warnings
from typing import Sequence

import numpy as np

from .._tf import import_tf
from ..errors import UsageError
from ..models.graph import (
    ScoreHead,
    build_explainer_model,
    find_score_head,
    output_view,
    region_scores_and_probabilities,
    scores_and_probabilities,
    segmentation_classes,
)
from ..models.guided import build_guided_model
from .heatmap import normalize_maps
from ..models.layers import LayerInfo, resolve_layer, token_grid, tokens_to_grid
from ..models.loading import Classifier, model_input_size, preprocess_function
from .methods import ASSUME_NON_NEGATIVE, GUIDED_METHOD, PERTURBATION_METHODS, guided_gradcam_map, method_map
from ..names import DEFAULT_BATCH_SIZE, METHOD_NAMES, did_you_mean
from .perturbation import perturbation_maps
from .results import BatchResult

__all__ = ["BatchResult", "Explainer", "SignedActivationsWarning"]


class SignedActivationsWarning(UserWarning):
    """The explained layer has negative activations, which the method's formula does not assume."""


class Explainer:
    """Grad-CAM (or another CAM method) for one model and one layer.

    The forward pass, the gradient and the weighted sum run in one
    ``tf.function`` with a fixed image size and a free batch size, traced once.

    Args:
        model: a :class:`~gradcam.loading.Classifier`, or a Keras model (then
            give ``input_size`` and ``preprocess`` if they are not the defaults).
        layer: layer path or name; default: the last convolutional feature map
            (for transformers, the input of the last attention layer).
        method: one of :data:`gradcam.names.METHOD_NAMES`.
        top_k: explain each image's K most probable classes.
        eigen_smooth: the first principal component of the weighted activations instead of their sum.
        aug_smooth: the mean of the maps over horizontal flip x brightness 1.0/1.1/0.9.
        max_channels: Score-CAM/Ablation-CAM: only the N channels of largest activation variance.
        extra_tokens: a token layer's leading non-patch tokens (default: detected).
        output: for a model with several outputs, the one to explain (its name); a one-unit linear
            output is a regression, explained as its value (class 0; "probability" is the value).
        batch_size: model inputs per forward pass of the perturbed images (Score-CAM/Ablation-CAM);
            the same meaning as everywhere: inputs per forward pass.
    """

    def __init__(self, model, layer: str | None = None, method: str = "gradcam",
                 preprocess: str | None = None, input_size: tuple[int, int] | None = None, top_k: int = 1,
                 eigen_smooth: bool = False, aug_smooth: bool = False, max_channels: int | None = None,
                 extra_tokens: int | None = None, batch_size: int = DEFAULT_BATCH_SIZE, output: str | None = None):
        tf, _ = import_tf()
        if not isinstance(model, Classifier):
            model = Classifier(model, model.name, tuple(input_size or model_input_size(model)), preprocess or "none")
        if method not in METHOD_NAMES:
            raise UsageError(f"unknown method {method!r}{did_you_mean(method, METHOD_NAMES, list_all=True)}")
        self.classifier = model
        self.method = method
        self.eigen_smooth, self.aug_smooth = eigen_smooth, aug_smooth
        self.max_channels, self.batch_size = max_channels, max(1, batch_size)
        self.on_progress = None  # (done, total) after each batch of masks (Score-CAM/Ablation-CAM)
        self.input_size: tuple[int, ...] = tuple(input_size or model.input_size)
        #: a volumetric (3-D) model: input (B, D, H, W, C), maps (B, d, h, w)
        self.volumetric = len(model.model.inputs[0].shape) == 5
        self.channels = int(model.model.inputs[0].shape[-1]) if self.volumetric else 3
        self.ndim = 3 if self.volumetric else 2  # spatial axes of the inputs and the maps
        if self.volumetric and (method in PERTURBATION_METHODS or method == GUIDED_METHOD or aug_smooth):
            raise UsageError(f"volumetric models are explained by the gradient methods, without --aug-smooth; "
                             f"not by {'--aug-smooth' if aug_smooth else method}")
        self.output = output
        self.model = output_view(model.model, output)  # the caller's model, or a one-output view of it
        self.target: LayerInfo = resolve_layer(self.model, layer)
        self.extra_tokens = self._check_tokens(extra_tokens)
        self.head: ScoreHead = find_score_head(self.model)
        self._explainer = build_explainer_model(self.model, self.target, self.head)
        score_shape = tuple(self._explainer.outputs[1].shape)
        self.segmentation = len(score_shape) == 4 and None not in score_shape[1:]
        if len(score_shape) != 2 and not self.segmentation:
            raise UsageError(f"the model's output has shape {score_shape}; a classifier's is (batch, classes), "
                             "a segmentation model's (batch, height, width, classes)")
        self.output_size: tuple[int, int] | None = tuple(score_shape[1:3]) if self.segmentation else None
        if self.segmentation and (method in PERTURBATION_METHODS or method == GUIDED_METHOD or aug_smooth):
            raise UsageError(f"segmentation models are explained by the gradient methods, without --aug-smooth; "
                             f"not by {'--aug-smooth' if aug_smooth else method}")
        self._regions = tf.Variable(-tf.ones((1, *self.output_size)), shape=tf.TensorShape([None, *self.output_size]),
                                    trainable=False, name="gradcam_regions") if self.segmentation else None
        self.regression = self.head.kind == "value"
        self._binary = score_shape[-1] == 1 and not self.regression and not self.segmentation
        self.num_classes: int = 2 if self._binary else int(score_shape[-1])
        if self.segmentation:  # one channel: background (0) and foreground (1)
            self.num_classes = segmentation_classes(self.head, int(score_shape[-1]))
        self._preprocess = preprocess_function(preprocess or model.preprocess)
        self._deletion_baseline: np.ndarray | None = None
        self._scorecam_step = self._ablation_step = None  # compiled when first needed
        self.perturbation = method in PERTURBATION_METHODS
        self._map = None if self.perturbation else method_map("gradcam" if method == GUIDED_METHOD else method,
                                                              eigen_smooth)
        self.negative_activations = False  # set once a batch's layer activations had negative values
        if max_channels is not None and max_channels < 1:
            raise UsageError(f"--max-channels must be at least 1, not {max_channels}")
        if not 1 <= top_k <= self.num_classes:
            raise UsageError(f"--top-k must be between 1 and the number of classes ({self.num_classes}), not {top_k}")
        self.top_k = top_k
        self._guided = build_guided_model(self.model, self.head) if method == GUIDED_METHOD else None
        images_spec = tf.TensorSpec((None, *self.input_size, self.channels), tf.float32)
        classes_spec = tf.TensorSpec((None, top_k), tf.int32)
        self._forward = tf.function(self._probabilities, input_signature=[images_spec])
        self._step = tf.function(self._compute, input_signature=[images_spec, classes_spec])
        self._features = tf.function(self._compute_features, input_signature=[images_spec, classes_spec])

    def options(self) -> dict:
        """The options beyond model and layer that shape the maps (recorded with every output)."""
        return {"method": self.method, "eigen_smooth": self.eigen_smooth, "aug_smooth": self.aug_smooth,
                "max_channels": self.max_channels if self.perturbation else None, "extra_tokens": self.extra_tokens,
                "output": self.output}

    def with_model(self, classifier: Classifier) -> Explainer:
        """A new Explainer for another classifier (a randomised copy, say) with this layer, method and
        options, for one class per image."""
        return Explainer(classifier, self.layer_name, self.method, eigen_smooth=self.eigen_smooth,
                         aug_smooth=self.aug_smooth, max_channels=self.max_channels,
                         extra_tokens=self.extra_tokens, batch_size=self.batch_size, output=self.output)

    def _check_tokens(self, extra_tokens: int | None) -> int | None:
        if not self.target.tokens:  # resolve_layer admits no other 3-D layer
            return None
        grid = token_grid(int(self.target.output_shape[1]), extra_tokens)
        if grid is None:
            raise UsageError(f"layer {self.target.path!r} has {self.target.output_shape[1]} tokens: "
                             f"{extra_tokens} extra token(s) leave no square grid")
        return grid[0]

    @property
    def layer_name(self) -> str:
        """Path of the explained layer (``vgg19/block5_conv4`` when nested)."""
        return self.target.path

    @property
    def class_names(self) -> list[str] | None:
        return self.classifier.class_names

    def class_name(self, index: int) -> str | None:
        if self.regression:
            return "value"
        names = self.class_names
        return names[index] if names is not None and 0 <= index < len(names) else None

    def _scores_and_probabilities(self, raw):
        """Per-class scores (B, C) and probabilities (B, C) from the model's last layer (for a segmentation
        model: over each class's region, see :func:`~gradcam.graph.region_scores_and_probabilities`)."""
        if self.segmentation:
            return region_scores_and_probabilities(raw, self.head, self._regions)[:2]
        return scores_and_probabilities(raw, self.head, self._binary)

    def _grid(self, values):
        """Layer output as float32 (B, h, w, K): token layers reshaped to their square grid."""
        tf, _ = import_tf()
        values = tf.cast(values, tf.float32)
        return tokens_to_grid(values, self.extra_tokens) if self.extra_tokens is not None else values

    def _choose(self, probabilities, classes):
        """classes int32 (B, K): given classes, or -1 where the K most probable are wanted."""
        tf, _ = import_tf()
        ranked = tf.math.top_k(probabilities, k=self.top_k).indices
        return tf.where(classes >= 0, classes, ranked)

    def _compute(self, images, classes):
        """images float32 (B, H, W, 3) in [0, 255]; classes int32 (B, K), -1 = ranked.

        Returns cams (B, K, h, w) -- (B, K, H, W) for guided-gradcam --, classes (B, K), probabilities (B, C),
        and whether any activation is negative.
        """
        tf, _ = import_tf()
        gradient_free = self.method == "eigencam"
        with tf.GradientTape(watch_accessed_variables=False, persistent=self.top_k > 1) as tape:
            tape.watch(images)  # so frozen (non-trainable) models are recorded too
            activations, raw = self._explainer(self._preprocess(images), training=False)
            if self.segmentation:  # each rank's region (B, K, h, w)
                scores, probabilities, masks, ranking = region_scores_and_probabilities(raw, self.head, self._regions)
                chosen = self._choose(ranking, classes)
                regions = tf.transpose(tf.gather(masks, chosen, axis=3, batch_dims=1), (0, 3, 1, 2))
            else:
                scores, probabilities = self._scores_and_probabilities(raw)
                chosen = self._choose(probabilities, classes)
                regions = tf.zeros((tf.shape(images)[0], self.top_k, 0, 0))
            picked = [tf.gather(scores, chosen[:, k], axis=1, batch_dims=1) for k in range(self.top_k)]
        grid = self._grid(activations)
        guided = self._guided_gradients(images, chosen) if self._guided is not None else None
        cams = []
        for k, score in enumerate(picked):
            gradients = None if gradient_free else self._grid(tape.gradient(score, activations))
            cam = self._map(grid, gradients)
            if guided is not None:
                cam = guided_gradcam_map(guided[k], cam)
            cams.append(cam)
        return tf.stack(cams, axis=1), chosen, probabilities, tf.reduce_any(grid < 0), regions

    def _compute_features(self, images, classes):
        """Forward pass only: activations (B, h, w, K), classes (B, K), probabilities (B, C), scores (B, C)."""
        activations, raw = self._explainer(self._preprocess(images), training=False)
        scores, probabilities = self._scores_and_probabilities(raw)
        return self._grid(activations), self._choose(probabilities, classes), probabilities, scores

    def _probabilities(self, images):
        _, raw = self._explainer(self._preprocess(images), training=False)
        return self._scores_and_probabilities(raw)[1]

    def predict(self, images: np.ndarray, batch_size: int = 32) -> np.ndarray:
        """Probabilities (B, C) for images float32 (B, H, W, 3) in [0, 255], forward pass only."""
        tf, _ = import_tf()
        if self.segmentation:
            raise UsageError("faithfulness scores (--evaluate) need a classifier, not a segmentation model")
        batch = np.asarray(images, dtype=np.float32)
        parts = [self._forward(tf.constant(batch[i : i + batch_size])).numpy() for i in range(0, len(batch), batch_size)]
        return np.concatenate(parts) if parts else np.zeros((0, self.num_classes), np.float32)

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
            raw = self._guided(self._preprocess(images), training=False)
            scores, _ = self._scores_and_probabilities(raw)
            picked = [tf.gather(scores, chosen[:, k], axis=1, batch_dims=1) for k in range(self.top_k)]
        return [tf.cast(tape.gradient(score, images), tf.float32) for score in picked]

    def check_class_index(self, class_index: int) -> None:
        """Raise UsageError unless 0 <= class_index < number of classes."""
        if not 0 <= class_index < self.num_classes:
            raise UsageError(f"class index {class_index} is out of range: the model has "
                             f"{self.num_classes} classes (0-{self.num_classes - 1})")

    def explain_batch(self, images: np.ndarray, class_index: int | Sequence[int] | None = None,
                      regions: np.ndarray | None = None) -> BatchResult:
        """Explain a batch of resized photos in one forward/backward pass (more for Score-CAM,
        Ablation-CAM and aug-smooth).

        Args:
            images: float32 (B, H, W, 3), values 0-255, at ``input_size``; not modified.
            class_index: None (each image's top-1 class), one index for all,
                or one index per image.
            regions: segmentation models only: (B, h, w) or (h, w) at ``output_size``, 1 inside the
                region whose class score is explained; None: each class's own pixels.
        """
        batch = np.asarray(images, dtype=np.float32)
        expected = (*self.input_size, self.channels)
        if batch.shape[1:] != expected:
            raise ValueError(f"images must be (B, {', '.join(map(str, expected))}); got {batch.shape}")
        self._set_regions(len(batch), regions)
        if class_index is not None and self.top_k > 1:
            raise UsageError("a class index and top_k > 1 exclude each other: top_k explains the most "
                             "probable classes")
        if class_index is None:
            wanted = np.full((len(batch), self.top_k), -1, dtype=np.int32)
        else:
            wanted = np.broadcast_to(np.asarray(class_index, dtype=np.int32), (len(batch),)).copy()[:, None]
            for index in np.unique(wanted):
                self.check_class_index(int(index))
        result = self._maps(batch, wanted)
        if self.aug_smooth:
            result = self._augmented(batch, result)
        return result

    def _maps(self, batch: np.ndarray, classes: np.ndarray) -> BatchResult:
        tf, _ = import_tf()
        if self.perturbation:
            result = perturbation_maps(self, self.method, batch, classes, self.max_channels, self.eigen_smooth,
                                       self.batch_size, self.on_progress)
        else:
            cams, chosen, probabilities, negative, regions = self._step(tf.constant(batch), tf.constant(classes))
            result = BatchResult(cams.numpy(), chosen.numpy(), probabilities.numpy(), bool(negative),
                                 regions.numpy() > 0.5 if self.segmentation else None)
        if result.negative_activations and not self.negative_activations:
            self.negative_activations = True
            note = self.signed_note()
            if note:
                warnings.warn(note, SignedActivationsWarning, stacklevel=3)
        return result

    def _set_regions(self, count: int, regions: np.ndarray | None) -> None:
        """Hold the batch's regions for the compiled steps (segmentation models); -1: each class's pixels."""
        if not self.segmentation:
            if regions is not None:
                raise UsageError("a region applies to segmentation models (output (batch, height, width, classes))")
            return
        if regions is None:
            values = -np.ones((count, *self.output_size), np.float32)
        else:
            values = np.broadcast_to(np.asarray(regions, np.float32), (count, *self.output_size))
        self._regions.assign(np.ascontiguousarray(values))

    def signed_note(self) -> str | None:
        """What to tell the user when the layer's activations are signed and the method assumes they
        are not (Grad-CAM++, XGrad-CAM); None otherwise."""
        if not self.negative_activations or self.method not in ASSUME_NON_NEGATIVE:
            return None
        return (f"layer {self.layer_name} has negative activations; {self.method}'s formula assumes "
                "non-negative (post-ReLU) ones, so its weights are bounded as described in docs/methods.md "
                "(a layer after a ReLU, or --method gradcam, avoids this)")

    def _augmented(self, batch: np.ndarray, plain: BatchResult) -> BatchResult:
        """aug-smooth: the mean of the maps over horizontal flip x brightness 1.0/1.1/0.9, each map
        scaled min-max to [0, 1] (as pytorch-grad-cam does, so no augmentation outweighs another by
        its brightness) and brought back to the original frame, all for the classes found on the
        original images. Constant maps count as zeros."""
        total = normalize_maps(plain.ranked_cams)
        negative = plain.negative_activations
        for flip in (False, True):
            for brightness in (1.0, 1.1, 0.9):
                if not flip and brightness == 1.0:
                    continue
                augmented = np.clip((batch[:, :, ::-1] if flip else batch) * np.float32(brightness), 0, 255)
                result = self._maps(np.ascontiguousarray(augmented), plain.ranked_class_index)
                cams = normalize_maps(result.ranked_cams)
                total += cams[..., ::-1] if flip else cams
                negative = negative or result.negative_activations
        return BatchResult((total / 6).astype(np.float32), plain.ranked_class_index, plain.probabilities, negative)

    # -- the model side of Score-CAM and Ablation-CAM (gradcam.perturbation.PerturbedModel)
    def features(self, batch: np.ndarray, classes: np.ndarray) -> tuple[np.ndarray, ...]:
        """Forward pass only: activations (B, h, w, n), classes (B, K), probabilities (B, C), scores (B, C)."""
        tf, _ = import_tf()
        return tuple(t.numpy() for t in self._features(tf.constant(batch), tf.constant(classes)))

    def masked_probabilities(self, image: np.ndarray, maps: np.ndarray) -> np.ndarray:
        """Probabilities (n, C) of the photo (H, W, 3) masked in model space by each map (n, h, w),
        upsampled bilinearly (pixel centres) to the input and scaled min-max to [0, 1]."""
        tf, _ = import_tf()
        if self._scorecam_step is None:
            height, width = self.input_size

            def step(model_input, maps):
                masks = tf.image.resize(maps[..., None], (height, width), method="bilinear")  # half-pixel centres
                low = tf.reduce_min(masks, axis=(1, 2, 3), keepdims=True)
                high = tf.reduce_max(masks, axis=(1, 2, 3), keepdims=True)
                masks = tf.math.divide_no_nan(masks - low, high - low)
                _, raw = self._explainer(model_input * masks, training=False)
                return self._scores_and_probabilities(raw)[1]

            self._scorecam_step = tf.function(step, input_signature=[
                tf.TensorSpec((1, height, width, 3), tf.float32), tf.TensorSpec((None, None, None), tf.float32)])
        model_input = self._preprocess(tf.constant(image[None]))
        return self._scorecam_step(model_input, tf.constant(maps)).numpy()

    def ablated_scores(self, images: np.ndarray, scale: np.ndarray) -> np.ndarray:
        """Pre-softmax scores (n, C) of photos (n, H, W, 3), n <= batch_size, with the layer's channels
        multiplied by ``scale`` (n, channels)."""
        tf, _ = import_tf()
        if self._ablation_step is None:
            height, width = self.input_size
            channels, rows = int(self.target.output_shape[-1]), self.batch_size
            scale_variable = tf.Variable(tf.ones((rows, channels)), trainable=False, name="gradcam_ablation_scale")
            model = build_explainer_model(self.model, self.target, self.head, scale_variable)

            def step(images, scale):
                padding = tf.ones((rows - tf.shape(scale)[0], channels))
                scale_variable.assign(tf.concat([scale, padding], axis=0))
                _, raw = model(self._preprocess(images), training=False)
                return self._scores_and_probabilities(raw)[0]

            self._ablation_step = tf.function(step, input_signature=[
                tf.TensorSpec((None, height, width, 3), tf.float32), tf.TensorSpec((None, channels), tf.float32)])
        return self._ablation_step(tf.constant(images), tf.constant(scale)).numpy()

    def seconds_per_image(self) -> float:
        """Estimated seconds to explain one image: one timed batch of forward passes (after a traced
        one) times :meth:`passes_per_image`."""
        images = np.zeros((self.batch_size, *self.input_size, 3), np.float32)
        self.predict(images, batch_size=self.batch_size)  # trace
        start = time.perf_counter()
        self.predict(images, batch_size=self.batch_size)
        return (time.perf_counter() - start) / len(images) * self.passes_per_image()

    def deletion_baseline(self) -> np.ndarray:
        """float32 (3,): the RGB pixel value that the model's preprocessing maps to zero.

        RISE (Petsiuk et al., 2018) deletes pixels to zero in the model's input space: the
        ImageNet mean for caffe-style preprocessing, 127.5 for ``x / 127.5 - 1``, black for none.
        """
        if self._deletion_baseline is None:
            from ..models.preprocess import zero_pixel

            self._deletion_baseline = zero_pixel(self._preprocess)
        return self._deletion_baseline

    @property
    def map_size(self) -> tuple[int, ...]:
        """(h, w) of the maps ((d, h, w) for a volume): the layer's spatial size (its token grid), or the
        input size for guided-gradcam."""
        if self._guided is not None:
            return self.input_size
        if self.extra_tokens is not None:
            side = token_grid(int(self.target.output_shape[1]), self.extra_tokens)[1]
            return side, side
        return tuple(int(d) for d in self.target.output_shape[1:-1])

    def passes_per_image(self) -> int:
        """Forward passes one image costs: 1, or the channels used for Score-CAM/Ablation-CAM; x6 with aug-smooth."""
        channels = int(self.target.output_shape[-1])
        passes = min(channels, self.max_channels or channels) + 1 if self.perturbation else 1
        return passes * (6 if self.aug_smooth else 1)
