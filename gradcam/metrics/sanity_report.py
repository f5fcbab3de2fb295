"""The model-randomisation test's report: the steps, the mean correlations with their confidence
intervals over images and random draws, the verdict, as text and as JSON."""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import numpy as np

from .sanity_stats import CONFIDENCE, MIN_IMAGES, RESAMPLES, THRESHOLD, bootstrap_intervals, decide, images_needed


@dataclass
class SanityStep:
    """After randomising ``layer`` and every layer above it: the Spearman rank correlations of the
    randomised maps with the original ones, for the images whose original map is not constant.

    ``per_draw`` float (draws, images): one row per random draw; ``per_image`` the mean over the draws
    of each image; ``rank_correlation`` the mean over all; ``constant_maps`` how many randomised maps
    (over images and draws) became constant (each counted as correlation 0)."""

    layer: str
    rank_correlation: float
    per_image: list[float] = field(default_factory=list)
    constant_maps: int = 0
    per_draw: list[list[float]] | None = None

    @property
    def table(self) -> np.ndarray:
        """float64 (draws, images): ``per_draw``, or ``per_image`` as one draw when it is not given."""
        return np.array(self.per_draw if self.per_draw is not None else [self.per_image], dtype=np.float64)


def _number(value: float | None) -> float | None:
    """JSON has no NaN: None for a missing or non-finite value."""
    return None if value is None or not math.isfinite(value) else float(value)


@dataclass
class SanityReport:
    """Result of :func:`~gradcam.sanity.sanity_check`: the steps, the verdict, what failed to load, and
    the images left out because their original map was constant.

    The verdict is taken on the last step (every layer random): PASS when the whole confidence interval
    of the mean correlation over images and draws (:func:`~gradcam.sanity_stats.bootstrap_intervals`,
    seeded with ``seed``) is below ``threshold``, FAIL when none of it is, otherwise no verdict -- as
    with fewer than ``min_images`` compared images."""

    layer: str
    method: str
    inputs: list[str]
    class_index: list[int]
    steps: list[SanityStep]
    failures: list[tuple[str, str]]
    constant_inputs: list[str] = field(default_factory=list)
    seed: int = 0

    #: the test passes when, with every layer random, the rank correlation is surely below this
    threshold: float = THRESHOLD
    min_images: int = MIN_IMAGES
    confidence: float = CONFIDENCE
    resamples: int = RESAMPLES

    @property
    def compared(self) -> int:
        """Images whose maps were compared (original map not constant)."""
        return len(self.inputs) - len(self.constant_inputs)

    @property
    def draws(self) -> int:
        """Random re-initialisations of the cascade."""
        return self.steps[0].table.shape[0] if self.steps else 0

    @functools.cached_property
    def intervals(self) -> np.ndarray:
        """float64 (steps, 2): each step's confidence interval; NaN with fewer than 2 compared images."""
        if not self.steps or self.compared < 2:
            return np.full((len(self.steps), 2), np.nan)
        tables = np.stack([step.table for step in self.steps])
        return bootstrap_intervals(tables, self.seed, self.resamples, self.confidence)

    @property
    def final_correlation(self) -> float | None:
        """The mean correlation over images and draws once every layer is random."""
        return self.steps[-1].rank_correlation if self.steps and self.compared else None

    @property
    def final_interval(self) -> tuple[float, float] | None:
        if self.final_correlation is None or self.compared < 2:
            return None
        low, high = self.intervals[-1]
        return float(low), float(high)

    @property
    def passed(self) -> bool | None:
        """True (PASS) or False (FAIL); None (no verdict): the interval contains the threshold, fewer than
        ``min_images`` images were compared, every original map was constant, or nothing has weights."""
        return decide(self.final_interval, self.compared, self.threshold, self.min_images)

    @property
    def verdict(self) -> str:
        return {True: "PASS", False: "FAIL", None: "NO VERDICT"}[self.passed]

    @property
    def images_needed(self) -> int | None:
        """Rough count of images for a verdict, from the last step's mean and spread over images."""
        if self.compared < 2 or not self.steps:
            return None
        return images_needed(np.asarray(self.steps[-1].per_image), self.threshold, self.confidence, self.min_images)

    @property
    def first_below(self) -> SanityStep | None:
        """The first step (from the top) whose mean correlation falls below the threshold."""
        if not self.compared:
            return None
        return next((step for step in self.steps if step.rank_correlation < self.threshold), None)

    def _measured(self) -> str:
        """'+0.300 (95% CI -0.050 to +0.610, over 5 image(s) and 3 random draw(s))' for the last step
        (3 decimals: an upper bound of 0.497 must not read as the threshold 0.5)."""
        interval = self.final_interval
        span = f"{self.confidence:.0%} CI {interval[0]:+.3f} to {interval[1]:+.3f}, " if interval else "mean "
        return f"{self.final_correlation:+.3f} ({span}over {self.compared} image(s) and {self.draws} random draw(s))"

    def reason(self) -> str | None:
        """Why there is no verdict; None when there is one."""
        if self.passed is not None:
            return None
        if not self.steps:
            return "the model has no weights to randomise, so no correlation can be measured"
        if not self.compared:
            return "every original map is constant, so no correlation can be measured"
        if self.compared < self.min_images:
            draws = ", ".join(f"{value:+.2f}" for value in self.steps[-1].table.mean(axis=1))
            return (f"a verdict needs at least {self.min_images} images whose heatmap is not constant, and "
                    f"{self.compared} {'was' if self.compared == 1 else 'were'} compared; with every layer "
                    f"random the rank correlation is {self._measured()}, per random draw {draws}")
        needed = self.images_needed
        more = f" (about {needed} images if the mean and its spread over images stay as measured)" \
            if needed and needed > self.compared else " (or more random draws: their spread counts too)"
        return (f"with every layer random the rank correlation is {self._measured()}, and the interval "
                f"contains {self.threshold}: more images are needed to tell{more}")

    def lines(self) -> list[str]:
        """The report as text: what was done, one line per step, and the verdict."""
        lines = [f"Model-randomisation test (Adebayo et al., 2018) on {len(self.inputs)} image(s) x {self.draws} "
                 f"random draw(s) (seed {self.seed}), layer {self.layer}, method {self.method}. Spearman rank "
                 "correlation of each heatmap with the original as the layers are re-initialised from the top "
                 f"down: the mean over images and draws [{self.confidence:.0%} confidence interval, bootstrap "
                 "over images and draws]:"]
        if self.constant_inputs:
            lines.append(f"  ({len(self.constant_inputs)} image(s) left out: their original map is constant, so it "
                         f"ranks nothing: {', '.join(self.constant_inputs[:5])}"
                         + (", ..." if len(self.constant_inputs) > 5 else "") + ")")
        if self.compared:
            for number, (step, (low, high)) in enumerate(zip(self.steps, self.intervals), 1):
                interval = f"  [{low:+.3f}, {high:+.3f}]" if math.isfinite(low) else ""
                lines.append(f"  {number:3d}. up to {step.layer:<40} {step.rank_correlation:+.3f}{interval}"
                             + (f"   ({step.constant_maps} map(s) became constant)" if step.constant_maps else ""))
        first = self.first_below
        if self.passed is None:
            lines.append(f"NO VERDICT: {self.reason()}.")
        elif self.passed:
            lines.append(f"PASS: with every layer random the rank correlation is {self._measured()}, below "
                         f"{self.threshold}: the heatmaps change as the weights are destroyed (the mean first fell "
                         f"below {self.threshold} once the layers down to {first.layer} were random), so they "
                         "depend on what the model learned.")
        else:
            lines.append(f"FAIL: with every layer random the rank correlation is still {self._measured()}, not "
                         f"below {self.threshold}: the heatmaps stay similar, so they show the image or the "
                         "architecture more than what the model learned.")
        return lines

    def as_dict(self) -> dict:
        first, interval = self.first_below, self.final_interval
        return {"layer": self.layer, "method": self.method, "inputs": self.inputs,
                "class_index": self.class_index, "passed": self.passed, "verdict": self.verdict,
                "reason": self.reason(), "threshold": self.threshold, "confidence": self.confidence,
                "draws": self.draws, "seed": self.seed, "resamples": self.resamples,
                "min_images": self.min_images, "images_compared": self.compared,
                "mean": _number(self.final_correlation), "interval": list(interval) if interval else None,
                "images_needed": self.images_needed,
                "constant_inputs": self.constant_inputs, "first_below": first.layer if first else None,
                "steps": [{"layer": s.layer, "rank_correlation": _number(s.rank_correlation) if self.compared else None,
                           "interval": [_number(low), _number(high)] if math.isfinite(low) else None,
                           "per_image": s.per_image, "per_draw": s.table.tolist(), "constant_maps": s.constant_maps}
                          for s, (low, high) in zip(self.steps, self.intervals)]}
