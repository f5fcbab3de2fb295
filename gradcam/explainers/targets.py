"""What an Explainer explains: the model's kind (classifier, regression or segmentation) read from its
output, the classes of each image (given, or the ``top_k`` most probable) and, for a segmentation model,
the region whose class score is explained.

The graph functions (:meth:`Targets.pick`, :meth:`Targets.scores_and_probabilities`) run inside the
compiled steps of :mod:`gradcam.explainers.step`; the rest checks and prepares NumPy inputs.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .._tf import import_tf
from ..errors import UsageError
from ..models.graph import ScoreHead, region_scores_and_probabilities, scores_and_probabilities, segmentation_classes


def refuse_unless_gradient(kind: str, method: str, aug_smooth: bool, refused: bool) -> None:
    """Raise UsageError when ``refused``: ``kind`` models ("volumetric", "segmentation") are explained by
    the gradient methods only, without aug-smooth."""
    if refused:
        raise UsageError(f"{kind} models are explained by the gradient methods, without --aug-smooth; "
                         f"not by {'--aug-smooth' if aug_smooth else method}")


class Targets:
    """The classes (and segmentation regions) explained, for a model whose raw output has ``score_shape``:
    (batch, classes) for a classifier or regression, (batch, height, width, classes) for segmentation.

    Attributes:
        segmentation, regression: the model's kind; ``num_classes`` its classes (2 for one sigmoid unit,
            background and foreground for a one-channel segmentation).
        output_size: (height, width) of a segmentation model's output, else None.
        regions: segmentation: a non-trainable float32 variable (B, height, width) read by the compiled
            steps, 1 inside the explained region, -1 everywhere for each class's own pixels; else None.
        top_k: the ranks explained per image (see :meth:`set_top_k`).
    """

    def __init__(self, head: ScoreHead, score_shape: tuple):
        tf, _ = import_tf()
        self.head = head
        self.segmentation = len(score_shape) == 4 and None not in score_shape[1:]
        if len(score_shape) != 2 and not self.segmentation:
            raise UsageError(f"the model's output has shape {score_shape}; a classifier's is (batch, classes), "
                             "a segmentation model's (batch, height, width, classes)")
        self.output_size: tuple[int, int] | None = tuple(score_shape[1:3]) if self.segmentation else None
        self.regions = tf.Variable(-tf.ones((1, *self.output_size)), shape=tf.TensorShape([None, *self.output_size]),
                                   trainable=False, name="gradcam_regions") if self.segmentation else None
        self.regression = head.kind == "value"
        self.binary = score_shape[-1] == 1 and not self.regression and not self.segmentation
        self.num_classes: int = 2 if self.binary else int(score_shape[-1])
        if self.segmentation:  # one channel: background (0) and foreground (1)
            self.num_classes = segmentation_classes(head, int(score_shape[-1]))
        self.top_k = 1

    def kind(self) -> tuple[bool, tuple[int, int] | None, bool, int]:
        """(segmentation, output_size, regression, num_classes)."""
        return self.segmentation, self.output_size, self.regression, self.num_classes

    def set_top_k(self, top_k: int) -> int:
        """Check and keep the number of ranks explained per image; returns it."""
        if not 1 <= top_k <= self.num_classes:
            raise UsageError(f"--top-k must be between 1 and the number of classes ({self.num_classes}), not {top_k}")
        self.top_k = top_k
        return top_k

    def class_name(self, index: int, names: list[str] | None) -> str | None:
        """The name of class ``index`` among ``names`` ("value" for a regression), or None."""
        if self.regression:
            return "value"
        return names[index] if names is not None and 0 <= index < len(names) else None

    def check_class_index(self, class_index: int) -> None:
        """Raise UsageError unless 0 <= class_index < number of classes."""
        if not 0 <= class_index < self.num_classes:
            raise UsageError(f"class index {class_index} is out of range: the model has "
                             f"{self.num_classes} classes (0-{self.num_classes - 1})")

    def wanted(self, count: int, class_index: int | Sequence[int] | None) -> np.ndarray:
        """int32 (count, K) classes for the compiled steps: -1 where the most probable are wanted (None),
        else the given index (one for all, or one per image) with K = 1."""
        if class_index is not None and self.top_k > 1:
            raise UsageError("a class index and top_k > 1 exclude each other: top_k explains the most "
                             "probable classes")
        if class_index is None:
            return np.full((count, self.top_k), -1, dtype=np.int32)
        wanted = np.broadcast_to(np.asarray(class_index, dtype=np.int32), (count,)).copy()[:, None]
        for index in np.unique(wanted):
            self.check_class_index(int(index))
        return wanted

    def set_regions(self, count: int, regions: np.ndarray | None) -> None:
        """Hold the batch's regions (count, h, w) or (h, w) at ``output_size`` for the compiled steps
        (segmentation models); None: each class's own pixels."""
        if not self.segmentation:
            if regions is not None:
                raise UsageError("a region applies to segmentation models (output (batch, height, width, classes))")
            return
        if regions is None:
            values = -np.ones((count, *self.output_size), np.float32)
        else:
            values = np.broadcast_to(np.asarray(regions, np.float32), (count, *self.output_size))
        self.regions.assign(np.ascontiguousarray(values))

    # -- graph functions, called inside the compiled steps
    def scores_and_probabilities(self, raw):
        """Per-class scores (B, C) and probabilities (B, C) from the model's last layer (for a segmentation
        model: over each class's region, see :func:`~gradcam.models.graph.region_scores_and_probabilities`)."""
        if self.segmentation:
            return region_scores_and_probabilities(raw, self.head, self.regions)[:2]
        return scores_and_probabilities(raw, self.head, self.binary)

    def choose(self, probabilities, classes):
        """classes int32 (B, K): given classes, or -1 where the K most probable are wanted."""
        tf, _ = import_tf()
        ranked = tf.math.top_k(probabilities, k=self.top_k).indices
        return tf.where(classes >= 0, classes, ranked)

    def pick(self, raw, classes, count):
        """From the model's raw output and classes int32 (B, K) (-1 = ranked), B = ``count``: scores (B, C),
        probabilities (B, C), the chosen classes int32 (B, K) and their regions float32 (B, K, h, w)
        (each rank's region of a segmentation model; (B, K, 0, 0) for a classifier)."""
        tf, _ = import_tf()
        if self.segmentation:
            scores, probabilities, masks, ranking = region_scores_and_probabilities(raw, self.head, self.regions)
            chosen = self.choose(ranking, classes)
            regions = tf.transpose(tf.gather(masks, chosen, axis=3, batch_dims=1), (0, 3, 1, 2))
        else:
            scores, probabilities = self.scores_and_probabilities(raw)
            chosen = self.choose(probabilities, classes)
            regions = tf.zeros((count, self.top_k, 0, 0))
        return scores, probabilities, chosen, regions
