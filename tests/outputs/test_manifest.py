"""Reading and writing the manifest: latest records across reruns, trusted outputs, write order,
cut-off lines, full disks."""
from __future__ import annotations

import json
import os

import pytest

from gradcam.errors import OutputError
from gradcam.outputs.gallery import render_gallery
from gradcam.outputs.manifest import (
    ManifestWriter,
    changed_settings,
    file_identity,
    files_unchanged,
    latest_records,
    read_records,
    trusted_outputs,
)


def test_latest_records_keep_results_across_reruns(tmp_path):
    lines = [
        {"input": "a.jpg", "status": "ok", "class_name": "cat", "class_index": 1, "probability": 0.9,
         "overlay": "a.jpg.png", "rank": 1, "layer": "l"},
        {"input": "b.jpg", "status": "error", "error": "not a readable image", "rank": None},
        {"input": "a.jpg", "status": "skipped", "class_name": None, "overlay": "a.jpg.png", "rank": 1},
        {"event": "end", "run": "r"},
    ]
    path = tmp_path / "manifest.jsonl"
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n{cut sho", encoding="utf-8")
    records = latest_records(path)
    assert {r["input"]: r["status"] for r in records} == {"a.jpg": "ok", "b.jpg": "error"}
    page = render_gallery(records)
    assert "cat (90.0%)" in page and "not a readable image" in page and 'href="a.jpg.png"' in page


def test_trusted_outputs_follow_the_newest_record_and_errors_that_touched_them(tmp_path):
    writer = ManifestWriter(tmp_path)
    old = {"method": "gradcam", "alpha": 0.4}
    writer.write({"input": "a", "status": "ok", "overlay": "a.png", "settings": old})
    writer.write({"input": "b", "status": "ok", "overlay": "b.png", "settings": old})
    writer.write({"input": "b", "status": "error", "overlay": None, "touched": ["b.png", "b.npy"]})
    writer.write({"input": "c", "status": "error", "overlay": None, "settings": {"method": "x"}})
    writer.close()
    (tmp_path / "manifest.jsonl").open("a").write('{"cut')
    trusted = trusted_outputs(tmp_path / "manifest.jsonl")
    assert list(trusted) == ["a.png"] and trusted["a.png"]["settings"] == old
    assert changed_settings(old, {"method": "hirescam", "alpha": 0.4}) == ["method"]
    assert changed_settings(old, old) == []
    assert changed_settings(old, {"method": "gradcam"}) == ["alpha"]


def test_file_identity_notices_a_replaced_file(tmp_path):
    path = tmp_path / "a.png"
    path.write_bytes(b"12345")
    files = {"a.png": file_identity(path)}
    assert files_unchanged(tmp_path, files)
    os.utime(path, ns=(1, 1))
    assert not files_unchanged(tmp_path, files)
    assert not files_unchanged(tmp_path, {"missing.png": files["a.png"]})
    assert not files_unchanged(tmp_path, None) and not files_unchanged(tmp_path, {})


def test_a_line_cut_by_a_kill_does_not_swallow_the_next_record(tmp_path):
    path = tmp_path / "manifest.jsonl"
    path.write_text(json.dumps({"input": "a", "status": "ok", "overlay": "a.png"}) + "\n"
                    + '{"input": "b", "status": "o', encoding="utf-8")  # killed mid-line
    writer = ManifestWriter(tmp_path)
    writer.write({"input": "c", "status": "ok", "overlay": "c.png"})
    writer.close()
    assert [r["input"] for r in read_records(path)] == ["a", "c"]


def test_records_of_a_folder_are_in_write_order_whatever_the_run_ids_say(tmp_path):
    """Two shard machines with different clocks: the run id (a start time) says nothing of order."""
    first = ManifestWriter(tmp_path, "manifest.shard-0-of-2.jsonl")
    second = ManifestWriter(tmp_path, "manifest.jsonl")
    first.write({"input": "x", "status": "ok", "overlay": "x.png", "run": "2030-01-01T00:00:00+00:00"})
    second.write({"input": "x", "status": "ok", "overlay": "x.png", "run": "2020-01-01T00:00:00+00:00", "n": 2})
    first.write({"input": "y", "status": "ok", "overlay": "y.png", "run": "2030-01-01T00:00:00+00:00"})
    first.close()
    second.close()
    assert [r["seq"] for r in read_records(tmp_path)] == [1, 2, 3]
    assert trusted_outputs(tmp_path)["x.png"]["n"] == 2  # the later write wins


def test_a_full_disk_truncates_the_line_back_and_says_so_in_one_line(tmp_path, monkeypatch):
    writer = ManifestWriter(tmp_path)
    writer.write({"input": "a", "status": "ok"})
    before = (tmp_path / "manifest.jsonl").read_bytes()
    real_write = os.write

    def half_then_full(fd, data):
        if fd == writer._fd:
            real_write(fd, bytes(data[:10]))
            raise OSError(28, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", half_then_full)
    with pytest.raises(OutputError, match=r"^cannot write the manifest .*manifest.jsonl: No space left on device$"):
        writer.write({"input": "b", "status": "ok"})
    monkeypatch.undo()
    assert (tmp_path / "manifest.jsonl").read_bytes() == before
    writer.write({"input": "c", "status": "ok"})
    writer.close()
    assert [r["input"] for r in read_records(tmp_path / "manifest.jsonl")] == ["a", "c"]


def test_a_fifo_or_device_where_a_manifest_belongs_vouches_for_nothing_and_hangs_nothing(tmp_path, capsys):
    import os
    import subprocess
    import sys

    out = tmp_path / "out"
    out.mkdir()
    (out / "manifest.jsonl").write_text('{"input": "a.png", "status": "error", "error": "x", "seq": 1}\n')
    os.mkfifo(out / "manifest.shard-1-of-2.jsonl")
    os.symlink("/dev/zero", out / "manifest.shard-0-of-2.jsonl")
    code = ("import sys; from gradcam.cli import main; from gradcam.outputs.manifest import read_records; "
            f"print(len(read_records({str(out)!r}))); sys.exit(main(['status', {str(out)!r}]))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.splitlines()[0] == "1", done  # the regular manifest's record alone
    assert done.returncode == 1 and "Traceback" not in done.stderr


def test_record_scores_keep_finite_numbers_only_for_the_map_and_each_baseline():
    from gradcam.outputs.wellformed import record_scores

    record = {"deletion_auc": 0.25, "insertion_auc": float("nan"), "sparseness": 10 ** 400, "complexity": True,
              "average_drop": "3", "pointing_game": 1, "unknown_key": 0.5,
              "baselines": {"random": {"deletion_auc": 0.5, "road_combined": float("inf")}, "sobel": [1, 2]}}
    assert record_scores(record) == {"deletion_auc": 0.25, "pointing_game": 1.0, "random:deletion_auc": 0.5}
    assert record_scores({"baselines": "x"}) == {}
