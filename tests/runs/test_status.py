"""Sharded runs: the split, per-shard manifests, `gradcam status`, and two writers in one folder."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from conftest import assert_same_outputs, write_photo

from gradcam.cli import main
from gradcam.inputs.discovery import InputImage
from gradcam.outputs.manifest import input_records, latest_records, read_records
from gradcam.outputs.paths import select_shard, shard_of
from gradcam.runs.status import folder_status

REPO = Path(__file__).resolve().parents[2]


def photos(root: Path, count: int) -> Path:
    for i in range(count):
        write_photo(root / f"sub{i % 3}" / f"p{i:02d}.png", seed=i)
    (root / "bad.jpg").write_bytes(b"not an image")
    return root


def test_shards_are_stable_and_disjoint():
    items = [InputImage(Path(f"/x/{i}.jpg"), f"d/{i}.jpg") for i in range(200)]
    parts = [select_shard(items, (i, 4)) for i in range(4)]
    assert sorted(item.relative for part in parts for item in part) == sorted(item.relative for item in items)
    assert all(20 < len(part) < 80 for part in parts)
    # pinned: the same numbers on every machine, Python and process (SHA-256, not the salted hash())
    assert [shard_of(name, 4) for name in ("d/0.jpg", "d/1.jpg", "d/7.jpg", "photos/cat.jpg")] == [2, 0, 0, 3]
    assert (shard_of("sub0/p00.png", 3), shard_of("bad.jpg", 3)) == (2, 1)
    more = items + [InputImage(Path("/x/new.jpg"), "d/new.jpg")]
    assert [item.relative for item in select_shard(more, (1, 4)) if item.relative != "d/new.jpg"] == \
        [item.relative for item in parts[1]]  # adding a file moves no other


def test_union_of_shards_equals_one_run(tmp_path, tiny_model_file, capsys):
    root = photos(tmp_path / "photos", 10)
    single, sharded = tmp_path / "single", tmp_path / "sharded"
    base = ["--model", str(tiny_model_file), str(root), "-r", "--save-npy"]
    assert main(base + ["-o", str(single)]) == 1  # bad.jpg fails
    codes = [main(base + ["-o", str(sharded), "--shard", f"{i}/3"]) for i in range(3)]
    assert sorted(codes)[0] in (0, 1) and codes.count(1) == 1  # only the shard holding bad.jpg fails
    printed = capsys.readouterr().out
    assert "all shards in" in printed
    names = sorted(p.name for p in sharded.iterdir() if p.name.startswith("manifest"))
    assert names == [f"manifest.shard-{i}-of-3.jsonl" for i in range(3)]
    assert len(assert_same_outputs(single, sharded)) == 10 * 2  # 10 photos x (.png, .npy)
    records = [r for path in sharded.glob("manifest.shard-*") for r in input_records(read_records(path))]
    inputs = [r["input"] for r in records]
    assert len(inputs) == len(set(inputs)) == 11  # every input once, none twice
    page = (sharded / "index.html").read_text()
    assert page.count("<figure") == 10 and "bad.jpg" in page  # the gallery reads every shard

    # rerunning one shard resumes it
    assert main(base + ["-o", str(sharded), "--shard", "1/3"]) in (0, 1)
    records = read_records(sharded / "manifest.shard-1-of-3.jsonl")
    last_start = max(i for i, r in enumerate(records) if r.get("event") == "start")
    rerun = input_records(records[last_start:])
    assert rerun and all(r["status"] in ("skipped", "error") for r in rerun)
    assert "0 explained" in capsys.readouterr().out


def test_status_counts_and_missing_shards(tmp_path, tiny_model_file, capsys):
    root = photos(tmp_path / "photos", 6)
    out = tmp_path / "out"
    base = ["--model", str(tiny_model_file), str(root), "-r", "-o", str(out)]
    main(base + ["--shard", "0/3"])
    main(base + ["--shard", "2/3"])
    capsys.readouterr()
    assert main(["status", str(out)]) == 1
    printed = capsys.readouterr().out
    assert "missing: shard 1/3 has written no manifest" in printed
    status = folder_status(out)
    ok, skipped, failed = status.totals()
    expected_ok = sum(1 for i in range(6) if shard_of(f"sub{i % 3}/p{i:02d}.png", 3) != 1)
    assert ok == expected_ok and failed == (shard_of("bad.jpg", 3) != 1)
    main(base + ["--shard", "1/3"])
    capsys.readouterr()
    assert main(["status", str(out)]) == 1  # bad.jpg still failed
    (root / "bad.jpg").unlink()
    for i in range(3):  # a rerun after removing the bad file: nothing fails, nothing missing
        (out / f"manifest.shard-{i}-of-3.jsonl").unlink()
        main(base + ["--shard", f"{i}/3"])
    capsys.readouterr()
    assert main(["status", str(out)]) == 0
    assert "0 failed" in capsys.readouterr().out.splitlines()[-1]
    assert main(["status", str(tmp_path / "nope")]) == 2


def test_two_runs_in_one_folder_keep_every_line_whole(tmp_path, tiny_model_file):
    root = tmp_path / "photos"
    for i in range(24):
        write_photo(root / f"p{i:02d}.png", (64, 48), seed=i)
    out = tmp_path / "out"
    args = [sys.executable, "-m", "gradcam", "--model", str(tiny_model_file), str(root), "-o", str(out),
            "--batch-size", "2"]
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "TF_CPP_MIN_LOG_LEVEL": "3"}
    runs = [subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env) for _ in range(2)]
    for run in runs:
        run.communicate(timeout=300)
        assert run.returncode == 0
    lines = (out / "manifest.jsonl").read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in lines]  # every line parses
    assert sorted(r["seq"] for r in records) == list(range(1, len(records) + 1))  # one counter, no number twice
    assert [r["event"] for r in records if "event" in r].count("end") == 2  # both runs finished
    records = [r for r in records if "input" in r]
    assert {Path(r["input"]).name for r in records} == {f"p{i:02d}.png" for i in range(24)}
    assert len(records) >= 24 and all(r["status"] in ("ok", "skipped") for r in records)
    assert {Path(r["input"]).name for r in latest_records(out)} == {f"p{i:02d}.png" for i in range(24)}


def test_status_says_a_killed_run_is_incomplete(tmp_path, tiny_model_file, capsys):
    """A run killed after 4 of 12 inputs wrote no end record: status exits 1 until a rerun finishes."""
    from gradcam.outputs.manifest import ManifestWriter, end_record, start_record

    out = tmp_path / "out"
    out.mkdir()
    writer = ManifestWriter(out, "manifest.shard-0-of-1.jsonl")
    writer.write(start_record("r1", 12, (0, 1), "0"))
    for i in range(4):
        writer.write({"input": f"p{i}.png", "status": "ok", "rank": 1, "run": "r1", "overlay": f"p{i}.png.png"})
    assert main(["status", str(out)]) == 1
    printed = capsys.readouterr().out
    assert "INCOMPLETE: its last run recorded 4 of 12 planned input(s)" in printed
    writer.write(start_record("r2", 12, (0, 1), "0"))
    for i in range(12):
        writer.write({"input": f"p{i}.png", "status": "ok" if i >= 4 else "skipped", "rank": 1, "run": "r2"})
    writer.write(end_record("r2", 8, 4, 0))
    writer.close()
    assert main(["status", str(out)]) == 0
    assert "INCOMPLETE" not in capsys.readouterr().out


def test_status_counts_an_input_once_when_sharded_and_unsharded_runs_share_a_folder(tmp_path, tiny_model_file,
                                                                                      capsys):
    root = tmp_path / "photos"
    for i in range(7):
        write_photo(root / f"p{i}.png", seed=i)
    out = tmp_path / "out"
    base = ["--model", str(tiny_model_file), str(root), "-o", str(out)]
    assert main(base) == 0
    for i in range(2):
        assert main(base + ["--shard", f"{i}/2", "--overwrite"]) == 0
    capsys.readouterr()
    assert main(["status", str(out)]) == 0
    last = capsys.readouterr().out.splitlines()[-1]
    assert "7 explained" in last and "(7 input(s))" in last
    assert folder_status(out).totals() == (7, 0, 0)


def test_cli_run_killed_by_sigkill_is_incomplete_until_resumed(tmp_path, tiny_model_file, capsys):
    """A real kill: the process gets SIGKILL after its first outputs; status says incomplete (exit 1)."""
    import signal
    import time

    root = tmp_path / "photos"
    for i in range(40):
        write_photo(root / f"p{i:02d}.png", size=(320, 240), seed=i)
    out = tmp_path / "out"
    args = [sys.executable, "-m", "gradcam", "--model", str(tiny_model_file), str(root), "-o", str(out),
            "--batch-size", "1", "--png-compression", "9"]
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "TF_CPP_MIN_LOG_LEVEL": "3"}
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and len(list(out.glob("*.png"))) < 3 and process.poll() is None:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert 0 < len(input_records(read_records(out / "manifest.jsonl"))) < 40
    assert main(["status", str(out)]) == 1
    assert "INCOMPLETE" in capsys.readouterr().out
    assert main(["--model", str(tiny_model_file), str(root), "-o", str(out)]) == 0
    capsys.readouterr()
    assert main(["status", str(out)]) == 0
