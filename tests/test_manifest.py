"""Reading and writing the manifest: latest records across reruns, settings per output."""
from __future__ import annotations

import json

from gradcam.gallery import render_gallery
from gradcam.manifest import latest_records


def test_latest_records_keep_results_across_reruns(tmp_path):
    lines = [
        {"input": "a.jpg", "status": "ok", "class_name": "cat", "class_index": 1, "probability": 0.9,
         "overlay": "a.jpg.png", "rank": 1, "layer": "l"},
        {"input": "b.jpg", "status": "error", "error": "not a readable image", "rank": None},
        {"input": "a.jpg", "status": "skipped", "class_name": None, "overlay": "a.jpg.png", "rank": 1},
    ]
    path = tmp_path / "manifest.jsonl"
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n{cut sho", encoding="utf-8")
    records = latest_records(path)
    assert {r["input"]: r["status"] for r in records} == {"a.jpg": "ok", "b.jpg": "error"}
    page = render_gallery(records)
    assert "cat (90.0%)" in page and "not a readable image" in page and 'href="a.jpg.png"' in page


def test_settings_by_output_and_changes(tmp_path):
    from gradcam.manifest import ManifestWriter, changed_settings, settings_by_output

    writer = ManifestWriter(tmp_path)
    old = {"method": "gradcam", "alpha": 0.4}
    writer.write({"status": "ok", "overlay": "a.png", "settings": old})
    writer.write({"status": "ok", "overlay": "b.png", "settings": old})
    writer.write({"status": "ok", "overlay": "b.png"})  # made again without recorded settings
    writer.write({"status": "error", "overlay": None, "settings": {"method": "x"}})
    writer.close()
    (tmp_path / "manifest.jsonl").open("a").write('{"cut')
    assert settings_by_output(tmp_path / "manifest.jsonl") == {"a.png": old}
    assert changed_settings(old, {"method": "hirescam", "alpha": 0.4}) == ["method"]
    assert changed_settings(old, old) == []
    assert changed_settings(old, {"method": "gradcam"}) == ["alpha"]
