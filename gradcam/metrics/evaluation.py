"""``gradcam evaluate``: every metric family for one map, and the same for its baselines.

A run hands each explained photo to :class:`Evaluator` (its ``scorer``): the map at the model's input
size is scored for faithfulness (deletion, insertion, average drop: :mod:`.faithfulness`; ROAD:
:mod:`.road`), complexity (:mod:`.complexity`), robustness (max-sensitivity: :mod:`.robustness`) and,
where ground truth is given, localisation at the photo's size (:mod:`.localisation`). With baselines on,
a random map and a Sobel edge map of the same photo (:mod:`.baselines`) get the same metrics (all but
robustness, which re-explains the photo), so every score has a floor beside it.

Every metric family sends its images through the model as one batch per photo.
"""
from __future__ import annotations

import hashlib
import math
import os
import stat
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..errors import GradcamError, UsageError, first_line
from ..explainers.heatmap import heatmap_at, upsample
from ..inputs.identity import DIGESTS
from ..names import BASELINE_NAMES, METRIC_FAMILIES
from .baselines import random_map, sobel_map
from .complexity import complexity, sparseness
from .faithfulness import Faithfulness, faithfulness_scores
from .localisation import localisation_scores
from .road import DEFAULT_NOISE, DEFAULT_PERCENTILES, road_scores, road_settings
from .robustness import DEFAULT_RADIUS, explainer_heatmaps, max_sensitivity

#: most deletion/insertion steps and max-sensitivity samples: each is an image in one batch per photo
MAX_STEPS = 1000

#: the families ``gradcam evaluate`` scores when none are named (localisation joins them with ground truth)
DEFAULT_FAMILIES: tuple[str, ...] = ("faithfulness", "road", "complexity")


def default_families(has_truth: bool) -> tuple[str, ...]:
    """The families scored when none are named: :data:`DEFAULT_FAMILIES`, and localisation with ground truth
    (``--boxes`` or ``--masks``)."""
    return DEFAULT_FAMILIES + (("localisation",) if has_truth else ())


@dataclass(frozen=True)
class EvaluationSettings:
    """What ``gradcam evaluate`` computes, and how: recorded in every record's settings (``as_record``)."""

    families: tuple[str, ...] = DEFAULT_FAMILIES
    steps: int = 20  # deletion/insertion steps
    road_percentiles: tuple[float, ...] = tuple(DEFAULT_PERCENTILES)
    road_noise: float = DEFAULT_NOISE  # std of ROAD's imputation noise, pixels of 0-255
    sensitivity_samples: int = 10
    sensitivity_radius: float = DEFAULT_RADIUS  # uniform noise in [-r, r], pixels of 0-255
    tolerance: float = 15.0  # the pointing game's, in photo pixels
    baselines: bool = True  # also score a random and a Sobel edge map of each photo
    boxes: str | None = None  # a CSV or COCO JSON of boxes in original-photo pixels
    masks: str | None = None  # a folder of mask images, one per input, same relative path
    seed: int = 0

    def __post_init__(self) -> None:
        unknown = [name for name in self.families if name not in METRIC_FAMILIES]
        if unknown:
            raise UsageError(f"unknown metric famil{'ies' if len(unknown) > 1 else 'y'} {', '.join(unknown)}: "
                             f"choose from {', '.join(METRIC_FAMILIES)}")
        if self.boxes is not None and self.masks is not None:
            raise UsageError("give either --boxes or --masks, not both")
        if "localisation" in self.families and self.boxes is None and self.masks is None:
            raise UsageError("localisation needs ground truth: --boxes FILE or --masks DIR")
        if not (1 <= self.steps <= MAX_STEPS and 1 <= self.sensitivity_samples <= MAX_STEPS):
            raise UsageError(f"--steps and --sensitivity-samples must be from 1 to {MAX_STEPS} (each step or sample "
                             "is an image in one batch through the model)")
        if not 0 < self.sensitivity_radius < math.inf or not 0 <= self.tolerance < math.inf:
            raise UsageError("--sensitivity-radius must be a finite number above 0 and --tolerance a finite number "
                             "at least 0")
        if not self.road_percentiles or not all(0 < p < 100 for p in self.road_percentiles):
            raise UsageError("--road-percentiles must lie strictly between 0 and 100")

    @classmethod
    def from_record(cls, record: dict | None, steps: int = 20) -> EvaluationSettings:
        """The settings :meth:`as_record` wrote (its digests left out); None: the deletion/insertion and
        average-drop scores of ``--evaluate`` alone, at ``steps`` steps, without baselines."""
        if record is None:
            return cls(families=("faithfulness",), steps=steps, baselines=False)
        known = {name: record[name] for name in cls.__dataclass_fields__ if name in record}
        for name in ("families", "road_percentiles"):
            if name in known:
                known[name] = tuple(known[name])
        return cls(**known)

    def as_record(self) -> dict:
        """JSON-ready, with the ground truth identified by content: a boxes file by its digest, a
        masks folder by one digest over its files' names and digests."""
        record = asdict(self)
        record.update(families=list(self.families), road_percentiles=[float(p) for p in self.road_percentiles],
                      boxes_file=DIGESTS.digest(self.boxes), masks_folder=folder_digest(self.masks))
        if "road" in self.families:  # the imputation, its noise and tie-breaking, as ROAD's module names them
            record["road"] = road_settings(self.road_percentiles, self.road_noise, self.seed)
        return record


#: most files in a --masks folder (each is hashed to know the folder by content), and an empty file's digest
MAX_MASK_FILES = 1_000_000
EMPTY_DIGEST = f"sha256:{hashlib.sha256(b'').hexdigest()}"


def folder_digest(folder: str | None) -> str | None:
    """'sha256:HEX' over the sorted (relative path, content digest) of every regular file under ``folder``
    (hidden ones too: a mask is a mask), links followed as :func:`~gradcam.inputs.truth_masks.read_mask`
    follows them (each folder walked once: a link loop ends); None for no folder."""
    if folder is None or not Path(folder).is_dir():
        return None
    digest = hashlib.sha256()
    root = Path(folder)
    for relative, path, size in sorted(_regular_files(root)):
        content = EMPTY_DIGEST if size == 0 else DIGESTS.digest(path)  # /proc's files say 0 and may block
        digest.update(f"{relative.as_posix()}\0{content}\n".encode("utf-8", "surrogateescape"))
    return f"sha256:{digest.hexdigest()}"


def _regular_files(root: Path) -> list[tuple[Path, Path, int]]:
    """(path relative to ``root``, path, size) of every regular file under ``root``, links followed;
    FIFOs, devices, dangling links and loops left out, each folder (by device and inode) walked once.

    Raises:
        UsageError: more than :data:`MAX_MASK_FILES` files (``--masks /``, say)."""
    found, seen, stack = [], set(), [root]
    while stack:
        folder = stack.pop()
        try:
            info = os.stat(folder)
            if (info.st_dev, info.st_ino) in seen:
                continue
            seen.add((info.st_dev, info.st_ino))
            with os.scandir(folder) as scan:
                entries = [(entry.name, entry.path) for entry in scan]
        except OSError:
            continue
        for name, path in entries:
            try:
                info = os.stat(path)  # through links: what a reader of the path gets
            except (OSError, ValueError):
                continue
            if stat.S_ISDIR(info.st_mode):
                stack.append(Path(path))
            elif stat.S_ISREG(info.st_mode):
                found.append((Path(path).relative_to(root), Path(path), info.st_size))
                if len(found) > MAX_MASK_FILES:
                    raise UsageError(f"--masks: {root} holds more than {MAX_MASK_FILES:,} files: a folder of "
                                     "masks, one per input, is expected")
    return found


@dataclass
class Evaluation:
    """One map's scores: ``scores`` by record key, the baselines' scores by baseline name, the
    deletion/insertion curves (for ``--plot``) and what ground truth the photo had."""

    scores: dict = field(default_factory=dict)
    baselines: dict[str, dict] = field(default_factory=dict)
    faithfulness: Faithfulness | None = None
    ground_truth: dict | None = None
    localised: bool = False  # localisation was asked for: ``ground_truth`` is recorded, null when none

    def as_record(self) -> dict:
        record = dict(self.scores)
        if self.baselines:
            record["baselines"] = self.baselines
        if self.localised:
            record["ground_truth"] = self.ground_truth
        return record


class Evaluator:
    """A folder run's scorer: ``evaluator(explainer, entry, cam, heatmap, class_index) -> Evaluation``.

    ``entry`` is the decoded input (``photo`` uint8 (H, W, 3), ``model_input`` float32 (h, w, 3) in
    [0, 255], ``item`` its InputImage, ``source`` its identity); ``cam`` the raw map, ``heatmap`` float32
    (h, w) in [0, 1] at the model's input size.
    """

    def __init__(self, settings: EvaluationSettings):
        self.settings = settings
        self._boxes = None
        if settings.boxes is not None:
            from ..inputs.ground_truth import read_boxes

            self._boxes = read_boxes(settings.boxes)

    def __call__(self, explainer, entry, cam: np.ndarray, heatmap: np.ndarray, class_index: int) -> Evaluation:
        """The map's :class:`Evaluation`.

        Raises:
            GradcamError: one line when a score cannot be made (its ground truth, the model on a perturbed
                batch, memory): the run records it as the input's error and goes on."""
        try:
            return self._evaluate(explainer, entry, cam, heatmap, class_index)
        except GradcamError:
            raise
        except Exception as exc:
            raise GradcamError(f"{type(exc).__name__}: {first_line(exc)}" if str(exc).strip()
                               else type(exc).__name__) from None

    def _evaluate(self, explainer, entry, cam: np.ndarray, heatmap: np.ndarray, class_index: int) -> Evaluation:
        settings = self.settings
        evaluation = Evaluation()
        truth = self._truth(entry) if "localisation" in settings.families else None
        if "localisation" in settings.families:
            evaluation.localised, evaluation.ground_truth = True, self._truth_record(truth)
        if truth is not None and not truth.any():  # boxes all outside the photo, a black mask: nothing to find
            truth = None
        photo_size = entry.photo.shape[:2]
        seed = _seed(entry, settings.seed)
        at_photo = heatmap_at(cam, photo_size)[0] if truth is not None else None  # localisation's frame
        evaluation.scores, evaluation.faithfulness = self._score(explainer, entry, heatmap, class_index, truth,
                                                                 at_photo, seed)
        if "robustness" in settings.families:
            evaluation.scores["max_sensitivity"] = max_sensitivity(
                explainer_heatmaps(explainer), entry.model_input, heatmap, class_index,
                settings.sensitivity_radius, settings.sensitivity_samples, seed)
        if settings.baselines:
            maps = {"random": random_map(heatmap.shape, seed), "sobel": sobel_map(entry.model_input)}
            for name in BASELINE_NAMES:
                baseline = maps[name]
                at_photo = upsample(baseline, photo_size) if truth is not None else None
                evaluation.baselines[name] = self._score(explainer, entry, baseline, class_index, truth,
                                                         at_photo, seed)[0]
        return evaluation

    def _score(self, explainer, entry, heatmap: np.ndarray, class_index: int, truth: np.ndarray | None,
               at_photo: np.ndarray | None, seed: int) -> tuple[dict, Faithfulness | None]:
        """The scores of one map (float32 (h, w) in [0, 1]) by record key, and its faithfulness curves."""
        settings, scores, curves = self.settings, {}, None
        image = entry.model_input
        if "faithfulness" in settings.families:
            curves = faithfulness_scores(explainer.predict, image, heatmap, class_index, settings.steps,
                                         explainer.deletion_baseline())
            scores.update(curves.as_record())
        if "road" in settings.families:
            scores.update(road_scores(explainer.predict, image, heatmap, class_index, settings.road_percentiles,
                                      settings.road_noise, seed, zero=explainer.deletion_baseline()).as_record())
        if "complexity" in settings.families:
            scores.update(sparseness=sparseness(heatmap), complexity=complexity(heatmap))
        if truth is not None and at_photo is not None:
            scores.update(localisation_scores(at_photo, truth, settings.tolerance))
        return scores, curves

    def _truth(self, entry) -> np.ndarray | None:
        """The photo's object as bool (H, W) at the decoded photo's size, or None without ground truth."""
        from ..inputs.ground_truth import boxes_for, read_mask, truth_mask_from_boxes
        from ..inputs.headers import image_size

        size = entry.photo.shape[:2]
        if self._boxes is not None:
            boxes = boxes_for(self._boxes, entry.item.path, entry.item.relative)
            if not boxes:
                return None
            original = image_size(entry.item.path)  # (width, height), upright: the boxes' frame
            frame = (original[1], original[0]) if original else size  # no header size: the decoded photo's
            return truth_mask_from_boxes(boxes, frame, size)
        return read_mask(self.settings.masks, entry.item.path, entry.item.relative, size)

    def _truth_record(self, truth: np.ndarray | None) -> dict | None:
        if truth is None:
            return None
        return {"kind": "boxes" if self._boxes is not None else "mask", "pixels": int(truth.sum()),
                "share": float(truth.mean())}


def _seed(entry, seed: int) -> int:
    """A seed from the input's content (its recorded SHA-256, else its model input's bytes) and ``seed``:
    the same photo gets the same random baseline and noise in every run, wherever it lies."""
    source = getattr(entry, "source", None) or {}
    digest = source.get("sha256") if isinstance(source, dict) else None
    if not isinstance(digest, str):
        digest = hashlib.sha256(np.ascontiguousarray(entry.model_input).tobytes()).hexdigest()
    return int(hashlib.sha256(f"{digest}:{seed}".encode()).hexdigest()[:15], 16)
