"""Resume and the truth of a folder's outputs: a rerun skips only what exists exactly as a record of
the same settings says; a killed run, a failed write, a full disk and a rerun with nothing to do."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import bright_photo, write_photo
from PIL import Image

from gradcam.outputs import render
from gradcam.cli import main
from gradcam.outputs.manifest import read_records

REPO = Path(__file__).resolve().parents[2]


def records(out: Path) -> list[dict]:
    """The input records of OUTPUT/manifest.jsonl in order (no run start/end records)."""
    return [record for record in read_records(out / "manifest.jsonl") if "input" in record]


def tiny(model_file, *args):
    return ["--model", str(model_file), *args]


def test_an_output_replaced_after_its_record_is_made_again(tmp_path, tiny_model_file, capsys):
    """A run killed after renaming a PNG into place but before its manifest line: the file is not the
    one the newest record describes, so the rerun must not skip it."""
    photo = write_photo(tmp_path / "a.png")
    out = tmp_path / "out"
    assert main(tiny(tiny_model_file, str(photo), "-o", str(out))) == 0
    good = np.asarray(Image.open(out / "a.png.png"))
    Image.fromarray(np.zeros_like(good)).save(out / "a.png.png")  # another run's output, never recorded
    capsys.readouterr()
    assert main(tiny(tiny_model_file, str(photo), "-o", str(out))) == 0
    assert "1 redone: outputs existed, made with other settings or incomplete: outputs changed since recorded" \
        in capsys.readouterr().out
    np.testing.assert_array_equal(np.asarray(Image.open(out / "a.png.png")), good)
    assert records(out)[-1]["files"]["a.png.png"]["size"] == (out / "a.png.png").stat().st_size


def test_an_overlay_replaced_before_a_failed_npy_write_is_made_again(tmp_path, tiny_model_file, capsys,
                                                                     monkeypatch):
    photo = write_photo(tmp_path / "a.png")
    out = tmp_path / "out"
    base = tiny(tiny_model_file, str(photo), "-o", str(out), "--save-npy")
    assert main(base) == 0
    gradcam_png = np.asarray(Image.open(out / "a.png.png"))

    def full_disk(path, heatmap):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(render, "save_npy", full_disk)
    assert main(base + ["--method", "hirescam"]) == 1  # the overlay is replaced, then the .npy fails
    error = records(out)[-1]
    assert error["status"] == "error" and set(error["touched"]) == {"a.png.png", "a.png.npy"}
    monkeypatch.undo()
    capsys.readouterr()
    assert main(base) == 0  # back to gradcam: the hirescam overlay on disk must not be kept
    assert "0 skipped" in capsys.readouterr().out
    np.testing.assert_array_equal(np.asarray(Image.open(out / "a.png.png")), gradcam_png)


def test_the_version_is_in_the_settings_and_a_new_version_redoes(tmp_path, tiny_model_file, capsys, monkeypatch):
    import gradcam
    import gradcam._version

    photo = write_photo(tmp_path / "a.png")
    out = tmp_path / "out"
    assert main(tiny(tiny_model_file, str(photo), "-o", str(out))) == 0
    assert records(out)[-1]["settings"]["version"] == gradcam.__version__
    monkeypatch.setattr(gradcam._version, "__version__", "99.0")  # the one source the run reads
    capsys.readouterr()
    assert main(tiny(tiny_model_file, str(photo), "-o", str(out))) == 0
    assert "redone" in capsys.readouterr().out and records(out)[-1]["status"] == "ok"


def test_a_full_disk_for_the_manifest_is_one_line_and_a_summary(tmp_path, tiny_model_file, capsys, monkeypatch):
    from gradcam.outputs.manifest import ManifestWriter

    root = tmp_path / "photos"
    for i in range(4):
        write_photo(root / f"p{i}.png", seed=i)
    out = tmp_path / "out"
    real_append = ManifestWriter._append
    calls = []

    def append(self, data):
        calls.append(data)
        if len(calls) == 3:  # the start record and one input made it; then the disk is full
            raise __import__("gradcam.errors").errors.OutputError(
                f"cannot write the manifest {self.path}: No space left on device")
        real_append(self, data)

    monkeypatch.setattr(ManifestWriter, "_append", append)
    assert main(tiny(tiny_model_file, str(root), "-o", str(out), "--batch-size", "1")) == 1
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    errors = [line for line in captured.err.splitlines() if line.startswith("gradcam: error:")]
    assert errors == [f"gradcam: error: cannot write the manifest {(out / 'manifest.jsonl').resolve()}: "
                      "No space left on device"]
    assert "1 explained, 0 skipped, 0 failed (stopped after 1 of 4)" in captured.out


def test_a_full_disk_for_the_gallery_is_one_line(tmp_path, tiny_model_file, capsys, monkeypatch):
    from gradcam.outputs import gallery

    photo = write_photo(tmp_path / "a.png")

    def full(path, data):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(gallery, "write_atomic", full)
    assert main(tiny(tiny_model_file, str(photo), "-o", str(tmp_path / "out"))) == 1
    captured = capsys.readouterr()
    assert "gradcam: error: cannot write the gallery in" in captured.err and "Traceback" not in captured.err
    assert "1 explained" in captured.out


def test_a_resumed_evaluate_prints_the_folders_means_and_constant_maps_get_no_scores(
        tmp_path, brightness_model_file, capsys):
    first, second = bright_photo(tmp_path / "a.png", seed=1), bright_photo(tmp_path / "b.png", seed=2)
    flat = tmp_path / "flat.png"
    Image.fromarray(np.full((32, 32, 3), 230, np.uint8)).save(flat)  # one value: a constant map
    out = tmp_path / "out"
    base = ["evaluate", "--model", str(brightness_model_file), "-o", str(out), "--steps", "4"]
    assert main(base + [str(first)]) == 0
    capsys.readouterr()
    assert main(base + [str(first), str(second), str(flat)]) == 0  # the first is skipped
    printed = capsys.readouterr().out
    latest = {Path(r["input"]).name: r for r in records(out) if r["status"] == "ok"}
    assert latest["flat.png"]["zero_heatmap"] is True and "deletion_auc" not in latest["flat.png"]
    mean = np.mean([latest[name]["deletion_auc"] for name in ("a.png", "b.png")])
    assert f"score means over the output folder: deletion auc {mean:.3f}," in printed


def run_python(code: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)


def test_a_rerun_with_every_output_up_to_date_loads_no_tensorflow(tmp_path, tiny_model_file):
    root = tmp_path / "photos"
    for i in range(5):
        write_photo(root / f"p{i}.png", seed=i)
    out = tmp_path / "out"
    assert main(tiny(tiny_model_file, str(root), "-o", str(out), "--save-npy")) == 0
    code = (f"import sys; from gradcam.cli import main; rc = main({tiny(tiny_model_file, str(root), '-o', str(out), '--save-npy')!r});"
            "print('TF', 'tensorflow' in sys.modules, 'RC', rc)")
    result = run_python(code, tmp_path)
    assert "TF False RC 0" in result.stdout, result.stderr
    assert "every output is up to date" in result.stdout and "0 explained, 5 skipped, 0 failed" in result.stdout
    skipped = [r for r in records(out) if r["status"] == "skipped"]
    assert len(skipped) == 5 and all(r["files"] and r["settings"] for r in skipped)
    # a changed setting needs the model: no fast path
    result = run_python(code.replace("'--save-npy'", "'--alpha', '0.5'"), tmp_path)
    assert "TF True RC 0" in result.stdout, result.stderr


@pytest.mark.parametrize("args, message", [
    (["--preprocess", "vgg"], "unknown preprocessing 'vgg'"),
    (["--model", "vgg19", "--top-k", "1001"], "--top-k must be between 1 and the number of classes (1000)"),
    (["--model", "vgg19", "--weights", "missing.h5"], "weights file not found: missing.h5"),
    (["--max-channels", "3"], "--max-channels applies to scorecam and ablationcam only"),
    (["--ray-workers", "2"], "--ray-workers applies to runs on Ray only"),
    (["--model", "vgg19", "--layer", "block5_conv5"], "no layer named 'block5_conv5' in the model; closest: block5_conv4"),
    (["--model", "efficientnet-lite0", "--layer", "top_activaton"], "no layer named 'top_activaton' in the model; "
                                                                      "closest: top_activation"),
    (["--model", "vgg19", "--class", "tabby cta"], "no class named 'tabby cta'; did you mean 'tabby cat'"),
    (["--model", "vgg19", "--class-index", "1000"], "class index 1000 is out of range: the model has 1000 classes"),
])
def test_errors_that_need_no_model_load_no_tensorflow(tmp_path, args, message):
    photo = write_photo(tmp_path / "p.png")
    code = (f"import sys; from gradcam.cli import main; rc = main({[str(photo), '-o', str(tmp_path / 'o'), *args]!r});"
            "print('TF', 'tensorflow' in sys.modules, 'RC', rc)")
    result = run_python(code, tmp_path)
    assert "TF False RC 2" in result.stdout, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("content, message", [
    (b"", "empty file (0 bytes)"),
    (b"not an image at all", "not a readable image (unknown or damaged format)"),
    (b"\x93NUMPY", "this is a .npy volume, and this model takes 2-D images"),
])
def test_a_single_unreadable_input_is_said_before_the_model_loads(tmp_path, content, message):
    """`gradcam empty.jpg` with the default VGG19: the input's error at once, not a model load (or a weights
    download) first."""
    name = "volume.npy" if content.startswith(b"\x93NUMPY") else "photo.jpg"
    (tmp_path / name).write_bytes(content)
    code = (f"import sys; from gradcam.cli import main; rc = main({[name, '-o', str(tmp_path / 'o')]!r});"
            "print('TF', 'tensorflow' in sys.modules, 'RC', rc)")
    result = run_python(code, tmp_path)
    assert "TF False RC 1" in result.stdout, result.stderr
    assert f"failed: {name}: {message}" in result.stderr and "Traceback" not in result.stderr
    assert "the model was not loaded" in result.stderr


def test_top_k_above_the_labels_is_refused_without_a_model(tmp_path, tiny_model_file, capsys):
    labels = tmp_path / "labels.txt"
    labels.write_text("a\nb\nc\n")
    photo = write_photo(tmp_path / "p.png")
    assert main(tiny(tiny_model_file, str(photo), "--labels", str(labels), "--top-k", "4", "-o", str(tmp_path / "o"))) == 2
    assert "number of classes (3)" in capsys.readouterr().err


def test_a_failing_file_named_on_the_command_line_is_reported_once(tmp_path, tiny_model_file, capsys):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"")
    good = write_photo(tmp_path / "good.png")
    assert main(tiny(tiny_model_file, str(bad), str(good), "-o", str(tmp_path / "o"))) == 1
    captured = capsys.readouterr()
    assert (captured.out + captured.err).count(str(bad)) == 1
    assert f"{bad}: error: empty file (0 bytes)" in captured.out


def test_shard_header_says_how_many_images_the_shard_holds(tmp_path, tiny_model_file, capsys):
    from gradcam.inputs.discovery import discover_inputs
    from gradcam.outputs.paths import select_shard

    root = tmp_path / "photos"
    for i in range(7):
        write_photo(root / f"p{i}.png", seed=i)
    held = len(select_shard(discover_inputs([root]), (0, 2)))
    assert main(tiny(tiny_model_file, str(root), "-o", str(tmp_path / "o"), "--shard", "0/2")) == 0
    assert f"gradcam: shard 0/2: {held} of 7 image(s)" in capsys.readouterr().out


def test_output_naming_a_file_is_one_clear_line(tmp_path, tiny_model_file, capsys):
    photo = write_photo(tmp_path / "p.png")
    target = tmp_path / "taken"
    target.write_text("x")
    assert main(tiny(tiny_model_file, str(photo), "-o", str(target))) == 1
    assert f"gradcam: error: the output folder {target} is a file, not a folder" in capsys.readouterr().err


@pytest.mark.parametrize("content, message", [(b"", "empty file"), (b"hello", "not a Keras model file")])
def test_an_empty_or_non_model_file_as_model_is_one_line(tmp_path, capsys, content, message):
    model = tmp_path / "model.keras"
    model.write_bytes(content)
    photo = write_photo(tmp_path / "p.png")
    assert main(["--model", str(model), str(photo), "-o", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert err.strip() == f"gradcam: error: cannot load model {model}: {message}" + (
        " (a .keras zip or an HDF5 .h5 file)" if "Keras" in message else "")


def test_random_weights_are_seeded(tmp_path, capsys):
    photo = write_photo(tmp_path / "p.png", (64, 48))
    outs = [tmp_path / "a", tmp_path / "b"]
    for out in outs:
        assert main(["--model", "mobilenetv2", "--weights", "random", str(photo), "-o", str(out), "--save-npy"]) == 0
    np.testing.assert_array_equal(np.load(outs[0] / "p.png.npy"), np.load(outs[1] / "p.png.npy"))


def test_a_weights_file_that_does_not_fit_is_one_line(tmp_path, capfd):
    from conftest import keras

    weights = tmp_path / "mobilenet.weights.h5"
    keras().applications.MobileNetV2(weights=None).save_weights(weights)
    photo = write_photo(tmp_path / "p.png")
    capfd.readouterr()
    assert main(["--model", "vgg16", "--weights", str(weights), str(photo), "-o", str(tmp_path / "o")]) == 1
    err = capfd.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines == [f"gradcam: error: cannot load weights from {weights} into vgg16: 32 of its 32 weight tensors "
                     "do not fit (is it a weights file of another architecture?)"], err


def test_gallery_captions_name_the_path_when_two_inputs_share_a_name(tmp_path, tiny_model_file):
    for folder in ("x", "y"):
        write_photo(tmp_path / "photos" / folder / "cat.png")
    out = tmp_path / "out"
    assert main(tiny(tiny_model_file, str(tmp_path / "photos"), "-r", "-o", str(out))) == 0
    page = (out / "index.html").read_text()
    assert "<figcaption>x/cat.png ·" in page and "<figcaption>y/cat.png ·" in page


def test_a_skip_by_settings_records_this_runs_request(tmp_path, tiny_model_file, capsys):
    """Named differently, made the same: --layer last_conv then the default layer (last_conv). The
    second run skips by settings and records its own request, so the next rerun can skip without the
    model."""
    photo = write_photo(tmp_path / "a.png")
    out = tmp_path / "out"
    assert main(tiny(tiny_model_file, str(photo), "-o", str(out), "--layer", "last_conv")) == 0
    assert main(tiny(tiny_model_file, str(photo), "-o", str(out))) == 0
    assert "0 explained, 1 skipped" in capsys.readouterr().out
    last = records(out)[-1]
    assert last["status"] == "skipped" and last["request"]["layer"] is None
    assert last["settings"]["layer"] == "last_conv"
