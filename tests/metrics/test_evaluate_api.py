"""gradcam.evaluate from Python: the same records as the command line, a table back, the caller's model
untouched; with methods, the Ranking."""
from __future__ import annotations

import numpy as np
import pytest

import gradcam
from conftest import write_photo
from gradcam.metrics.evaluate import EvaluationTable
from gradcam.metrics.ranking import Ranking
from gradcam.outputs.manifest import input_records, read_records


def test_evaluate_returns_the_folders_scores_as_a_table(tmp_path, tiny_model):
    folder = tmp_path / "in"
    for i in range(3):
        write_photo(folder / f"p{i}.png", seed=i)
    weights = [w.copy() for w in tiny_model.get_weights()]
    table = gradcam.evaluate(tiny_model, folder, tmp_path / "out", metrics=["complexity", "faithfulness"], steps=3)
    assert isinstance(table, EvaluationTable) and len(table.rows) == 3
    records = input_records(read_records(tmp_path / "out" / "manifest.jsonl"))
    assert table.means["sparseness"] == pytest.approx(np.mean([r["sparseness"] for r in records]))
    assert table.means["random:sparseness"] == pytest.approx(np.mean([r["baselines"]["random"]["sparseness"]
                                                                      for r in records]))
    assert all((tmp_path / "out" / r["heatmap"]).is_file() for r in records)  # maps saved for the atlas
    assert "<table>" in table._repr_html_() and "sparseness" in table._repr_html_()
    for before, after in zip(weights, tiny_model.get_weights()):
        np.testing.assert_array_equal(before, after)


def test_evaluate_with_methods_returns_the_ranking(tmp_path, tiny_model):
    write_photo(tmp_path / "in" / "a.png")
    ranking = gradcam.evaluate(tiny_model, tmp_path / "in", tmp_path / "out", methods=["gradcam", "hirescam"],
                               metrics=["complexity"], baselines=False)
    assert isinstance(ranking, Ranking) and ranking.methods == ["gradcam", "hirescam"]
    assert (tmp_path / "out" / "ranking.csv").is_file() and ranking.baselines == {}


def test_evaluate_errors_are_gradcam_errors(tmp_path, tiny_model):
    write_photo(tmp_path / "in" / "a.png")
    with pytest.raises(gradcam.UsageError, match="localisation needs ground truth"):
        gradcam.evaluate(tiny_model, tmp_path / "in", tmp_path / "out", metrics=["localisation"])
    with pytest.raises(gradcam.UsageError, match="two or more"):
        gradcam.evaluate(tiny_model, tmp_path / "in", tmp_path / "out", methods=["gradcam", "nope"])
