"""What a hostile tester handed the tool after issue 22 (each case once crashed, hung or misreported):
file names that are not UTF-8, damaged manifest lines, one output name claimed by two inputs, pipes and
devices where files belong, crafted .keras configurations and .pth pickles, rotated masks, DICOM rescales
that overflow."""
from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import dicom_file, write_photo
from PIL import Image

from gradcam.cli import main
from gradcam.errors import GradcamError
from gradcam.outputs.manifest import latest_records, read_records

REPO = Path(__file__).resolve().parents[2]


def bmp(path: Path, seed: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_photo(path, seed=seed)


def test_a_file_name_that_is_not_utf8_is_recorded_and_resumed(tmp_path, tiny_model_file, capsys):
    folder = tmp_path / "in"
    name = os.fsdecode(b"caf\xe9.bmp")  # a lone surrogate in Python: no UTF-8 spelling
    bmp(folder / name, seed=0)
    bmp(folder / "plain.bmp", seed=1)
    out = tmp_path / "out"
    args = ["--model", str(tiny_model_file), str(folder), "-o", str(out)]
    assert main(args) == 0
    inputs = {Path(record["input"]).name for record in read_records(out) if "input" in record}
    assert inputs == {name, "plain.bmp"}
    assert (out / "index.html").is_file()
    capsys.readouterr()
    assert main(args) == 0
    assert "0 explained, 2 skipped" in capsys.readouterr().out


@pytest.mark.parametrize("line", [
    '{"input": "x", "status": "ok", "overlay": ["a"]}',
    '{"input": "x", "status": "ok", "overlay": {"a": 1}}',
    '{"input": "x", "touched": 5}',
    '{"input": "x", "touched": [["a"]]}',
    '{"input": ["x"]}',
    '{"input": "x", "rank": [1]}',
    '{"input": "x", "seq": "a"}',
    '{"input": "y", "seq": 1.5}',
    '{"input": "x", "rank": "2"}',
    '{"input": "x", "status": "ok", "overlay": "p.bmp.png", "files": {"p\\u0000": {"size": 1}}}',
    "[" * 5000 + "]" * 5000,
    '{"input": "x", "class_index": ' + "9" * 5000 + "}",
])
def test_a_damaged_manifest_line_is_left_out_not_a_crash(tmp_path, tiny_model_file, capsys, line):
    photo = bmp(tmp_path / "in" / "p.bmp", seed=0)
    out = tmp_path / "out"
    args = ["--model", str(tiny_model_file), str(photo.parent), "-o", str(out)]
    assert main(args) == 0
    with open(out / "manifest.jsonl", "a", encoding="utf-8") as handle:
        handle.write(line + "\n")
    capsys.readouterr()
    assert main(args) == 0
    assert "0 explained, 1 skipped" in capsys.readouterr().out
    assert main(["status", str(out)]) == 0


def test_an_output_taken_over_by_another_input_no_longer_counts_for_the_first(tmp_path, tiny_model_file, capsys):
    first, second = bmp(tmp_path / "A" / "x.bmp", seed=0), bmp(tmp_path / "B" / "x.bmp", seed=1)
    out = tmp_path / "out"
    assert main(["--model", str(tiny_model_file), str(first), "-o", str(out)]) == 0
    assert main(["--model", str(tiny_model_file), str(second), "-o", str(out)]) == 0
    assert [record["input"] for record in latest_records(out)] == [str(second)]
    capsys.readouterr()
    assert main(["status", str(out)]) == 0
    assert "1 explained" in capsys.readouterr().out
    assert str(first) not in (out / "index.html").read_text(encoding="utf-8")


def run_cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "TF_CPP_MIN_LOG_LEVEL": "3"}
    code = f"import sys; from gradcam.cli import main; sys.exit(main({args!r}))"
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes here")
def test_pipes_and_devices_are_one_line_never_a_hang(tmp_path, tiny_model_file):
    photo = bmp(tmp_path / "p.bmp", seed=0)
    os.mkfifo(tmp_path / "pipe.keras")
    os.mkfifo(tmp_path / "labels.txt")
    folder = tmp_path / "folder"
    bmp(folder / "good.bmp", seed=1)
    os.mkfifo(folder / "f.jpg")
    cases = [
        (["p.bmp", "--model", "pipe.keras", "-o", "o1"], 2, "model file not found"),
        (["p.bmp", "--model", str(tiny_model_file), "--labels", "labels.txt", "-o", "o2"], 2, "not a regular file"),
        (["p.bmp", "--model", str(tiny_model_file), "--labels", "/dev/zero", "-o", "o3"], 2, "not a regular file"),
        (["folder", "--model", str(tiny_model_file), "-o", "o4"], 1, "not a regular file"),
    ]
    for args, status, message in cases:
        result = run_cli(args, tmp_path)
        assert result.returncode == status, (args, result.stderr)
        assert message in result.stderr and "Traceback" not in result.stderr, (args, result.stderr)
    assert any(record.get("status") == "ok" for record in read_records(tmp_path / "o4"))  # the good photo
    assert photo.is_file()


@pytest.mark.parametrize("config", [b" " * (65 * 2**20), b"not json", b"[" * 100000, b"[1, 2]"])
def test_a_keras_file_whose_configuration_is_crafted_is_refused_before_keras_reads_it(tmp_path, config):
    from gradcam.models.loading import check_model_file

    path = tmp_path / "crafted.keras"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("config.json", config)
    with pytest.raises(GradcamError, match="its config.json is missing, not JSON, or larger than 64 MB"):
        check_model_file(path)


def test_a_legacy_pth_whose_protocol_pickle_is_nested_too_deep_is_one_line(tmp_path):
    from gradcam.errors import WeightsError
    from gradcam.models.torch_state_dict import read_state_dict

    path = tmp_path / "deep.pth"
    path.write_bytes(pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2) + b"\x80\x02" + b"]" * 30000 + b"a" * 29999
                     + b".")
    with pytest.raises(WeightsError) as error:
        read_state_dict(path)
    assert "\n" not in str(error.value)


def test_a_mask_is_read_upright_as_photos_are(tmp_path):
    from gradcam.inputs.masks import load_mask

    upright = np.zeros((20, 30), np.uint8)
    upright[2:8, 3:20] = 255
    Image.fromarray(upright).save(tmp_path / "upright.png")
    stored = Image.fromarray(upright).transpose(Image.Transpose.ROTATE_90)  # shown upright by orientation 6
    exif = Image.Exif()
    exif[0x0112] = 6
    stored.save(tmp_path / "turned.png", exif=exif)
    np.testing.assert_array_equal(load_mask(tmp_path / "turned.png"), load_mask(tmp_path / "upright.png"))


@pytest.mark.filterwarnings("ignore:Invalid value for VR DS:UserWarning")  # pydicom, as the test crafts the file
@pytest.mark.parametrize("tags", [{"RescaleSlope": "NaN", "RescaleIntercept": 0},
                                  {"RescaleSlope": 1e308, "RescaleIntercept": 0},
                                  {"RescaleSlope": 1, "RescaleIntercept": "-inf"}])
def test_a_dicom_rescale_that_is_not_finite_fails_that_file(tmp_path, tags):
    pytest.importorskip("pydicom")
    from gradcam.errors import ImageError
    from gradcam.inputs.medical import read_dicom

    path = tmp_path / "scan.dcm"
    dicom_file(path, np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000, **tags)
    with pytest.raises(ImageError, match="not finite"):
        read_dicom(path)


def test_the_well_formed_filter_keeps_real_records(tmp_path, tiny_model_file):
    photo = bmp(tmp_path / "in" / "p.bmp", seed=0)
    out = tmp_path / "out"
    assert main(["--model", str(tiny_model_file), str(photo), "-o", str(out), "--top-k", "2"]) == 0
    raw = [json.loads(line) for line in (out / "manifest.jsonl").read_text(encoding="utf-8").splitlines()]
    assert read_records(out / "manifest.jsonl") == raw
