"""The command line, called as main([...]) and, where a process matters, as a subprocess."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import build_tiny_model, keras, write_photo
from PIL import Image

from gradcam.cli import main

REPO = Path(__file__).resolve().parents[1]


def manifest(out: Path) -> list[dict]:
    """The input records of OUTPUT/manifest.jsonl in order (without the runs' start and end records)."""
    from gradcam.outputs.manifest import input_records, read_records

    return input_records(read_records(out / "manifest.jsonl"))


def tiny(tiny_model_file, *args):
    return ["--model", str(tiny_model_file), *args]


def test_help_and_version_do_not_import_tensorflow():
    code = ("import sys; from gradcam.cli import main; rc = main(['--help']); rc2 = main(['--version']); "
            "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, 'TF imported'; sys.exit(rc or rc2)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert "--layer" in done.stdout and "gradcam 0" in done.stdout and ".jpeg" in done.stdout


def test_python_dash_m(tmp_path):
    done = subprocess.run([sys.executable, "-m", "gradcam", "--version"], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.startswith("gradcam ")


def test_vgg19_end_to_end_sizes(tmp_path, capsys):
    photo = write_photo(tmp_path / "in" / "wide photo.jpg", (300, 170))
    out = tmp_path / "out"
    rc = main([str(photo), "--weights", "random", "-o", str(out), "--save-npy", "--layer", "block5_conv4"])
    assert rc == 0
    printed = capsys.readouterr()
    assert "block5_conv4" in printed.out and "Traceback" not in printed.err
    overlay = Image.open(out / "wide photo.jpg.png")
    assert overlay.size == (300, 170) and overlay.format == "PNG"
    heatmap = np.load(out / "wide photo.jpg.npy")
    assert heatmap.shape == (170, 300) and heatmap.dtype == np.float32
    assert heatmap.min() >= 0 and heatmap.max() <= 1
    (record,) = manifest(out)
    for key in ("input", "status", "error", "class_index", "class_name", "probability", "layer", "overlay", "heatmap"):
        assert key in record
    assert record["status"] == "ok" and record["layer"] == "block5_conv4"
    assert record["class_name"] and 0 <= record["class_index"] < 1000 and 0 < record["probability"] <= 1
    assert record["heatmap"] == "wide photo.jpg.npy"


def test_default_layer_named_and_list_layers(tmp_path, tiny_model_file, capsys):
    assert main(tiny(tiny_model_file, "--list-layers")) == 0
    listing = capsys.readouterr().out
    assert "last_conv" in listing and "<- default" in listing and "gap" not in listing
    photo = write_photo(tmp_path / "p.png")
    assert main(tiny(tiny_model_file, str(photo), "-o", str(tmp_path / "o"))) == 0
    assert "layer last_conv (default)" in capsys.readouterr().out


@pytest.mark.parametrize("args, message", [
    (["--layer", "last_cnv"], "closest: last_conv"),
    (["--layer", "gap"], "Grad-CAM needs a convolutional layer"),
    (["--class-index", "3"], "out of range"),
    (["--class-index", "-1"], "out of range"),
    (["--alpha", "1.5"], "--alpha"),
    (["--colormap", "nope"], "unknown colormap"),
])
def test_usage_errors_exit_2(tmp_path, tiny_model_file, capsys, args, message):
    photo = write_photo(tmp_path / "p.png")
    rc = main(tiny(tiny_model_file, str(photo), "-o", str(tmp_path / "o"), *args))
    err = capsys.readouterr().err
    assert rc == 2 and message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_missing_input_exit_2(tmp_path, capsys):
    assert main([str(tmp_path / "missing.jpg")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_no_input_exit_2(capsys):
    assert main([]) == 2


def test_labels_and_class_names(tmp_path, tiny_model_file):
    photo = write_photo(tmp_path / "p.png")
    out = tmp_path / "o"
    labels = tiny_model_file.parent / "labels.txt"
    assert main(tiny(tiny_model_file, str(photo), "-o", str(out), "--labels", str(labels), "--class-index", "1")) == 0
    (record,) = manifest(out)
    assert record["class_index"] == 1 and record["class_name"] == "banana"


def messy_folder(root: Path) -> None:
    write_photo(root / "good1.jpg")
    write_photo(root / "good2.png", mode="RGBA")
    write_photo(root / "sub" / "good3.webp")
    (root / "empty.jpg").write_bytes(b"")
    (root / "text.png").write_text("not an image")
    (root / "readme.txt").write_text("ignored")


def test_folder_with_bad_files(tmp_path, tiny_model_file, capsys):
    root, out = tmp_path / "photos", tmp_path / "out"
    messy_folder(root)
    rc = main(tiny(tiny_model_file, str(root), "-r", "-o", str(out), "--batch-size", "2"))
    captured = capsys.readouterr()
    assert rc == 1
    records = {Path(r["input"]).name: r for r in manifest(out)}
    assert set(records) == {"good1.jpg", "good2.png", "good3.webp", "empty.jpg", "text.png"}
    assert {n for n, r in records.items() if r["status"] == "ok"} == {"good1.jpg", "good2.png", "good3.webp"}
    assert records["empty.jpg"]["status"] == "error" and records["empty.jpg"]["error"]
    assert Image.open(out / "sub" / "good3.webp.png").size == Image.open(root / "sub" / "good3.webp").size
    assert "3 explained, 0 skipped, 2 failed" in captured.out
    assert "empty.jpg" in captured.err and "Traceback" not in captured.err


def test_rerun_skips_and_overwrite_redoes(tmp_path, tiny_model_file, capsys):
    root, out = tmp_path / "photos", tmp_path / "out"
    write_photo(root / "a.jpg")
    write_photo(root / "a.png")  # same stem: must not collide
    assert main(tiny(tiny_model_file, str(root), "-o", str(out))) == 0
    assert {p.name for p in out.glob("*.png")} == {"a.jpg.png", "a.png.png"}
    stamp = (out / "a.jpg.png").stat().st_mtime_ns
    assert main(tiny(tiny_model_file, str(root), "-o", str(out))) == 0
    assert "0 explained, 2 skipped" in capsys.readouterr().out
    assert (out / "a.jpg.png").stat().st_mtime_ns == stamp
    assert main(tiny(tiny_model_file, str(root), "-o", str(out), "--overwrite")) == 0
    assert "2 explained, 0 skipped" in capsys.readouterr().out
    runs = manifest(out)
    assert [r["status"] for r in runs] == ["ok", "ok", "skipped", "skipped", "ok", "ok"]


def test_unwritable_output_exit_1_before_model(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    photo = write_photo(tmp_path / "p.png")
    # a model file that would fail to load proves the output check comes first
    broken = tmp_path / "broken.keras"
    broken.write_bytes(b"not a model")
    rc = main([str(photo), "-o", str(blocker / "out"), "--model", str(broken)])
    err = capsys.readouterr().err
    assert rc == 1 and "cannot write to output folder" in err


def test_zero_heatmap_recorded(tmp_path, capsys):
    from conftest import keras

    k = keras()
    inputs = k.Input((8, 8, 3))
    x = k.layers.Conv2D(2, 1, kernel_initializer="zeros", name="conv")(inputs)
    x = k.layers.GlobalAveragePooling2D()(x)
    model = k.Model(inputs, k.layers.Dense(2, activation="softmax")(x))
    path = tmp_path / "zero.keras"
    model.save(path)
    photo = write_photo(tmp_path / "p.png")
    out = tmp_path / "o"
    assert main(["--model", str(path), str(photo), "-o", str(out), "--save-npy"]) == 0
    (record,) = manifest(out)
    assert record["zero_heatmap"] is True
    heatmap = np.load(out / "p.png.npy")
    assert not np.isnan(heatmap).any() and heatmap.max() == 0
    assert "zero everywhere" in capsys.readouterr().out


def run_cli(args, env=None, **kwargs):
    full_env = dict(os.environ, PYTHONPATH=str(REPO), **(env or {}))
    return subprocess.run([sys.executable, "-m", "gradcam", *args], capture_output=True, text=True,
                          env=full_env, **kwargs)


def test_imagenet_weights_offline_message(tmp_path):
    """No network: stop fast, name the file, say how to pass --weights, exit 1, no traceback."""
    photo = write_photo(tmp_path / "p.png")
    block = tmp_path / "sitecustomize.py"
    block.write_text("import socket\n"
                     "def _no(*a, **k):\n    raise OSError('network is unreachable (blocked by the test)')\n"
                     "socket.socket.connect = _no\nsocket.getaddrinfo = _no\n")
    env = {"KERAS_HOME": str(tmp_path / "keras_home"), "PYTHONPATH": f"{tmp_path}{os.pathsep}{REPO}"}
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "gradcam", str(photo), "-o", str(tmp_path / "o")],
                          capture_output=True, text=True, env=dict(os.environ, **env), timeout=120)
    assert done.returncode == 1, done.stderr
    assert "vgg19_weights_tf_dim_ordering_tf_kernels.h5" in done.stderr and "--weights" in done.stderr
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert time.monotonic() - started < 60


def test_weights_file_missing_and_broken(tmp_path, capsys):
    photo = write_photo(tmp_path / "p.png")
    assert main([str(photo), "-o", str(tmp_path / "o"), "--weights", str(tmp_path / "none.h5")]) == 2
    assert "weights file not found" in capsys.readouterr().err
    broken = tmp_path / "broken.weights.h5"
    broken.write_bytes(b"not hdf5")
    assert main([str(photo), "-o", str(tmp_path / "o"), "--weights", str(broken)]) == 1
    err = capsys.readouterr().err
    assert "cannot load weights" in err and "Traceback" not in err


def test_weights_file_round_trip(tmp_path):
    """A .weights.h5 saved with model.save_weights is loaded by --weights PATH."""
    from gradcam.models.loading import load_classifier

    source = load_classifier("vgg19", "random").model
    path = tmp_path / "vgg19.weights.h5"
    source.save_weights(path)
    loaded = load_classifier("vgg19", str(path)).model
    np.testing.assert_array_equal(loaded.get_layer("fc2").get_weights()[0], source.get_layer("fc2").get_weights()[0])


def start_folder_run(tmp_path, tiny_model_file, count):
    """Start the CLI on a folder of ``count`` photos; return (process, args, output folder)
    once the first outputs are written."""
    root, out = tmp_path / "photos", tmp_path / "out"
    for i in range(count):
        write_photo(root / f"img{i:03d}.jpg", (400, 300), seed=i)
    args = tiny(tiny_model_file, str(root), "-o", str(out), "--batch-size", "2")
    proc = subprocess.Popen([sys.executable, "-m", "gradcam", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=dict(os.environ, PYTHONPATH=str(REPO)))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(list(out.glob("*.png"))) < 4:
        time.sleep(0.05)
    return proc, args, out


def test_kill_and_resume(tmp_path, tiny_model_file):
    proc, args, out = start_folder_run(tmp_path, tiny_model_file, 40)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    done_before = {p.name for p in out.glob("*.png")}
    assert 0 < len(done_before) < 40, "the run should have been killed part-way"
    recorded_before = {Path(r["input"]).name + ".png" for r in manifest(out) if r["status"] == "ok"}
    assert recorded_before <= done_before
    rerun = run_cli(args)
    assert rerun.returncode == 0, rerun.stderr
    records = [r for r in manifest(out) if r["run"] == manifest(out)[-1]["run"]]
    statuses = {Path(r["input"]).name + ".png": r["status"] for r in records}
    assert len(statuses) == 40
    # outputs with a record are skipped; a PNG renamed into place just before the kill, whose record
    # was never written, has no recorded settings and is made again (at most the outputs in flight)
    assert {n for n, s in statuses.items() if s == "skipped"} == recorded_before
    assert len(done_before - recorded_before) <= 6
    for png in out.glob("*.png"):
        Image.open(png).load()  # every output complete
    assert len(list(out.glob("*.png"))) == 40


def test_ctrl_c_stops_cleanly(tmp_path, tiny_model_file):
    proc, args, out = start_folder_run(tmp_path, tiny_model_file, 60)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "interrupted after" in stdout and "Traceback" not in stderr
    finished = [r for r in manifest(out) if r["status"] == "ok"]
    assert 0 < len(finished) < 60
    assert run_cli(args).returncode == 0
    assert len(list(out.glob("*.png"))) == 60


def test_rerun_redoes_outputs_made_with_other_settings(tmp_path, tiny_model_file, capsys):
    root, out = tmp_path / "photos", tmp_path / "out"
    write_photo(root / "a.jpg", seed=1)
    write_photo(root / "b.jpg", seed=2)
    base = tiny(tiny_model_file, str(root), "-o", str(out))
    assert main(base) == 0
    first = (out / "a.jpg.png").read_bytes()
    capsys.readouterr()
    for changed, reason in ((["--method", "hirescam"], "method"), (["--method", "hirescam", "--alpha", "0.7"], "alpha"),
                            (["--method", "hirescam", "--alpha", "0.7", "--colormap", "viridis"], "colormap"),
                            (["--method", "hirescam", "--alpha", "0.7", "--colormap", "viridis", "--panel"], "panel")):
        assert main(base + changed) == 0
        printed = capsys.readouterr().out
        assert f"2 explained (2 redone: outputs existed, made with other settings or incomplete: {reason})" in printed, printed
        assert main(base + changed) == 0  # the same settings again: nothing to redo
        assert "0 explained, 2 skipped" in capsys.readouterr().out
    assert (out / "a.jpg.png").read_bytes() != first
    records = manifest(out)
    assert records[-1]["status"] == "skipped" and records[-1]["settings"]["method"] == "hirescam"
    assert records[-1]["settings"]["panel"] is True


def test_rerun_redoes_outputs_without_recorded_settings(tmp_path, tiny_model_file, capsys):
    root, out = tmp_path / "photos", tmp_path / "out"
    write_photo(root / "a.jpg")
    out.mkdir()
    (out / "a.jpg.png").write_bytes(b"made by something else")
    assert main(tiny(tiny_model_file, str(root), "-o", str(out))) == 0
    assert "1 redone: outputs existed, made with other settings or incomplete: no record of the outputs" in \
        capsys.readouterr().out
    assert (out / "a.jpg.png").read_bytes().startswith(b"\x89PNG")


@pytest.mark.parametrize("option, value", [("--class-index", "2"), ("--layer", "conv1"), ("--save-npy", None),
                                           ("--weights", "random")])
def test_rerun_redoes_for_each_setting(tmp_path, tiny_model_file, capsys, option, value):
    root, out = tmp_path / "photos", tmp_path / "out"
    write_photo(root / "a.jpg")
    base = tiny(tiny_model_file, str(root), "-o", str(out))
    assert main(base) == 0
    capsys.readouterr()
    extra = [option] + ([value] if value else [])
    if option == "--weights":  # a model file's weights are part of it: another file is another model
        other = tmp_path / "other.keras"
        other.write_bytes(tiny_model_file.read_bytes())
        extra = ["--model", str(other)]
    assert main(base + extra) == 0
    assert "1 redone" in capsys.readouterr().out


def test_top_k_label_comes_from_the_rank_not_the_name(tmp_path, tiny_model_file, capsys):
    photo = write_photo(tmp_path / "x.topview.png")
    out = tmp_path / "o"
    assert main(tiny(tiny_model_file, str(photo), "-o", str(out))) == 0
    line = [l for l in capsys.readouterr().out.splitlines() if "x.topview.png:" in l][0]
    assert "top " not in line.split(":", 1)[1]
    assert main(tiny(tiny_model_file, str(photo), "-o", str(out / "k"), "--top-k", "2")) == 0
    lines = [l for l in capsys.readouterr().out.splitlines() if "x.topview.png:" in l]
    assert [l.split(": ")[1] for l in lines] == ["top 1", "top 2"]


def test_cli_class_name_top_k_and_labels(tmp_path, tiny_model_file, capsys):
    photo = write_photo(tmp_path / "p.png")
    labels = tiny_model_file.parent / "labels.txt"
    out = tmp_path / "o"
    base = ["--model", str(tiny_model_file), "--labels", str(labels), str(photo), "-o", str(out)]
    assert main(base + ["--class", "cherry"]) == 0
    assert manifest(out)[-1]["class_index"] == 2
    assert main(base + ["--class", "chery"]) == 2
    assert "did you mean 'cherry'" in capsys.readouterr().err
    assert main(base + ["--top-k", "2", "--save-npy"]) == 0
    records = manifest(out)[-2:]
    assert [r["rank"] for r in records] == [1, 2]
    assert records[0]["probability"] >= records[1]["probability"]
    assert records[0]["class_index"] != records[1]["class_index"]
    from PIL import Image

    top1, top2 = (np.asarray(Image.open(out / f"p.png.top{k}.png").convert("RGB")) for k in (1, 2))
    assert top1.shape == top2.shape == (30, 40, 3) and not np.array_equal(top1, top2)
    assert np.load(out / "p.png.top2.npy").shape == (30, 40)
    assert "1 explained" in capsys.readouterr().out
    assert main(base + ["--top-k", "2", "--save-npy"]) == 0  # rerun: one input skipped, not two
    assert "0 explained, 1 skipped, 0 failed" in capsys.readouterr().out
    assert main(base + ["--top-k", "2", "--class-index", "1"]) == 2  # mutually exclusive


def test_cli_h5_model_file_and_method(tmp_path, capsys):
    model = build_tiny_model(seed=9)
    path = tmp_path / "tiny.h5"
    model.save(path)
    photo = write_photo(tmp_path / "p.png")
    for method in ("gradcam++", "hirescam", "layercam", "xgradcam", "counterfactual", "guided-gradcam"):
        out = tmp_path / method
        assert main(["--model", str(path), str(photo), "-o", str(out), "--method", method]) == 0
        (record,) = manifest(out)
        assert record["method"] == method and record["layer"] == "last_conv"


def test_unsafe_model_file_is_refused(tmp_path, capsys):
    k = keras()
    inputs = k.Input((16, 16, 3))
    x = k.layers.Lambda(lambda t: t * 2.0)(inputs)
    x = k.layers.Conv2D(2, 3, name="conv")(x)
    x = k.layers.GlobalAveragePooling2D()(x)
    model = k.Model(inputs, k.layers.Dense(2, activation="softmax")(x))
    path = tmp_path / "lambda.keras"
    model.save(path)
    photo = write_photo(tmp_path / "p.png")
    assert main(["--model", str(path), str(photo), "-o", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert "cannot load model" in err and "safe_mode" in err and "Traceback" not in err


def test_unknown_output_activation_is_said(tmp_path, capsys):
    k = keras()
    inputs = k.Input((16, 16, 3))
    x = k.layers.Conv2D(2, 3, name="conv")(inputs)
    x = k.layers.GlobalAveragePooling2D()(x)
    x = k.layers.Dense(3, activation="softmax")(x)
    model = k.Model(inputs, k.layers.Dropout(0.1)(x))  # the last layer hides the softmax
    path = tmp_path / "hidden.keras"
    model.save(path)
    photo = write_photo(tmp_path / "p.png")
    assert main(["--model", str(path), str(photo), "-o", str(tmp_path / "o")]) == 0
    captured = capsys.readouterr()
    assert "cannot tell whether" in captured.err and "scores output" in captured.out


def test_cli_panel(tmp_path, tiny_model_file):
    photo = write_photo(tmp_path / "p.png", (80, 60))
    out = tmp_path / "o"
    assert main(["--model", str(tiny_model_file), str(photo), "-o", str(out), "--panel"]) == 0
    width, height = Image.open(out / "p.png.png").size
    assert width > 2 * 80 and width > height  # a figure, not the bare 80x60 overlay


def test_saved_vit_explained_with_model_path(tmp_path, trained_vit, capsys):
    from conftest import OBJECT

    model, images, centres = trained_vit
    path = tmp_path / "vit.keras"
    model.save(path)
    assert main(["--model", str(path), "--list-layers"]) == 0
    listed = capsys.readouterr().out
    assert "block2_norm1" in listed and "<- default (input of the last attention)" in listed
    photo = tmp_path / "shape.png"
    Image.fromarray(images[0].astype(np.uint8)).save(photo)
    out = tmp_path / "o"
    assert main(["--model", str(path), str(photo), "-o", str(out), "--method", "scorecam", "--save-npy",
                 "--batch-size", "16", "--class-index", "1"]) == 0
    printed = capsys.readouterr().out
    assert "scorecam needs about 33 forward passes per image" in printed  # 32 channels + 1
    (record,) = manifest(out)
    assert record["layer"] == "block2_norm1" and record["method"] == "scorecam"
    assert record["settings"]["extra_tokens"] == 1
    heatmap = np.load(out / "shape.png.npy")
    peak = np.unravel_index(np.argmax(heatmap), heatmap.shape)
    assert abs(peak[0] - centres[0][0]) <= OBJECT // 2 + 2 and abs(peak[1] - centres[0][1]) <= OBJECT // 2 + 2


def test_smoothing_options_are_recorded_and_redo(tmp_path, tiny_model_file, capsys):
    photo = write_photo(tmp_path / "p.png")
    out = tmp_path / "o"
    base = tiny(tiny_model_file, str(photo), "-o", str(out))
    assert main(base + ["--method", "eigencam"]) == 0
    assert main(base + ["--method", "eigencam", "--aug-smooth"]) == 0
    assert "1 redone" in capsys.readouterr().out and "aug_smooth" in manifest(out)[-1]["settings"]
    assert main(base + ["--method", "gradcam", "--eigen-smooth"]) == 0
    record = manifest(out)[-1]
    assert record["settings"]["eigen_smooth"] is True and record["method"] == "gradcam"
    assert main(base + ["--method", "ablationcam", "--max-channels", "3", "--top-k", "2"]) == 0
    records = manifest(out)[-2:]
    assert [r["rank"] for r in records] == [1, 2] and records[0]["settings"]["max_channels"] == 3


@pytest.mark.parametrize("args, message", [(["--max-channels", "0"], "--max-channels"),
                                           (["--extra-tokens", "-1"], "--extra-tokens"),
                                           (["--extra-tokens", "3"], "leave no square grid")])
def test_new_option_errors_exit_2(tmp_path, tiny_model_file, trained_vit, capsys, args, message):
    model, _, _ = trained_vit
    path = tmp_path / "vit.keras"
    model.save(path)
    photo = write_photo(tmp_path / "p.png")
    assert main(["--model", str(path), str(photo), "-o", str(tmp_path / "o"), *args]) == 2
    assert message in capsys.readouterr().err


def test_max_size_and_png_compression(tmp_path, tiny_model_file, capsys):
    from gradcam.explainers.heatmap import heatmap_at
    from gradcam.inputs.images import load_image, shrink
    from gradcam.outputs.render import overlay

    photo = write_photo(tmp_path / "p.png", (90, 60), seed=5)
    out = tmp_path / "o"
    base = tiny(tiny_model_file, str(photo), "-o", str(out), "--save-npy")
    assert main(base) == 0
    full_png = np.asarray(Image.open(out / "p.png.png").convert("RGB"))
    assert full_png.shape == (60, 90, 3)
    assert main(base + ["--max-size", "45", "--png-compression", "9"]) == 0
    assert "1 redone" in capsys.readouterr().out
    small_png = np.asarray(Image.open(out / "p.png.png").convert("RGB"))
    heatmap = np.load(out / "p.png.npy")
    assert small_png.shape == (30, 45, 3) and heatmap.shape == (30, 45)
    settings = manifest(out)[-1]["settings"]
    assert settings["max_size"] == 45 and settings["png_compression"] == 9
    # the same map (made from the full photo) at the smaller size, over the shrunk photo
    from gradcam.explainers.explainer import Explainer
    from gradcam.inputs.images import resize_for_model
    from gradcam.models.loading import load_classifier

    explainer = Explainer(load_classifier(str(tiny_model_file)))
    cam = explainer.explain_batch(resize_for_model(load_image(photo), explainer.input_size)[None]).cams[0]
    np.testing.assert_allclose(heatmap, heatmap_at(cam, (30, 45))[0], atol=1e-6)
    np.testing.assert_array_equal(small_png, overlay(shrink(load_image(photo), 45), heatmap, 0.4, "jet"))
    assert main(base + ["--max-size", "200"]) == 0  # larger than the photo: its own size
    assert np.asarray(Image.open(out / "p.png.png")).shape[:2] == (60, 90)
    for bad in (["--max-size", "0"], ["--png-compression", "10"]):
        assert main(base + bad) == 2


@pytest.mark.parametrize("method", ["scorecam", "ablationcam", "eigencam"])
def test_new_methods_through_evaluate_panel_and_top_k(tmp_path, brightness_model_file, method, capsys):
    from conftest import bright_photo

    photo = bright_photo(tmp_path / "p.png")
    out = tmp_path / "o"
    channels = ["--max-channels", "1"] if method != "eigencam" else []
    assert main(["evaluate", "--model", str(brightness_model_file), str(photo), "-o", str(out), "--method", method,
                 *channels, "--top-k", "2", "--panel", "--steps", "8", "--eigen-smooth"]) == 0
    records = manifest(out)
    assert [r["rank"] for r in records] == [1, 2] and all(r["method"] == method for r in records)
    first = records[0]  # class 0, "bright": deletion to black loses it about halfway, insertion keeps it
    assert first["class_index"] == 0 and 0.3 < first["deletion_auc"] < 0.7 and first["insertion_auc"] > 0.9
    assert all(r["settings"]["eigen_smooth"] is True for r in records)
    width, height = Image.open(out / "p.png.top1.png").size
    assert width > 2 * 32  # the side-by-side panel
    assert method in (out / "index.html").read_text()
