"""The folder run as a library call: write failures, output paths, manifest."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import write_photo
from gradcam import pipeline
from gradcam.cam import Explainer
from gradcam.errors import OutputError
from gradcam.images import InputImage, discover_inputs
from gradcam.pipeline import RunOptions, output_paths, run


def test_output_path_cannot_leave_the_folder(tmp_path):
    with pytest.raises(OutputError, match="leave the output folder"):
        output_paths(InputImage(tmp_path / "x.jpg", "../../evil.jpg"), tmp_path / "out")
    overlay, npy = output_paths(InputImage(tmp_path / "x.jpg", "sub/x.jpg"), tmp_path / "out", 2, 3)
    assert overlay.name == "x.jpg.top2.png" and npy.name == "x.jpg.top2.npy" and overlay.parent.name == "sub"


def test_write_failure_is_recorded_and_the_run_goes_on(tmp_path, tiny_model, monkeypatch):
    root = tmp_path / "photos"
    for name in ("a.jpg", "b.jpg", "c.jpg"):
        write_photo(root / name)
    real_save = pipeline.save_png

    def flaky_save(path, image):
        if Path(path).name == "b.jpg.png":
            raise OSError(28, "No space left on device")
        real_save(path, image)

    monkeypatch.setattr(pipeline, "save_png", flaky_save)
    out = tmp_path / "out"
    summary = run(Explainer(tiny_model), discover_inputs([root]), RunOptions(output_dir=out, batch_size=2))
    assert (summary.explained, summary.failed) == (2, 1)
    records = {Path(r["input"]).name: r for r in map(json.loads, (out / "manifest.jsonl").read_text().splitlines())}
    assert records["b.jpg"]["status"] == "error" and "No space left" in records["b.jpg"]["error"]
    assert sorted(p.name for p in out.iterdir()) == ["a.jpg.png", "c.jpg.png", "index.html", "manifest.jsonl"]
