"""The one GradientTape: the Explainer runs the forward pass, the gradient and a method's
weighted sum for a batch of images in one compiled step.

Maps are (batch, h, w) float32 at the explained layer's size, not yet normalised
(see :mod:`gradcam.heatmap`); the maths of each method is in :mod:`gradcam.methods`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ._tf import import_tf
from .errors import UsageError
from .graph import ScoreHead, build_explainer_model, build_guided_model, find_score_head
from .layers import LayerInfo, resolve_layer
from .loading import Classifier, model_input_size, preprocess_function
from .methods import METHODS, guided_gradcam_map
from .names import did_you_mean


@dataclass
class BatchResult:
    """What one compiled step returns, as NumPy, for B images and K ranks (``top_k``).

    ranked_cams: float32 (B, K, h, w), >= 0, not normalised.
    ranked_class_index: int (B, K) the explained classes of each image.
    probabilities: float32 (B, C) the model's probabilities (see ScoreHead).

    ``cams``, ``class_index`` and ``probability`` give the first rank: (B, h, w), (B,), (B,).
    """

    ranked_cams: np.ndarray
    ranked_class_index: np.ndarray
    probabilities: np.ndarray

    @property
    def cams(self) -> np.ndarray:
        return self.ranked_cams[:, 0]

    @property
    def class_index(self) -> np.ndarray:
        return self.ranked_class_index[:, 0]

    @property
    def ranked_probability(self) -> np.ndarray:
        """float32 (B, K) probability of each explained class."""
        return np.take_along_axis(self.probabilities, self.ranked_class_index, axis=1)

    @property
    def probability(self) -> np.ndarray:
        """float32 (B,) probability of each image's (first) explained class."""
        return self.ranked_probability[:, 0]


class Explainer:
    """Grad-CAM (or another CAM method) for one model and one layer.

    The forward pass, the gradient and the weighted sum run in one
    ``tf.function`` with a fixed image size and a free batch size, traced once.

    Args:
        model: a :class:`~gradcam.loading.Classifier`, or a Keras model (then
            give ``input_size`` and ``preprocess`` if they are not the defaults).
        layer: layer path or name; default: the last convolutional feature map.
        method: a key of :data:`gradcam.methods.METHODS`.
    """

    def __init__(self, model, layer: str | None = None, method: str = "gradcam",
                 preprocess: str | None = None, input_size: tuple[int, int] | None = None, top_k: int = 1):
        tf, keras = import_tf()
        if not isinstance(model, Classifier):
            model = Classifier(model, model.name, tuple(input_size or model_input_size(model)), preprocess or "none")
        if method not in METHODS:
            raise UsageError(f"unknown method {method!r}{did_you_mean(method, METHODS, list_all=True)}")
        self.classifier = model
        self.method = method
        self.input_size: tuple[int, int] = tuple(input_size or model.input_size)
        self.target: LayerInfo = resolve_layer(model.model, layer)
        self.head: ScoreHead = find_score_head(model.model)
        self._explainer = build_explainer_model(model.model, self.target, self.head)
        score_shape = tuple(self._explainer.outputs[1].shape)
        if len(score_shape) != 2:
            raise UsageError(f"the model's output has shape {score_shape}; a classifier's is (batch, classes)")
        self._binary = score_shape[1] == 1
        self.num_classes: int = 2 if self._binary else int(score_shape[1])
        self._preprocess = preprocess_function(preprocess or model.preprocess)
        self._deletion_baseline: np.ndarray | None = None
        self._map = METHODS[method]
        if not 1 <= top_k <= self.num_classes:
            raise UsageError(f"--top-k must be between 1 and the number of classes ({self.num_classes}), not {top_k}")
        self.top_k = top_k
        self._guided = build_guided_model(model.model, self.head) if method == "guided-gradcam" else None
        height, width = self.input_size
        self._forward = tf.function(
            self._probabilities, input_signature=[tf.TensorSpec((None, height, width, 3), tf.float32)])
        self._step = tf.function(
            self._compute,
            input_signature=[
                tf.TensorSpec((None, height, width, 3), tf.float32),
                tf.TensorSpec((None,), tf.int32),
            ],
        )

    @property
    def layer_name(self) -> str:
        """Path of the explained layer (``vgg19/block5_conv4`` when nested)."""
        return self.target.path

    @property
    def class_names(self) -> list[str] | None:
        return self.classifier.class_names

    def class_name(self, index: int) -> str | None:
        names = self.class_names
        return names[index] if names is not None and 0 <= index < len(names) else None

    def _scores_and_probabilities(self, raw):
        """Per-class scores (B, C) and probabilities (B, C) from the model's last layer."""
        tf, _ = import_tf()
        activation = self.head.activation
        if self._binary:  # one output: class 1 is the output, class 0 its negation
            if activation == "none":
                return tf.concat([1.0 - raw, raw], axis=1), tf.concat([1.0 - raw, raw], axis=1)
            positive = tf.sigmoid(raw)
            return tf.concat([-raw, raw], axis=1), tf.concat([1.0 - positive, positive], axis=1)
        if activation == "softmax":
            return raw, tf.nn.softmax(raw, axis=-1)
        if activation == "sigmoid":
            return raw, tf.sigmoid(raw)
        return raw, raw

    def _compute(self, images, class_index):
        """images float32 (B, H, W, 3) in [0, 255]; class_index int32 (B,), -1 = top-1.

        Returns cams (B, K, h, w) -- (B, K, H, W) for guided-gradcam --, classes (B, K), probabilities (B, C).
        """
        tf, _ = import_tf()
        with tf.GradientTape(watch_accessed_variables=False, persistent=self.top_k > 1) as tape:
            tape.watch(images)  # so frozen (non-trainable) models are recorded too
            activations, raw = self._explainer(self._preprocess(images), training=False)
            scores, probabilities = self._scores_and_probabilities(tf.cast(raw, tf.float32))
            if self.top_k == 1:
                top = tf.argmax(probabilities, axis=-1, output_type=tf.int32)
                chosen = tf.where(class_index >= 0, class_index, top)[:, None]
            else:
                chosen = tf.math.top_k(probabilities, k=self.top_k).indices
            picked = [tf.gather(scores, chosen[:, k], axis=1, batch_dims=1) for k in range(self.top_k)]
        activations32 = tf.cast(activations, tf.float32)
        guided = self._guided_gradients(images, chosen) if self._guided is not None else None
        cams = []
        for k, score in enumerate(picked):
            gradients = tf.cast(tape.gradient(score, activations), tf.float32)
            cam = self._map(activations32, gradients)
            if guided is not None:
                cam = guided_gradcam_map(guided[k], cam)
            cams.append(cam)
        return tf.stack(cams, axis=1), chosen, probabilities

    def _probabilities(self, images):
        _, raw = self._explainer(self._preprocess(images), training=False)
        return self._scores_and_probabilities(raw)[1]

    def predict(self, images: np.ndarray, batch_size: int = 32) -> np.ndarray:
        """Probabilities (B, C) for images float32 (B, H, W, 3) in [0, 255], forward pass only."""
        tf, _ = import_tf()
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
            scores, _ = self._scores_and_probabilities(tf.cast(raw, tf.float32))
            picked = [tf.gather(scores, chosen[:, k], axis=1, batch_dims=1) for k in range(self.top_k)]
        return [tf.cast(tape.gradient(score, images), tf.float32) for score in picked]

    def check_class_index(self, class_index: int) -> None:
        """Raise UsageError unless 0 <= class_index < number of classes."""
        if not 0 <= class_index < self.num_classes:
            raise UsageError(f"class index {class_index} is out of range: the model has "
                             f"{self.num_classes} classes (0-{self.num_classes - 1})")

    def explain_batch(self, images: np.ndarray, class_index: int | Sequence[int] | None = None) -> BatchResult:
        """Explain a batch of resized photos in one forward/backward pass.

        Args:
            images: float32 (B, H, W, 3), values 0-255, at ``input_size``; not modified.
            class_index: None (each image's top-1 class), one index for all,
                or one index per image.
        """
        tf, _ = import_tf()
        batch = np.asarray(images, dtype=np.float32)
        if batch.ndim != 4 or batch.shape[1:3] != tuple(self.input_size):
            raise ValueError(f"images must be (B, {self.input_size[0]}, {self.input_size[1]}, 3); got {batch.shape}")
        if class_index is not None and self.top_k > 1:
            raise UsageError("a class index and top_k > 1 exclude each other: top_k explains the most "
                             "probable classes")
        if class_index is None:
            wanted = np.full(len(batch), -1, dtype=np.int32)
        else:
            wanted = np.broadcast_to(np.asarray(class_index, dtype=np.int32), (len(batch),)).copy()
            for index in np.unique(wanted):
                self.check_class_index(int(index))
        cams, chosen, probabilities = self._step(tf.constant(batch), tf.constant(wanted))
        return BatchResult(cams.numpy(), chosen.numpy(), probabilities.numpy())

    def deletion_baseline(self) -> np.ndarray:
        """float32 (3,): the RGB pixel value that the model's preprocessing maps to zero.

        RISE (Petsiuk et al., 2018) deletes pixels to zero in the model's input space: the
        ImageNet mean for caffe-style preprocessing, 127.5 for ``x / 127.5 - 1``, black for none.
        """
        if self._deletion_baseline is None:
            from .faithfulness import zero_pixel

            self._deletion_baseline = zero_pixel(self._preprocess)
        return self._deletion_baseline

    @property
    def map_size(self) -> tuple[int, int]:
        """(h, w) of the maps: the layer's spatial size, or the input size for guided-gradcam."""
        if self._guided is not None:
            return self.input_size
        return tuple(int(d) for d in self.target.output_shape[1:3])
