"""The Explainer: Grad-CAM (or another CAM method) for one model and one layer, the one public class of
:mod:`gradcam.explainers`. It checks the options and puts its collaborators together:

* :mod:`~gradcam.explainers.step`: the compiled forward/gradient step (the one GradientTape) and its graph;
* :mod:`~gradcam.explainers.targets`: the classes explained and a segmentation model's regions;
* :mod:`~gradcam.explainers.augment`: aug-smooth;
* :mod:`~gradcam.explainers.perturbed`: the model side of Score-CAM and Ablation-CAM, whose arithmetic is in
  :mod:`~gradcam.explainers.perturbation`;
* :mod:`~gradcam.explainers.costs`: cost estimates;
* :mod:`~gradcam.explainers.signed`: the note on signed activations.

Maps are (batch, h, w) float32 at the explained layer's size (its token grid for a transformer layer),
not yet normalised (see :mod:`gradcam.explainers.heatmap`).
"""
from __future__ import annotations

import warnings
from typing import Sequence

import numpy as np

from .._tf import import_tf
from ..errors import UsageError
from ..models.graph import build_explainer_model
from ..models.guided import build_guided_model
from ..models.loading import Classifier, model_input_size, preprocess_function
from ..names import DEFAULT_BATCH_SIZE, METHOD_NAMES, did_you_mean
from .augment import aug_smooth
from .costs import CostEstimates
from .methods import GUIDED_METHOD, PERTURBATION_METHODS
from .perturbation import perturbation_maps
from .perturbed import PerturbedModelSide
from .results import BatchResult
from .signed import signed_note
from .step import GradientStep, explained_layer, input_kind, layer_map_size
from .targets import Targets, refuse_unless_gradient

__all__ = ["BatchResult", "Explainer", "SignedActivationsWarning"]


class SignedActivationsWarning(UserWarning):
    """The explained layer has negative activations, which the method's formula does not assume."""


class Explainer(PerturbedModelSide, CostEstimates):
    """Grad-CAM (or another CAM method) for one model and one layer.

    The forward pass, the gradient and the weighted sum run in one ``tf.function`` with a fixed image
    size and a free batch size, traced once (:class:`~gradcam.explainers.step.GradientStep`).

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
        import_tf()  # quietly, before anything touches TensorFlow
        if not isinstance(model, Classifier):
            model = Classifier(model, model.name, tuple(input_size or model_input_size(model)), preprocess or "none")
        if method not in METHOD_NAMES:
            raise UsageError(f"unknown method {method!r}{did_you_mean(method, METHOD_NAMES, list_all=True)}")
        self.classifier, self.method, self.output = model, method, output
        self.eigen_smooth, self.aug_smooth = eigen_smooth, aug_smooth
        self.max_channels, self.batch_size = max_channels, max(1, batch_size)
        self.on_progress = None  # (done, total) after each batch of masks (Score-CAM/Ablation-CAM)
        self.input_size: tuple[int, ...] = tuple(input_size or model.input_size)
        self.volumetric, self.channels, self.ndim = input_kind(model.model)
        self.perturbation = method in PERTURBATION_METHODS
        not_gradient = self.perturbation or method == GUIDED_METHOD or aug_smooth
        refuse_unless_gradient("volumetric", method, aug_smooth, self.volumetric and not_gradient)
        self.model, self.target, self.extra_tokens, self.head = explained_layer(model.model, output, layer,
                                                                                extra_tokens)
        explainer_model = build_explainer_model(self.model, self.target, self.head)
        self._targets = targets = Targets(self.head, tuple(explainer_model.outputs[1].shape))
        self.segmentation, self.output_size, self.regression, self.num_classes = targets.kind()
        refuse_unless_gradient("segmentation", method, aug_smooth, self.segmentation and not_gradient)
        self._preprocess = preprocess_function(preprocess or model.preprocess)
        self._deletion_baseline: np.ndarray | None = None
        self.negative_activations = False  # set once a batch's layer activations had negative values
        if max_channels is not None and max_channels < 1:
            raise UsageError(f"--max-channels must be at least 1, not {max_channels}")
        self.top_k = targets.set_top_k(top_k)
        self._guided = build_guided_model(self.model, self.head) if method == GUIDED_METHOD else None
        self._steps = GradientStep(explainer_model, targets, self._preprocess, method, eigen_smooth, self._guided,
                                  self.extra_tokens, (*self.input_size, self.channels))
        self._step = self._steps.step  # the compiled forward/gradient step

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

    @property
    def layer_name(self) -> str:
        """Path of the explained layer (``vgg19/block5_conv4`` when nested)."""
        return self.target.path

    @property
    def class_names(self) -> list[str] | None:
        return self.classifier.class_names

    def class_name(self, index: int) -> str | None:
        return self._targets.class_name(index, self.class_names)

    def check_class_index(self, class_index: int) -> None:
        """Raise UsageError unless 0 <= class_index < number of classes."""
        self._targets.check_class_index(class_index)

    def predict(self, images: np.ndarray, batch_size: int = 32) -> np.ndarray:
        """Probabilities (B, C) for images float32 (B, H, W, 3) in [0, 255], forward pass only."""
        if self.segmentation:
            raise UsageError("faithfulness scores (--evaluate) need a classifier, not a segmentation model")
        return self._steps.predict(images, batch_size)

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
        batch = self._steps.batch(images)
        self._targets.set_regions(len(batch), regions)
        result = self._maps(batch, self._targets.wanted(len(batch), class_index))
        return aug_smooth(self._maps, batch, result) if self.aug_smooth else result

    def _maps(self, batch: np.ndarray, classes: np.ndarray) -> BatchResult:
        if self.perturbation:
            result = perturbation_maps(self, self.method, batch, classes, self.max_channels, self.eigen_smooth,
                                       self.batch_size, self.on_progress)
        else:
            result = self._steps.explain(batch, classes)
        if result.negative_activations and not self.negative_activations:
            self.negative_activations = True
            note = self.signed_note()
            if note:
                warnings.warn(note, SignedActivationsWarning, stacklevel=3)
        return result

    def signed_note(self) -> str | None:
        """What to tell the user when the layer's activations are signed and the method assumes they
        are not (Grad-CAM++, XGrad-CAM); None otherwise."""
        return signed_note(self.layer_name, self.method) if self.negative_activations else None

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
        return self.input_size if self._guided is not None else layer_map_size(self.target, self.extra_tokens)
