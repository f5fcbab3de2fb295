"""The model-randomisation sanity check (Adebayo et al., *Sanity Checks for Saliency Maps*, 2018):
re-initialise the model's layers from the top down and measure how much the heatmaps change.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from ._tf import import_tf
from .errors import HeatmapError, ImageError, UsageError
from .images import DEFAULT_MAX_PIXELS, load_for_model
from .layers import iter_layers


@dataclass
class SanityStep:
    """After randomising ``layer`` and every layer above it: mean rank correlation with the original
    maps (over the images whose original map is not constant), and how many randomised maps became
    constant (counted as correlation 0)."""

    layer: str
    rank_correlation: float
    per_image: list[float] = field(default_factory=list)
    constant_maps: int = 0


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
    _, keras = import_tf()
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
    _, keras = import_tf()
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
    _, keras = import_tf()
    for position, variable in enumerate(layer.weights):
        initializer = _initializer_for(layer, variable) or _fallback_initializer(variable)
        config = initializer.get_config()
        if "seed" in config:
            initializer = type(initializer).from_config({**config, "seed": seed + position})
        variable.assign(keras.ops.cast(initializer(tuple(variable.shape), dtype=variable.dtype), variable.dtype))


def _finite_cams(cams: np.ndarray, when: str) -> np.ndarray:
    bad = ~np.isfinite(cams)
    if bad.any():
        images = int(bad.reshape(len(cams), -1).any(axis=1).sum())
        raise HeatmapError(f"sanity check stopped: the heatmap is not finite {when} "
                           f"({images} of {len(cams)} image(s) have NaN or infinite values), so no verdict")
    return cams


def is_constant(cam: np.ndarray) -> bool:
    """A map with one value everywhere: it ranks nothing, so no correlation can be taken with it."""
    return bool(np.ptp(np.ravel(cam)) == 0)


def cascading_randomization(explainer_factory, model, images: np.ndarray, class_index: np.ndarray,
                            seed: int = 0) -> tuple[np.ndarray, list[SanityStep]]:
    """The model-randomisation test of Adebayo et al. (2018), cascading from the top.

    A copy of ``model`` is made (the caller's model is never changed); its
    layers with weights are re-initialised one at a time from the output
    down, with their own initializers (:func:`reinitialize`), and the same
    images and classes are explained again by one explainer of the copy (it
    reads the copy's variables as they are at each step).

    Images whose original map is constant rank nothing and are left out of every
    correlation; each step counts the randomised maps that became constant.

    Args:
        explainer_factory: model -> Explainer for the same layer and method.
        images: float32 (B, H, W, 3) at the input size.
        class_index: int (B,) the classes explained on the original model.

    Returns:
        (original cams (B, h, w), one SanityStep per randomised layer).

    Raises:
        HeatmapError: a map, original or after some step, has NaN or infinite values.
    """
    _, keras = import_tf()
    original = _finite_cams(explainer_factory(model).explain_batch(images, class_index).cams, "on the original model")
    kept = [i for i, cam in enumerate(original) if not is_constant(cam)]
    copy = keras.models.clone_model(model, recursive=True) if not isinstance(model, keras.Sequential) \
        else keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    explainer = explainer_factory(copy)
    weighted = [info for info in iter_layers(copy) if info.layer.weights and not isinstance(info.layer, keras.Model)]
    steps = []
    for number, info in enumerate(reversed(weighted)):
        reinitialize(info.layer, seed + 1000 * number)
        cams = _finite_cams(explainer.explain_batch(images, class_index).cams,
                            f"once the layers down to {info.path} are re-initialised")
        per_image = [rank_correlation(original[i], cams[i]) for i in kept]
        mean = float(np.mean(per_image)) if per_image else float("nan")
        steps.append(SanityStep(info.path, mean, per_image, sum(is_constant(cams[i]) for i in kept)))
    return original, steps


@dataclass
class SanityReport:
    """Result of :func:`sanity_check`: the steps, the verdict, what failed to load, and the images left
    out because their original map was constant."""

    layer: str
    method: str
    inputs: list[str]
    class_index: list[int]
    steps: list[SanityStep]
    failures: list[tuple[str, str]]
    constant_inputs: list[str] = field(default_factory=list)

    #: the test passes when, with every layer random, the mean rank correlation is below this
    threshold: float = 0.5

    @property
    def compared(self) -> int:
        """Images whose maps were compared (original map not constant)."""
        return len(self.inputs) - len(self.constant_inputs)

    @property
    def final_correlation(self) -> float | None:
        return self.steps[-1].rank_correlation if self.steps and self.compared else None

    @property
    def passed(self) -> bool | None:
        """True or False; None (no verdict) when every original map was constant or nothing has weights."""
        final = self.final_correlation
        return None if final is None else final < self.threshold

    @property
    def first_below(self) -> SanityStep | None:
        """The first step (from the top) whose mean correlation falls below the threshold."""
        if not self.compared:
            return None
        return next((step for step in self.steps if step.rank_correlation < self.threshold), None)

    def lines(self) -> list[str]:
        """The report as text: what was done, one line per step, and the verdict."""
        lines = [f"Model-randomisation test (Adebayo et al., 2018) on {len(self.inputs)} image(s), layer "
                 f"{self.layer}, method {self.method}. Spearman rank correlation of each heatmap with the "
                 "original, as the layers are re-initialised from the top down:"]
        if self.constant_inputs:
            lines.append(f"  ({len(self.constant_inputs)} image(s) left out: their original map is constant, so it "
                         f"ranks nothing: {', '.join(self.constant_inputs[:5])}"
                         + (", ..." if len(self.constant_inputs) > 5 else "") + ")")
        if self.compared:
            lines += [f"  {number:3d}. up to {step.layer:<40} {step.rank_correlation:+.3f}"
                      + (f"   ({step.constant_maps} map(s) became constant)" if step.constant_maps else "")
                      for number, step in enumerate(self.steps, 1)]
        final, first = self.final_correlation, self.first_below
        if self.passed is None:
            reason = "every original map is constant" if self.steps else "the model has no weights to randomise"
            lines.append(f"NO VERDICT: {reason}, so no correlation can be measured.")
        elif self.passed:
            lines.append(f"PASS: the heatmaps change as the weights are destroyed (rank correlation {final:+.2f} "
                         f"once every layer is random; first below {self.threshold} once the layers down to "
                         f"{first.layer} are random), so they depend on what the model learned.")
        else:
            lines.append(f"FAIL: the heatmaps stay similar (rank correlation {final:+.2f}) even with every layer "
                         "random, so they show the image or the architecture more than what the model learned.")
        return lines

    def as_dict(self) -> dict:
        first = self.first_below
        return {"layer": self.layer, "method": self.method, "inputs": self.inputs,
                "class_index": self.class_index, "passed": self.passed, "threshold": self.threshold,
                "constant_inputs": self.constant_inputs, "first_below": first.layer if first else None,
                "steps": [{"layer": s.layer, "rank_correlation": s.rank_correlation if self.compared else None,
                           "per_image": s.per_image, "constant_maps": s.constant_maps} for s in self.steps]}


def sanity_check(explainer, items, class_index: int | None = None, max_pixels: int | None = None) -> SanityReport:
    """Run :func:`cascading_randomization` for the images of ``items`` with ``explainer``'s model,
    layer and method; unreadable images are listed in ``failures``."""
    photos, names, failures = [], [], []
    for item in items:
        try:
            _, model_input = load_for_model(item.path, explainer.input_size, max_pixels or DEFAULT_MAX_PIXELS)
        except ImageError as exc:
            failures.append((str(item.path), str(exc)))
            continue
        photos.append(model_input)
        names.append(str(item.path))
    if not photos:
        raise UsageError("no readable image to run the sanity check on")
    images = np.stack(photos)
    classes = explainer.explain_batch(images, class_index).class_index

    def factory(model):
        return explainer.with_model(dataclasses.replace(explainer.classifier, model=model))

    original, steps = cascading_randomization(factory, explainer.classifier.model, images, classes)
    constant = [name for name, cam in zip(names, original) if is_constant(cam)]
    return SanityReport(explainer.layer_name, explainer.method, names, [int(c) for c in classes], steps, failures,
                        constant)
