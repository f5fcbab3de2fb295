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


#: RISE's insertion start: the image blurred by an 11 x 11 Gaussian kernel of sigma 5 (at 224 px).
RISE_BLUR_TAPS, RISE_BLUR_SIGMA = 11, 5.0


def zero_pixel(preprocess) -> np.ndarray:
    """float32 (3,): the RGB value v in pixel space with preprocess(v) = 0 in every channel.

    ``preprocess`` maps images (B, H, W, 3) in [0, 255] to model input and is affine per
    pixel for every keras.applications family (caffe's channel flip included), so it is
    measured on four one-pixel images and solved; the result is clipped to [0, 255].
    """
    probes = np.zeros((4, 1, 1, 3), np.float32)
    for channel in range(3):
        probes[channel + 1, 0, 0, channel] = 255.0  # full-scale steps: float32 keeps their precision
    out = np.asarray(preprocess(probes.copy()), dtype=np.float64).reshape(4, 3)
    offset, matrix = out[0], (out[1:] - out[0]).T / 255.0  # model value = matrix @ pixel + offset
    try:
        value = np.linalg.solve(matrix, -offset)
    except np.linalg.LinAlgError:
        value = np.zeros(3)
    return (np.clip(value, 0.0, 255.0) + 0.0).astype(np.float32)  # + 0.0: no -0


def rise_kernel() -> np.ndarray:
    """RISE's 1-D blur kernel (11 taps): its 2-D kernel, a Gaussian filter (sigma 5) of a unit impulse
    on an 11 x 11 grid, is the outer product of this with itself."""
    from scipy import ndimage

    impulse = np.zeros(RISE_BLUR_TAPS)
    impulse[RISE_BLUR_TAPS // 2] = 1.0
    return ndimage.gaussian_filter1d(impulse, RISE_BLUR_SIGMA)


def blurred(image: np.ndarray, zero: np.ndarray | None = None) -> np.ndarray:
    """The insertion start of RISE: the image convolved with :func:`rise_kernel` in both directions,
    padded with ``zero`` (the pixel that is 0 in model space, as RISE pads the model input with 0).

    Args:
        image: float32 (H, W, 3) in [0, 255].
        zero: float32 (3,), default black.
    """
    from scipy import ndimage

    zero = np.zeros(3, np.float32) if zero is None else np.asarray(zero, np.float32)
    kernel = rise_kernel()
    out = np.empty(image.shape, np.float32)
    for channel in range(image.shape[2]):
        plane = ndimage.correlate1d(image[..., channel].astype(np.float64), kernel, axis=0, mode="constant",
                                    cval=float(zero[channel]))
        out[..., channel] = ndimage.correlate1d(plane, kernel, axis=1, mode="constant", cval=float(zero[channel]))
    return out


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
                 zero: np.ndarray | None = None) -> Faithfulness:
    """Deletion and insertion curves (RISE's protocol) and average drop for one image and heatmap.

    Deletion sets pixels, most important first, to ``zero`` (float32 (3,), the pixel that the
    model's preprocessing maps to 0; black when None) in ``steps`` steps of H W / steps pixels;
    insertion reveals them in the same order over :func:`blurred`. With ``steps`` = 224 at
    224 x 224 px this is RISE's protocol exactly (224 pixels a step). Average drop keeps
    ``zero + (image - zero) * heatmap``: the image times the heatmap in model space.
    The probability of ``class_index`` is recorded after each step; all 2 (steps + 1) + 1
    images go through ``predict`` (images (B, H, W, 3) -> probabilities (B, C)) as one batch.
    Deletion's first step is the whole image, so it also gives the full probability.
    """
    image = np.asarray(image, dtype=np.float32)
    zero = np.zeros(3, np.float32) if zero is None else np.asarray(zero, np.float32)
    masks = pixel_masks(heatmap, steps)[..., None]
    start = blurred(image, zero)
    deleted = image[None] * (1.0 - masks) + zero * masks
    inserted = start[None] * (1.0 - masks) + image[None] * masks
    kept = zero + (image - zero) * heatmap[..., None]
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


def _initializer_for(layer, variable):
    """The initializer that built ``variable`` of ``layer``: the layer's (or a sub-layer's)
    ``NAME_initializer`` attribute, e.g. kernel_initializer, moving_variance_initializer,
    depthwise_initializer for depthwise_kernel. None when there is none."""
    _, keras = _keras()
    name = variable.name.split("/")[-1].split(":")[0]
    attributes = [f"{name}_initializer", f"{name.removesuffix('_kernel')}_initializer"]
    owners = [layer] + [value for value in vars(layer).values() if isinstance(value, keras.layers.Layer)]
    for owner in owners:
        for attribute in attributes:
            initializer = getattr(owner, attribute, None)
            if initializer is not None:
                return keras.initializers.get(initializer)
    return None


def _fallback_initializer(variable):
    """For a weight without a known initializer: ones for scales and variances, zeros for other
    vectors, Glorot-uniform for matrices and kernels."""
    _, keras = _keras()
    name = variable.name.lower()
    if len(variable.shape) >= 2:
        return keras.initializers.GlorotUniform()
    if any(word in name for word in ("gamma", "scale", "variance")):
        return keras.initializers.Ones()
    return keras.initializers.Zeros()


def reinitialize(layer, seed: int) -> None:
    """Re-draw every weight of ``layer`` as when it was built (Adebayo et al., 2018): with the
    layer's own initializers (kernel and bias; BatchNormalization's gamma, beta and moving
    statistics...), each seeded with ``seed`` plus its position, so the result is reproducible.
    """
    _, keras = _keras()
    for position, variable in enumerate(layer.weights):
        initializer = _initializer_for(layer, variable) or _fallback_initializer(variable)
        config = initializer.get_config()
        if "seed" in config:
            initializer = type(initializer).from_config({**config, "seed": seed + position})
        variable.assign(keras.ops.cast(initializer(tuple(variable.shape), dtype=variable.dtype), variable.dtype))


def _keras():
    from ._tf import import_tf

    return import_tf()


def _finite_cams(cams: np.ndarray, when: str) -> np.ndarray:
    from .errors import HeatmapError

    bad = ~np.isfinite(cams)
    if bad.any():
        images = int(bad.reshape(len(cams), -1).any(axis=1).sum())
        raise HeatmapError(f"sanity check stopped: the heatmap is not finite {when} "
                           f"({images} of {len(cams)} image(s) have NaN or infinite values), so no verdict")
    return cams


def cascading_randomization(explainer_factory, model, images: np.ndarray, class_index: np.ndarray,
                            seed: int = 0) -> tuple[np.ndarray, list[SanityStep]]:
    """The model-randomisation test of Adebayo et al. (2018), cascading from the top.

    A copy of ``model`` is made (the caller's model is never changed); its
    layers with weights are re-initialised one at a time from the output
    down, with their own initializers (:func:`reinitialize`), and the same
    images and classes are explained again.

    Args:
        explainer_factory: model -> Explainer for the same layer and method.
        images: float32 (B, H, W, 3) at the input size.
        class_index: int (B,) the classes explained on the original model.

    Returns:
        (original cams (B, h, w), one SanityStep per randomised layer).

    Raises:
        HeatmapError: a map, original or after some step, has NaN or infinite values.
    """
    from .models import iter_layers

    _, keras = _keras()
    original = _finite_cams(explainer_factory(model).explain_batch(images, class_index).cams, "on the original model")
    copy = keras.models.clone_model(model, recursive=True) if not isinstance(model, keras.Sequential) \
        else keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    weighted = [info for info in iter_layers(copy) if info.layer.weights and not isinstance(info.layer, keras.Model)]
    steps = []
    for number, info in enumerate(reversed(weighted)):
        reinitialize(info.layer, seed + 1000 * number)
        # a fresh explainer each step: it holds copies of some layers (the linear score head,
        # guided ReLU twins) whose weights are taken when it is built
        cams = _finite_cams(explainer_factory(copy).explain_batch(images, class_index).cams,
                            f"once the layers down to {info.path} are re-initialised")
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
