"""gradcam atlas and compare handed careless or hostile folders: every problem one line on stderr and a
non-zero exit, never a traceback; nothing half-written."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "metrics"))
sys.path.insert(0, str(Path(__file__).parents[1]))
from saved_runs import blob, record_for, write_run  # noqa: E402

from gradcam.cli import main  # noqa: E402


def one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert "Traceback" not in err and len(lines) == 1 and lines[0].startswith("gradcam: error: "), err
    return lines[0]


def test_compare_into_a_path_that_is_a_file_is_one_line(tmp_path, capsys):
    a = write_run(tmp_path / "a", {"x": blob((8, 8), 1, 1)})
    b = write_run(tmp_path / "b", {"x": blob((8, 8), 2, 2)})
    target = tmp_path / "taken"
    target.write_text("a file")
    assert main(["compare", str(a), str(b), "-o", str(target)]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert str(target) in line and target.read_text() == "a file"


def test_atlas_of_a_read_only_folder_is_one_line(tmp_path, capsys, monkeypatch):
    """A folder the user may not write into (as root, which writes anywhere, the refusal is simulated at
    the write itself, so the test runs for every user)."""
    import gradcam.metrics.report_html as report_html

    def refused(path, content):
        raise PermissionError(13, "Permission denied", str(path))

    out = write_run(tmp_path / "out", {"x": blob((8, 8), 1, 1), "y": blob((8, 8), 5, 5)})
    monkeypatch.setattr(report_html, "write_atomic", refused)
    assert main(["atlas", str(out)]) == 1
    line = one_error_line(capsys.readouterr().err)
    assert "cannot write" in line and "Permission denied" in line


def test_atlas_whose_page_name_is_taken_by_a_folder_is_one_line(tmp_path, capsys):
    out = write_run(tmp_path / "out", {"x": blob((8, 8), 1, 1), "y": blob((8, 8), 5, 5)})
    (out / "atlas.html").mkdir()
    assert main(["atlas", str(out)]) == 1
    assert "atlas.html" in one_error_line(capsys.readouterr().err)
    assert not [p for p in out.iterdir() if p.name.endswith(".part")]  # no temporary file left behind


def test_compare_a_folder_with_itself_pairs_every_input_with_itself(tmp_path, capsys):
    out = write_run(tmp_path / "out", {"x": blob((8, 8), 1, 1), "y": blob((8, 8), 5, 2)})
    assert main(["compare", str(out), str(out)]) == 0
    result = json.loads((out / "compare-with-out" / "compare.json").read_text())
    assert result["matched"] == 2 and result["mean_spearman"] == 1.0 and result["agreement"] == 1.0


@pytest.mark.parametrize("hostile", ["fifo", "zero", "loop"])
def test_a_shard_manifest_that_is_a_fifo_a_device_or_a_loop_is_one_line_not_a_hang(tmp_path, hostile):
    out = write_run(tmp_path / "out", {"x": blob((8, 8), 1, 1), "y": blob((8, 8), 5, 5)})
    shard = out / "manifest.shard-1-of-2.jsonl"
    if hostile == "fifo":
        os.mkfifo(shard)
    elif hostile == "zero":
        os.symlink("/dev/zero", shard)
    else:
        os.symlink(shard, shard)
    for command in (["atlas", str(out)], ["compare", str(out), str(out)]):
        # in a child process: read as before, a FIFO would block forever and /dev/zero fill the memory
        done = subprocess.run([sys.executable, "-c", "import sys; from gradcam.cli import main; "
                               "sys.exit(main(sys.argv[1:]))", *command], capture_output=True, text=True, timeout=120)
        assert done.returncode == 2
        assert "manifest.shard-1-of-2.jsonl" in one_error_line(done.stderr)


@pytest.mark.parametrize("kind", ["fifo", "folder", "zero"])
def test_boxes_that_are_not_a_regular_file_are_named_so_before_the_model_loads(tmp_path, capsys, kind):
    from conftest import write_photo

    photo = write_photo(tmp_path / "a.png")
    boxes = tmp_path / "boxes.csv"
    if kind == "fifo":
        os.mkfifo(boxes)
    elif kind == "folder":
        boxes.mkdir()
    else:
        os.symlink("/dev/zero", boxes)
    code = main(["evaluate", str(photo), "--model", str(tmp_path / "never-loaded.keras"), "-o", str(tmp_path / "o"),
                 "--boxes", str(boxes)])
    assert code == 2 and "is not a regular file" in one_error_line(capsys.readouterr().err)


def test_masks_that_name_a_file_are_named_so(tmp_path, capsys):
    from conftest import write_photo

    photo = write_photo(tmp_path / "a.png")
    code = main(["evaluate", str(photo), "--model", "x.keras", "-o", str(tmp_path / "o"), "--masks", str(photo)])
    assert code == 2 and "--masks: " in (line := one_error_line(capsys.readouterr().err)) and "not a folder" in line


@pytest.mark.parametrize("output", [".", "scores"])
def test_an_output_folder_in_the_masks_folder_is_refused(tmp_path, capsys, output):
    """Its overlays would be read as masks (the same names), and every run's outputs would change the
    masks folder's digest: the scores redone forever."""
    from conftest import write_photo

    photo = write_photo(tmp_path / "photos" / "a.png")
    masks = tmp_path / "masks"
    masks.mkdir()
    code = main(["evaluate", str(photo), "--model", "x.keras", "-o", str(masks / output), "--masks", str(masks)])
    assert code == 2 and "--masks" in one_error_line(capsys.readouterr().err)
