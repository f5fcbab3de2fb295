"""The model-randomisation sanity check (Adebayo et al., *Sanity Checks for Saliency Maps*, 2018):
re-initialise the model's layers from the top down and measure how much the heatmaps change.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from .._tf import import_tf
from ..errors import HeatmapError, ImageError, UsageError
from ..inputs.images import DEFAULT_MAX_PIXELS, load_for_model
from ..models.layers import iter_layers
from .sanity_report import SanityReport, SanityStep

__all__ = ["SanityReport", "SanityStep", "cascading_randomization", "rank_correlation", "reinitialize",
           "sanity_check", "is_constant"]


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
                            seed: int = 0, draws: int = 1) -> tuple[np.ndarray, list[SanityStep]]:
    """The model-randomisation test of Adebayo et al. (2018), cascading from the top, ``draws`` times.

    A copy of ``model`` is made (the caller's model is never changed); its
    layers with weights are re-initialised one at a time from the output
    down, with their own initializers (:func:`reinitialize`), and the same
    images and classes are explained again by one explainer of the copy (it
    reads the copy's variables as they are at each step). Each draw starts again
    from the trained weights and draws new random ones: layer ``number`` (0 at
    the top) of draw ``d`` is seeded with ``seed + 1000 * (d * layers + number)``
    (draw 0 as a single cascade always was), so no two re-initialisations share a seed
    (:func:`reinitialize` adds each weight's position, below 1000 in any layer).

    Images whose original map is constant rank nothing and are left out of every
    correlation; each step counts the randomised maps that became constant.

    Args:
        explainer_factory: model -> Explainer for the same layer and method.
        images: float32 (B, H, W, 3) at the input size.
        class_index: int (B,) the classes explained on the original model.
        draws: independent random re-initialisations of the whole cascade, >= 1.

    Returns:
        (original cams (B, h, w), one SanityStep per randomised layer, each with ``draws`` rows).

    Raises:
        HeatmapError: a map, original or after some step, has NaN or infinite values.
    """
    _, keras = import_tf()
    if draws < 1:
        raise UsageError(f"the sanity check needs at least 1 random draw, not {draws}")
    original = _finite_cams(explainer_factory(model).explain_batch(images, class_index).cams, "on the original model")
    kept = [i for i, cam in enumerate(original) if not is_constant(cam)]
    copy = keras.models.clone_model(model, recursive=True) if not isinstance(model, keras.Sequential) \
        else keras.models.clone_model(model)
    trained = model.get_weights()
    explainer = explainer_factory(copy)
    weighted = [info for info in iter_layers(copy) if info.layer.weights and not isinstance(info.layer, keras.Model)]
    top_down = list(reversed(weighted))
    correlations = np.zeros((len(top_down), draws, len(kept)))
    constant = np.zeros(len(top_down), dtype=int)
    for draw in range(draws):
        copy.set_weights(trained)
        for number, info in enumerate(top_down):
            reinitialize(info.layer, seed + 1000 * (draw * len(top_down) + number))
            cams = _finite_cams(explainer.explain_batch(images, class_index).cams,
                                f"once the layers down to {info.path} are re-initialised")
            correlations[number, draw] = [rank_correlation(original[i], cams[i]) for i in kept]
            constant[number] += sum(is_constant(cams[i]) for i in kept)
    steps = [SanityStep(info.path, float(table.mean()) if kept else float("nan"), table.mean(axis=0).tolist(),
                        int(count), table.tolist())
             for info, table, count in zip(top_down, correlations, constant)]
    return original, steps


def sanity_check(explainer, items, class_index: int | None = None, max_pixels: int | None = None,
                 draws: int = 3, seed: int = 0) -> SanityReport:
    """Run :func:`cascading_randomization` ``draws`` times (seeded with ``seed``) for the images of
    ``items`` with ``explainer``'s model, layer and method; unreadable images are listed in ``failures``.
    The report's confidence intervals are bootstrapped with the same ``seed``."""
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

    original, steps = cascading_randomization(factory, explainer.classifier.model, images, classes, seed, draws)
    constant = [name for name, cam in zip(names, original) if is_constant(cam)]
    return SanityReport(explainer.layer_name, explainer.method, names, [int(c) for c in classes], steps, failures,
                        constant, seed)
