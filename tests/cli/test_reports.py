"""gradcam status / atlas / compare on the command line: pages written and linked from the gallery, exit
statuses, one-line errors (the library's results are tested in tests/metrics)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1] / "metrics"))
from saved_runs import blob, record_for, write_run  # noqa: E402

from gradcam.cli import main  # noqa: E402


def test_atlas_writes_its_pages_links_them_from_the_gallery_and_names_what_it_skipped(tmp_path, capsys):
    maps = {f"p{i}": blob((16, 16), 8, 8) for i in range(4)}
    maps["broken"] = None  # recorded, its .npy missing
    out = write_run(tmp_path / "out", maps)
    assert main(["atlas", str(out), "--top", "2"]) == 1  # a map could not be read: said, and exit 1
    captured = capsys.readouterr()
    assert "gradcam: atlas in" in captured.out and "skipped: photos/broken" in captured.err
    summary = json.loads((out / "atlas.json").read_text())
    assert len(summary["skipped"]) == 1 and "Traceback" not in captured.err
    assert 'href="atlas.html"' in (out / "index.html").read_text()


def test_atlas_errors_are_one_line(tmp_path, capsys):
    assert main(["atlas", str(tmp_path / "missing")]) == 2
    assert main(["atlas", str(tmp_path), "--border", "0.7"]) == 2
    write_run(tmp_path / "nomaps", {"a": None}, [record_for("a", heatmap=False)])
    assert main(["atlas", str(tmp_path / "nomaps")]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 3 and all(line.startswith("gradcam: error: ") for line in lines), lines
    assert "--save-npy" in lines[2]


def test_compare_pairs_by_content_writes_beside_b_and_links_it(tmp_path, capsys):
    a = write_run(tmp_path / "a", {"x": blob((12, 12), 2, 2), "y": blob((12, 12), 9, 9)})
    b = write_run(tmp_path / "b", {"renamed": blob((12, 12), 2, 2)},
                  [record_for("renamed", content="x")])  # x's bytes under another name
    assert main(["compare", str(a), str(b)]) == 0
    result = json.loads((b / "compare-with-a" / "compare.json").read_text())
    assert result["matched"] == 1 and result["mean_spearman"] == 1.0
    assert 'href="compare-with-a/compare.html"' in (b / "index.html").read_text()
    assert "gradcam: comparison in" in capsys.readouterr().out


def test_compare_with_nothing_in_common_exits_1(tmp_path, capsys):
    a = write_run(tmp_path / "a", {"x": blob((8, 8), 1, 1)})
    b = write_run(tmp_path / "b", {"x": blob((8, 8), 1, 1)}, [record_for("x", content="other bytes")])
    assert main(["compare", str(a), str(b), "-o", str(tmp_path / "cmp")]) == 1
    assert "no input of one run has the same content" in capsys.readouterr().err
    assert (tmp_path / "cmp" / "compare.html").is_file()


def test_status_errors_are_one_line(tmp_path, capsys):
    assert main(["status", str(tmp_path / "missing")]) == 2
    assert main(["status", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"gradcam: error: no such folder: {tmp_path / 'missing'}", f"gradcam: error: no manifest in {tmp_path}"]


def test_the_api_names_are_the_library_functions():
    import gradcam
    from gradcam.metrics.atlas import build_atlas
    from gradcam.metrics.compare import compare_runs
    from gradcam.metrics.evaluate import evaluate

    assert gradcam.atlas is build_atlas and gradcam.compare is compare_runs and gradcam.evaluate is evaluate
