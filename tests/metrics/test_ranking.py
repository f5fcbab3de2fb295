"""The method ranking by hand: directions, ties, baselines, and the folder means it reads."""
from __future__ import annotations

import json

import pytest

from gradcam.metrics.ranking import Ranking, rank_methods
from gradcam.names import METRICS

BY_KEY = {metric.key: metric for metric in METRICS}


def test_ranks_follow_each_metrics_direction_and_ties_share_the_better_rank():
    ranking = Ranking(["a", "b", "c"], {"a": {"deletion_auc": 0.2, "insertion_auc": 0.5},
                                        "b": {"deletion_auc": 0.1, "insertion_auc": 0.5},
                                        "c": {"deletion_auc": 0.3, "insertion_auc": 0.9}},
                      baselines={"sobel": {"deletion_auc": 0.25, "insertion_auc": 0.6}})
    assert ranking.ranks(BY_KEY["deletion_auc"]) == {"b": 1, "a": 2, "c": 3}  # lower is better
    assert ranking.ranks(BY_KEY["insertion_auc"]) == {"c": 1, "a": 2, "b": 2}  # higher is better, a tie
    assert ranking.beats(BY_KEY["deletion_auc"], "a", "sobel") is True
    assert ranking.beats(BY_KEY["insertion_auc"], "a", "sobel") is False
    assert ranking.beats(BY_KEY["insertion_auc"], "a", "random") is None
    assert [row["metric"] for row in ranking.rows()] == ["deletion_auc", "insertion_auc"]
    assert ranking.rows()[0]["sobel baseline"] == 0.25 and ranking.rows()[0]["random baseline"] is None


def test_a_method_missing_a_metric_is_left_out_of_that_rank_only():
    ranking = Ranking(["a", "b"], {"a": {"pointing_game": 0.5, "sparseness": 0.1}, "b": {"sparseness": 0.3}})
    assert ranking.ranks(BY_KEY["pointing_game"]) == {"a": 1}
    assert ranking.ranks(BY_KEY["sparseness"]) == {"b": 1, "a": 2}


def test_rank_methods_reads_each_folders_newest_records(tmp_path):
    for method, values in (("m1", [0.1, 0.3]), ("m2", [0.4, 0.4])):
        folder = tmp_path / method
        folder.mkdir()
        lines = [{"seq": i + 1, "input": f"/p{i}.png", "status": "ok", "rank": 1, "sparseness": v, "overlay": f"p{i}.png",
                  "settings": {"evaluation": {"families": ["complexity"]}},
                  **({"baselines": {"random": {"sparseness": 0.05}}} if method == "m1" else {})}
                 for i, v in enumerate(values)]
        lines.append({"seq": 9, "input": "/broken.png", "status": "error", "error": "x", "rank": 1})
        (folder / "manifest.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    ranking = rank_methods({"m1": tmp_path / "m1", "m2": tmp_path / "m2"})
    assert ranking.means["m1"]["sparseness"] == pytest.approx(0.2)
    assert ranking.means["m2"]["sparseness"] == pytest.approx(0.4)
    assert ranking.baselines == {"random": {"sparseness": pytest.approx(0.05)}}
    assert ranking.images == {"m1": 2, "m2": 2}
    assert ranking.settings == {"families": ["complexity"]}
    csv_path, png_path, json_path = ranking.write(tmp_path)
    assert csv_path.read_text().splitlines()[0] == ("family,metric,better,m1,m1 rank,m2,m2 rank,random baseline,"
                                                   "sobel baseline")
    assert png_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and json.loads(json_path.read_text())["images"]
    assert "<table>" in ranking._repr_html_()
