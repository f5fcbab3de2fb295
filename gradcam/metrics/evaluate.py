"""The Python API of ``gradcam evaluate``: ``gradcam.evaluate(model, inputs, output)``, a table back.

>>> table = gradcam.evaluate("efficientnet-lite0", "photos/", "scores", boxes="boxes.csv")  # doctest: +SKIP
>>> table                      # per-image scores and folder means, shown as a table in a notebook  # doctest: +SKIP
>>> gradcam.evaluate(model, "photos/", "ranked", methods=["gradcam", "gradcam++"])  # a Ranking  # doctest: +SKIP
"""
from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from ..errors import UsageError
from ..explainers.explainer import Explainer
from ..inputs.discovery import discover_inputs
from ..models.loading import load_classifier
from ..names import METHOD_NAMES, METRIC_KEYS
from ..outputs.manifest import latest_records
from ..outputs.paths import prepare_output_dir
from ..runs.pipeline import RunOptions
from ..runs.pipeline import run as run_folder
from ..runs.status import Summary
from .evaluation import EvaluationSettings, Evaluator, default_families
from .ranking import Ranking, rank_methods


@dataclass
class EvaluationTable:
    """One method's scores on a folder: ``rows`` (one per explained input: its path, class and scores),
    ``means`` (folder means; baselines' as 'BASELINE:key'), the run's ``summary`` and ``settings``."""

    rows: list[dict]
    means: dict[str, float]
    summary: Summary
    settings: dict

    def _repr_html_(self) -> str:
        keys = [key for key in METRIC_KEYS if any(key in row for row in self.rows)]
        head = "".join(f"<th>{html.escape(k)}</th>" for k in ["input", "class", *keys])
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(_cell(row.get(k)))}</td>" for k in ["input", "class_name", *keys]) + "</tr>"
            for row in self.rows)
        means = "".join(f"<li>{html.escape(k)}: {v:.4g}</li>" for k, v in self.means.items())
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table><p>Means:</p><ul>{means}</ul>"


def _cell(value) -> str:
    return "" if value is None else f"{value:.4g}" if isinstance(value, float) else str(value)


def evaluate(model, inputs: str | Path | Sequence[str | Path], output: str | Path, *, method: str = "gradcam",
             methods: Sequence[str] | None = None, layer: str | None = None, boxes: str | None = None,
             masks: str | None = None, metrics: Sequence[str] | None = None, baselines: bool = True,
             steps: int = 20, road_percentiles: Sequence[float] | None = None, sensitivity_samples: int = 10,
             tolerance: float = 15.0, seed: int = 0, recursive: bool = False, save_npy: bool = True,
             batch_size: int | None = None, weights: str = "imagenet") -> EvaluationTable | Ranking:
    """Explain ``inputs`` (files or folders) with ``method`` and score every map (the families in
    ``metrics``; default faithfulness, ROAD and complexity, with localisation when ``boxes`` or ``masks``
    is given), writing the outputs and manifest into ``output`` as ``gradcam evaluate`` does.
    With ``methods``, each method into ``output/METHOD`` and the :class:`~gradcam.metrics.ranking.Ranking`
    back (also written as output/ranking.csv, .png, .json).

    ``model``: a built-in name, a model file, a :class:`Classifier` or a Keras model (not changed).
    """
    families = tuple(metrics) if metrics else default_families(bool(boxes or masks))
    extra = {"road_percentiles": tuple(road_percentiles)} if road_percentiles else {}
    settings = EvaluationSettings(families=families, steps=steps, baselines=baselines, boxes=boxes, masks=masks,
                                  sensitivity_samples=sensitivity_samples, tolerance=tolerance, seed=seed, **extra)
    # a name or a file is loaded once for every method; a Classifier or keras.Model is used as it is
    classifier = load_classifier(str(model), weights) if isinstance(model, (str, Path)) else model
    names = [str(p) for p in ([inputs] if isinstance(inputs, (str, Path)) else inputs)]
    items = discover_inputs(names, recursive)
    if not items:
        raise UsageError(f"no images found in {', '.join(names)}")
    evaluator = Evaluator(settings)
    if methods is None:
        return _evaluate_one(classifier, items, Path(output), method, layer, settings, evaluator, save_npy, batch_size)
    unknown = [m for m in methods if m not in METHOD_NAMES]
    if unknown or len(set(methods)) < 2:
        raise UsageError(f"methods must be two or more of {', '.join(METHOD_NAMES)}")
    folders = {}
    for i, name in enumerate(dict.fromkeys(methods)):
        own = EvaluationSettings(**{**settings.__dict__, "baselines": baselines and i == 0})
        _evaluate_one(classifier, items, Path(output) / name, name, layer, own, Evaluator(own), save_npy, batch_size)
        folders[name] = Path(output) / name
    ranking = rank_methods(folders, settings.as_record())  # the same images, under these settings
    ranking.write(Path(output))
    return ranking


def _evaluate_one(classifier, items, output: Path, method: str, layer, settings: EvaluationSettings, evaluator,
                  save_npy: bool, batch_size: int | None) -> EvaluationTable:
    prepare_output_dir(output)
    explainer = Explainer(classifier, layer=layer, method=method, **({"batch_size": batch_size} if batch_size else {}))
    record = settings.as_record()
    options = RunOptions(output_dir=output, evaluate=True, steps=settings.steps, evaluation=record,
                         save_npy=save_npy, **({"batch_size": batch_size} if batch_size else {}))
    summary = run_folder(explainer, items, options, scorer=evaluator)
    if summary.interrupted:  # the run recorded what it finished; the caller's Ctrl-C goes on up
        raise KeyboardInterrupt
    rows, means = [], Summary(total=0)
    for entry in latest_records(output):
        if entry.get("status") == "ok" and entry.get("rank") in (None, 1):
            means.count(entry)
            rows.append({key: entry.get(key) for key in ("input", "class_index", "class_name", "probability",
                                                          *METRIC_KEYS, "baselines") if key in entry})
    return EvaluationTable(rows, means.means(), summary, record)
