"""The Python API for notebooks: ``gradcam.explain(model, images)`` and the :class:`Explanation` it gives.

>>> import gradcam                                              # doctest: +SKIP
>>> result = gradcam.explain("vgg19", "cat.jpg")                # doctest: +SKIP
>>> result.class_name, result.probability, result.heatmap.shape  # doctest: +SKIP
>>> result.overlay()        # a PIL image; result.figure() the side-by-side figure  # doctest: +SKIP
"""
from __future__ import annotations

import io
import os
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from .errors import UsageError
from .explainers.explainer import Explainer
from .explainers.heatmap import box_region, check_region, heatmap_at, mask_region
from .inputs.identity import DIGESTS
from .inputs.arrays import array_to_rgb
from .inputs.images import load_for_model, pil_to_rgb, resize_for_model
from .inputs.volumes import load_volume, resize_volume
from .metrics.faithfulness import faithfulness_scores
from .models.classes import find_class
from .models.loading import Classifier, load_classifier
from .names import DEFAULT_BATCH_SIZE
from .outputs.render import montage, panel, panel_title, planes_figure
from .outputs.render import overlay as blend
from .runs.pipeline import RunOptions, Summary
from .runs.pipeline import run as run_folder


@dataclass
class Explanation:
    """One heatmap for one image and class.

    Attributes:
        heatmap: float32 (H, W) in [0, 1] at the image's own size ((D, H, W) for a volume).
        image: uint8 (H, W, 3) the photo as explained (a copy; yours is not kept or changed); for a
            volume, float32 (D, H, W, C).
        class_index, class_name, probability: the explained class and the model's probability for it.
        layer, method: what was explained, and how.
        rank: 1 for the most probable class, ... (with ``top_k``).
        zero_heatmap: the map was constant, so the heatmap is all zeros.
    """

    heatmap: np.ndarray = field(repr=False)
    image: np.ndarray = field(repr=False)
    class_index: int
    class_name: str | None
    probability: float
    layer: str
    method: str
    rank: int = 1
    zero_heatmap: bool = False

    def overlay(self, alpha: float = 0.4, colormap: str = "jet"):
        """The coloured heatmap over the photo, as a PIL image (H x W, RGB); for a volume, a montage of
        axial slices with the heatmap over each."""
        from PIL import Image

        if self.heatmap.ndim == 3:
            return Image.fromarray(montage(self.image, self.heatmap, alpha, colormap))
        return Image.fromarray(blend(self.image, self.heatmap, alpha, colormap))

    def title(self) -> str:
        """'tabby (53.2%) · layer block5_conv4 · gradcam', as on the command line's panels."""
        return panel_title({"class_name": self.class_name, "class_index": self.class_index,
                            "probability": self.probability, "layer": self.layer, "method": self.method})

    def figure(self, alpha: float = 0.4, colormap: str = "jet"):
        """The photo and the overlay side by side under :meth:`title` (for a volume: its three central
        planes): a matplotlib Figure, which Jupyter shows as a picture (no ``%matplotlib inline`` needed)."""
        if self.heatmap.ndim == 3:
            return planes_figure(self.image, self.heatmap, self.title(), alpha, colormap)
        return panel(self.image, blend(self.image, self.heatmap, alpha, colormap), self.title())

    def _repr_png_(self) -> bytes:
        """Jupyter shows an Explanation as its overlay."""
        buffer = io.BytesIO()
        self.overlay().save(buffer, format="png")
        return buffer.getvalue()


class Explanations(list):
    """The list :func:`explain` returns for many images (or for the K ranks of one): a plain list of
    :class:`Explanation` (or of such lists) that Jupyter shows as the pictures it holds."""

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(*self)


#: (model given, Explainer) kept between calls (building one, and loading weights, takes seconds).
_EXPLAINERS: OrderedDict[tuple, tuple[Any, Explainer]] = OrderedDict()
_CACHE_SIZE = 4


def _classifier(model: Any, weights: str, preprocess: str | None):
    """A Classifier for a name or path; a Classifier or keras.Model as it is (the Explainer wraps a model)."""
    if isinstance(model, Classifier) or (hasattr(model, "inputs") and hasattr(model, "layers")):
        return model
    if isinstance(model, (str, os.PathLike)):
        return load_classifier(os.fspath(model), weights, preprocess)
    raise UsageError(f"model must be a model name, a .keras/.h5 path or a keras.Model, not {type(model).__name__}")


def explainer_for(model: Any, layer: str | None = None, method: str = "gradcam", top_k: int = 1,
                  weights: str = "imagenet", preprocess: str | None = None, **options) -> Explainer:
    """An :class:`~gradcam.cam.Explainer` for a model name, path, keras.Model or Classifier; the last
    few are kept, so calling :func:`explain` again with the same model builds nothing. ``options``:
    the Explainer's ``eigen_smooth``, ``aug_smooth``, ``max_channels``, ``extra_tokens``, ``batch_size``,
    ``output``."""
    # a file is known by its content: a model retrained and saved over the same path is another model
    key_model = (os.fspath(model), DIGESTS.digest(model)) if isinstance(model, (str, os.PathLike)) else id(model)
    key = (key_model, layer, method, top_k, weights, DIGESTS.digest(weights), preprocess,
           tuple(sorted(options.items())))
    cached = _EXPLAINERS.get(key)
    if cached is not None and (not isinstance(key_model, int) or cached[0] is model):
        _EXPLAINERS.move_to_end(key)
        return cached[1]
    explainer = Explainer(_classifier(model, weights, preprocess), layer, method, preprocess, top_k=top_k, **options)
    _EXPLAINERS[key] = (model, explainer)
    while len(_EXPLAINERS) > _CACHE_SIZE:
        _EXPLAINERS.popitem(last=False)
    return explainer


def to_photo(image: Any) -> np.ndarray:
    """uint8 (H, W, 3) from a file path, a PIL image or an array (see :func:`~gradcam.images.array_to_rgb`).

    Raises:
        ImageError: an unreadable file or an unusable array.
    """
    if isinstance(image, (str, os.PathLike)):
        return load_image(image)
    if hasattr(image, "getbands") and hasattr(image, "convert"):  # a PIL image
        return pil_to_rgb(image)
    return array_to_rgb(image)


def _photo_and_input(image: Any, size: tuple[int, int], window: tuple[float, float] | None
                     ) -> tuple[np.ndarray, np.ndarray]:
    """(photo uint8 (H, W, 3), model input float32 (h, w, 3)); a DICOM file's windowed values reach the
    model unrounded."""
    if isinstance(image, (str, os.PathLike)):
        return load_for_model(image, size, window=window)
    photo = to_photo(image)
    return photo, resize_for_model(photo, size)


def _region(region: Any, photo_size: tuple[int, int], grid_size: tuple[int, int]) -> np.ndarray:
    """A box (x0, y0, x1, y1) or a mask (H, W) of an image as a region on the model's output grid."""
    if np.ndim(region) == 1 and len(region) == 4:
        return box_region(tuple(int(v) for v in region), photo_size, grid_size)
    mask = np.asarray(region)
    if mask.ndim != 2:
        raise UsageError("region must be a box (x0, y0, x1, y1) or a mask array (H, W)")
    if not mask.any():
        raise UsageError("the region mask has no pixel set")
    return mask_region(mask != 0, photo_size, grid_size)


def _is_single(images: Any, volumetric: bool = False) -> bool:
    if isinstance(images, (str, os.PathLike)) or hasattr(images, "getbands"):
        return True
    if isinstance(images, np.ndarray):
        return images.ndim in ((3, 4) if volumetric else (2, 3))
    return False


def explain(model: Any, images: Any, layer: str | None = None, method: str = "gradcam",
            class_index: int | str | Sequence[int] | None = None, top_k: int = 1, *,
            weights: str = "imagenet", preprocess: str | None = None, batch_size: int = DEFAULT_BATCH_SIZE,
            eigen_smooth: bool = False, aug_smooth: bool = False, max_channels: int | None = None,
            extra_tokens: int | None = None, output: str | None = None, region: Any = None,
            window: tuple[float, float] | None = None):
    """Explain one image or many, in batches.

    Args:
        model: a model name (``"vgg19"``), a ``.keras``/``.h5`` path, or a ``keras.Model`` (its
            input size is used; give ``preprocess`` unless it normalises its own input).
        images: one image or a list of them: file paths, PIL images, or arrays (H, W, 3) (also
            (H, W), (H, W, 1), (H, W, 4)) of uint8, or of floats in 0-1 or 0-255; a 4-D array is
            a batch. Nothing you pass is modified.
        layer: layer name or nested path; default: the last convolutional feature map.
        method: ``gradcam``, ``gradcam++``, ``hirescam``, ``layercam``, ``xgradcam``,
            ``counterfactual``, ``guided-gradcam``, ``eigencam``, ``eigengradcam``, ``scorecam`` or
            ``ablationcam``.
        class_index: None (each image's top-1 class), a class index, a class name (ImageNet names,
            or the model's labels), or one index per image.
        top_k: explain each image's K most probable classes instead.
        weights: for a model name: ``imagenet`` (downloaded by Keras), ``random`` or a weights file.
        preprocess: a keras.applications preprocessing family or ``none``.
        batch_size: model inputs per forward pass: photos, or the masked/ablated copies of one photo
            for Score-CAM/Ablation-CAM (the command line's ``--batch-size``).
        eigen_smooth, aug_smooth, max_channels, extra_tokens, output: as the command line's options (``output``:
            the output of a model with several; a one-unit linear output is explained as its value, which
            ``probability`` then holds).
        region: segmentation models: a box ``(x0, y0, x1, y1)`` in each image's pixels, or a mask array
            (H, W) whose non-zero pixels are the region (stretched over each image); default: the pixels
            the model assigns to the class.
        window: DICOM files: the grey-level window (centre, width) instead of each file's own.

    Returns:
        For one image an :class:`Explanation` (a list of K ranked ones with ``top_k`` > 1); for a
        list or batch, a list with one such entry per image.

    Raises:
        GradcamError: a user error (unknown model, layer or class, unreadable image, a map that
            is not finite), with a one-line message.
    """
    if class_index is not None and top_k > 1:
        raise UsageError("give either class_index or top_k > 1, not both")
    if batch_size < 1:
        raise UsageError(f"batch_size must be at least 1, not {batch_size}")
    explainer = explainer_for(model, layer, method, top_k, weights, preprocess, eigen_smooth=eigen_smooth,
                              aug_smooth=aug_smooth, max_channels=max_channels, extra_tokens=extra_tokens,
                              batch_size=batch_size, output=output)
    single = _is_single(images, explainer.volumetric)
    items = [images] if single else list(images)
    if isinstance(class_index, str):
        classifier = explainer.classifier
        class_index = find_class(class_index, classifier.class_names, classifier.class_synonyms)
    per_image = class_index is not None and not isinstance(class_index, (int, np.integer))
    if per_image and len(class_index) != len(items):
        raise UsageError(f"class_index has {len(class_index)} entries for {len(items)} image(s)")
    results = []
    for start in range(0, len(items), batch_size):
        if explainer.volumetric:  # volumes: .npy paths or arrays, resampled in 3-D to the model's input
            photos = [load_volume(image, explainer.channels) for image in items[start : start + batch_size]]
            batch = np.stack([resize_volume(photo, explainer.input_size) for photo in photos])
        else:
            loaded = [_photo_and_input(image, explainer.input_size, window) for image in items[start : start + batch_size]]
            photos = [photo for photo, _ in loaded]
            batch = np.stack([model_input for _, model_input in loaded])
        wanted = class_index[start : start + len(photos)] if per_image else class_index
        regions = None
        if region is not None:
            if not explainer.segmentation:
                raise UsageError("region applies to segmentation models (output (batch, height, width, classes))")
            regions = np.stack([_region(region, photo.shape[:2], explainer.output_size) for photo in photos])
        result = explainer.explain_batch(batch, wanted, regions)
        probability = result.ranked_probability
        for i, photo in enumerate(photos):
            ranked = []
            for k in range(top_k):
                if result.regions is not None:
                    check_region(result.regions[i, k], region is not None, int(result.ranked_class_index[i, k]))
                heatmap, constant = heatmap_at(result.ranked_cams[i, k], photo.shape[:explainer.ndim])
                index = int(result.ranked_class_index[i, k])
                ranked.append(Explanation(heatmap, photo, index, explainer.class_name(index),
                                          float(probability[i, k]), explainer.layer_name, explainer.method,
                                          k + 1, constant))
            results.append(ranked[0] if top_k == 1 else Explanations(ranked))
    return results[0] if single else Explanations(results)


def scorer_for(options: RunOptions):
    """The run's scorer when ``options.evaluate`` asks for scores (a
    :class:`~gradcam.metrics.evaluation.Evaluator` of ``options.evaluation``; without those settings,
    deletion, insertion and average drop alone), else None."""
    if not options.evaluate:
        return None
    from .metrics.evaluation import EvaluationSettings, Evaluator

    return Evaluator(EvaluationSettings.from_record(options.evaluation, options.steps))


def run(explainer: Explainer, items, options: RunOptions, on_record=None, previous: dict | None = None,
        run_id: str | None = None) -> Summary:
    """Explain every input of a folder run, writing outputs and manifest lines as they finish
    (:func:`gradcam.runs.pipeline.run`), scored for faithfulness when ``options.evaluate`` asks."""
    return run_folder(explainer, items, options, on_record, previous, run_id, scorer_for(options))
