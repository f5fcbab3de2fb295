"""Is the heatmap faithful?  Deletion/insertion (Petsiuk et al., RISE, 2018), average drop
(Chattopadhay et al., 2018), and the model-randomisation sanity check (Adebayo et al., 2018).

All images here are at the model's input size: float32 (H, W, 3) in [0, 255];
heatmaps are float32 (H, W) in [0, 1].
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from .heatmap import normalize, upsample


def _auc(curve: np.ndarray) -> float:
    """Area under a curve sampled at N + 1 evenly spaced points of [0, 1] (trapezoid rule)."""
    steps = len(curve) - 1
    return float((curve[:-1] + curve[1:]).sum() / (2 * steps))


def pixel_masks(heatmap: np.ndarray, steps: int) -> np.ndarray:
    """Masks (steps + 1, H, W) in {0, 1}: mask i covers the first round(i * H * W / steps) pixels
    in order of decreasing heatmap value (ties in row-major order)."""
    height, width = heatmap.shape
    order = np.argsort(-heatmap.ravel(), kind="stable")
    counts = np.rint(np.linspace(0, height * width, steps + 1)).astype(int)
    rank = np.empty(height * width, dtype=np.int64)
    rank[order] = np.arange(height * width)
    return (rank[None, :] < counts[:, None]).reshape(steps + 1, height, width).astype(np.float32)


def blurred(image: np.ndarray) -> np.ndarray:
    """The insertion start: a strong Gaussian blur of the image (sigma = 1/16 of its larger side)."""
    from scipy import ndimage

    sigma = max(image.shape[:2]) / 16.0
    return ndimage.gaussian_filter(image, sigma=(sigma, sigma, 0), mode="nearest").astype(np.float32)


@dataclass
class Faithfulness:
    """Scores of one heatmap.  Curves: probability of the class after each of the N + 1 steps."""

    deletion_curve: np.ndarray
    insertion_curve: np.ndarray
    deletion_auc: float
    insertion_auc: float
    average_drop: float  # percent: max(0, p - p_kept) / p * 100, where only the heatmap's region is kept
    increase: bool  # p_kept > p (the "increase in confidence" of Chattopadhay et al.)

    def as_record(self) -> dict:
        return {"deletion_auc": self.deletion_auc, "insertion_auc": self.insertion_auc,
                "average_drop": self.average_drop, "increase_in_confidence": self.increase}


def faithfulness(predict, image: np.ndarray, heatmap: np.ndarray, class_index: int, steps: int = 20,
                 baseline: str = "black") -> Faithfulness:
    """Deletion and insertion curves and average drop for one image and heatmap.

    Deletion replaces pixels, most important first, by black (0) in ``steps``
    steps; insertion reveals them in the same order over the blurred image
    (``baseline="blur"``, as in RISE) or over black. The probability of
    ``class_index`` is recorded after each step; all 2 (steps + 1) + 1 images
    go through ``predict`` (images (B, H, W, 3) -> probabilities (B, C)) as one batch.
    Deletion's first step is the whole image, so it also gives the full probability.
    """
    image = np.asarray(image, dtype=np.float32)
    masks = pixel_masks(heatmap, steps)[..., None]
    start = blurred(image) if baseline == "blur" else np.zeros_like(image)
    deleted = image[None] * (1.0 - masks)
    inserted = start[None] * (1.0 - masks) + image[None] * masks
    kept = image * heatmap[..., None]
    batch = np.concatenate([deleted, inserted, kept[None]])
    probability = np.asarray(predict(batch))[:, class_index]
    n = steps + 1
    deletion, insertion = probability[:n], probability[n : 2 * n]
    full, masked = float(deletion[0]), float(probability[-1])
    drop = max(0.0, full - masked) / full * 100.0 if full > 0 else 0.0
    return Faithfulness(deletion, insertion, _auc(deletion), _auc(insertion), drop, masked > full)


def input_heatmap(cam: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A class activation map normalised and upsampled to the model's input size (H, W)."""
    return upsample(normalize(cam)[0], size)


def curves_figure(result: Faithfulness, title: str) -> np.ndarray:
    """The deletion and insertion curves as a uint8 (H, W, 3) matplotlib figure."""
    from matplotlib.figure import Figure

    from .render import figure_pixels

    figure = Figure(figsize=(6.4, 4.0), dpi=100)
    axes = figure.add_subplot(1, 1, 1)
    x = np.linspace(0, 1, len(result.deletion_curve))
    axes.plot(x, result.deletion_curve, label=f"deletion (AUC {result.deletion_auc:.3f}, lower is better)")
    axes.plot(x, result.insertion_curve, label=f"insertion (AUC {result.insertion_auc:.3f}, higher is better)")
    axes.set_xlabel("fraction of pixels removed / revealed, most important first")
    axes.set_ylabel("class probability")
    axes.set_ylim(-0.02, 1.02)
    axes.legend(fontsize=8)
    axes.set_title(title, fontsize=10)
    return figure_pixels(figure)


# --------------------------------------------------------------------------- sanity check


@dataclass
class SanityStep:
    """After randomising ``layer`` and every layer above it: mean rank correlation with the original maps."""

    layer: str
    rank_correlation: float
    per_image: list[float] = field(default_factory=list)


def rank_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation of two maps (0 when either is constant)."""
    from scipy import stats

    a, b = np.ravel(a), np.ravel(b)
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return 0.0
    return float(stats.spearmanr(a, b).statistic)


def cascading_randomization(explainer_factory, model, images: np.ndarray, class_index: np.ndarray,
                            seed: int = 0) -> tuple[np.ndarray, list[SanityStep]]:
    """The model-randomisation test of Adebayo et al. (2018), cascading from the top.

    A copy of ``model`` is made (the caller's model is never changed); its
    layers with weights are re-initialised one at a time from the output
    down, each with normal values of the same mean and standard deviation
    per weight tensor, and the same images and classes are explained again.

    Args:
        explainer_factory: model -> Explainer for the same layer and method.
        images: float32 (B, H, W, 3) at the input size.
        class_index: int (B,) the classes explained on the original model.

    Returns:
        (original cams (B, h, w), one SanityStep per randomised layer).
    """
    from ._tf import import_tf
    from .models import iter_layers

    _, keras = import_tf()
    original = explainer_factory(model).explain_batch(images, class_index).cams
    copy = keras.models.clone_model(model, recursive=True) if not isinstance(model, keras.Sequential) \
        else keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    rng = np.random.default_rng(seed)
    weighted = [info for info in iter_layers(copy) if info.layer.get_weights() and not isinstance(info.layer, keras.Model)]
    steps = []
    for info in reversed(weighted):
        info.layer.set_weights([
            rng.normal(w.mean(), w.std() if w.std() > 0 else 0.05, w.shape).astype(w.dtype)
            for w in info.layer.get_weights()
        ])
        # a fresh explainer each step: it holds copies of some layers (the linear score head,
        # guided ReLU twins) whose weights are taken when it is built
        cams = explainer_factory(copy).explain_batch(images, class_index).cams
        per_image = [rank_correlation(a, b) for a, b in zip(original, cams)]
        steps.append(SanityStep(info.path, float(np.mean(per_image)), per_image))
    return original, steps


@dataclass
class SanityReport:
    """Result of :func:`sanity_check`: the steps, the verdict, and what failed to load."""

    layer: str
    method: str
    inputs: list[str]
    class_index: list[int]
    steps: list[SanityStep]
    failures: list[tuple[str, str]]

    #: the test passes when, with every layer random, the mean rank correlation is below this
    threshold: float = 0.5

    @property
    def final_correlation(self) -> float:
        return self.steps[-1].rank_correlation if self.steps else 1.0

    @property
    def passed(self) -> bool:
        return self.final_correlation < self.threshold

    def as_dict(self) -> dict:
        return {"layer": self.layer, "method": self.method, "inputs": self.inputs,
                "class_index": self.class_index, "passed": self.passed, "threshold": self.threshold,
                "steps": [{"layer": s.layer, "rank_correlation": s.rank_correlation, "per_image": s.per_image}
                          for s in self.steps]}


def sanity_check(explainer, items, class_index: int | None = None, max_pixels: int | None = None) -> SanityReport:
    """Run :func:`cascading_randomization` for the images of ``items`` with ``explainer``'s model,
    layer and method; unreadable images are listed in ``failures``."""
    from .cam import Explainer
    from .errors import ImageError, UsageError
    from .images import DEFAULT_MAX_PIXELS, load_image, resize_for_model

    photos, names, failures = [], [], []
    for item in items:
        try:
            photo = load_image(item.path, max_pixels or DEFAULT_MAX_PIXELS)
        except ImageError as exc:
            failures.append((str(item.path), str(exc)))
            continue
        photos.append(resize_for_model(photo, explainer.input_size))
        names.append(str(item.path))
    if not photos:
        raise UsageError("no readable image to run the sanity check on")
    images = np.stack(photos)
    classes = explainer.explain_batch(images, class_index).class_index
    def factory(model):
        return Explainer(dataclasses.replace(explainer.classifier, model=model),
                         explainer.layer_name, explainer.method)

    _, steps = cascading_randomization(factory, explainer.classifier.model, images, classes)
    return SanityReport(explainer.layer_name, explainer.method, names, [int(c) for c in classes], steps, failures)
