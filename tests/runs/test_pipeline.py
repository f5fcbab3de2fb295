"""The folder run as a library call: write failures, output paths, manifest."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import keras, write_photo
from PIL import Image

from gradcam.outputs import render
from gradcam.explainers.explainer import Explainer
from gradcam.inputs.discovery import discover_inputs
from gradcam.outputs.manifest import input_records, read_records
from gradcam.runs.pipeline import RunOptions, run


def test_write_failure_is_recorded_and_the_run_goes_on(tmp_path, tiny_model, monkeypatch):
    root = tmp_path / "photos"
    for name in ("a.jpg", "b.jpg", "c.jpg"):
        write_photo(root / name)
    real_save = render.save_png

    def flaky_save(path, image, *args):
        if Path(path).name == "b.jpg.png":
            raise OSError(28, "No space left on device")
        real_save(path, image, *args)

    monkeypatch.setattr(render, "save_png", flaky_save)
    out = tmp_path / "out"
    summary = run(Explainer(tiny_model), discover_inputs([root]), RunOptions(output_dir=out, batch_size=2))
    assert (summary.explained, summary.failed) == (2, 1)
    records = {Path(r["input"]).name: r for r in input_records(read_records(out / "manifest.jsonl"))}
    assert records["b.jpg"]["status"] == "error" and "No space left" in records["b.jpg"]["error"]
    assert sorted(p.name for p in out.iterdir()) == [".gradcam-sequence", "a.jpg.png", "c.jpg.png", "index.html",
                                                     "manifest.jsonl"]


def test_a_failing_batch_is_retried_one_image_at_a_time(tmp_path, tiny_model):
    root = tmp_path / "photos"
    for name in ("a.jpg", "b.jpg", "d.jpg", "e.jpg", "f.jpg"):
        write_photo(root / name, seed=len(name) + ord(name[0]))
    Image.new("RGB", (40, 30), (0, 0, 0)).save(root / "c.png")  # the one the fault hits: all black
    explainer = Explainer(tiny_model)
    real = explainer.explain_batch
    calls = []

    def faulty(images, class_index=None, regions=None):
        calls.append(len(images))
        if (images.reshape(len(images), -1).max(axis=1) == 0).any():
            raise RuntimeError("injected fault\nsecond line")
        return real(images, class_index, regions)

    explainer.explain_batch = faulty
    out = tmp_path / "out"
    summary = run(explainer, discover_inputs([root]), RunOptions(output_dir=out, batch_size=4))
    assert (summary.explained, summary.failed) == (5, 1)
    assert calls == [4, 1, 1, 1, 1, 2]  # a b c d fails, then alone; e f
    records = {Path(r["input"]).name: r for r in input_records(read_records(out / "manifest.jsonl"))}
    assert records["c.png"]["status"] == "error" and records["c.png"]["error"] == "cannot explain: injected fault"
    assert all(records[n]["status"] == "ok" for n in ("a.jpg", "b.jpg", "d.jpg", "e.jpg", "f.jpg"))
    assert not (out / "c.png.png").exists()


def overflow_model():
    """Finite for a black image; a bright one overflows float32 in the features (inf -> NaN map)."""
    k = keras()
    inputs = k.Input((16, 16, 3))
    conv = k.layers.Conv2D(2, 1, name="features")
    x = conv(inputs)
    dense = k.layers.Dense(2, activation="softmax")
    model = k.Model(inputs, dense(k.layers.GlobalAveragePooling2D()(x)))
    conv.set_weights([np.full((1, 1, 3, 2), 1e37, np.float32), np.zeros(2, np.float32)])
    dense.set_weights([np.array([[1.0, 0.5], [0.5, 1.0]], np.float32), np.zeros(2, np.float32)])  # alpha > 0: +inf
    return model


def test_non_finite_map_is_an_error_record_not_a_picture(tmp_path):
    root = tmp_path / "photos"
    Image.new("RGB", (20, 20), (0, 0, 0)).save(root.mkdir() or root / "black.png")
    Image.new("RGB", (20, 20), (250, 250, 250)).save(root / "white.png")
    out = tmp_path / "out"
    summary = run(Explainer(overflow_model(), layer="features"), discover_inputs([root]),
                  RunOptions(output_dir=out, batch_size=2, save_npy=True))
    records = {Path(r["input"]).name: r for r in input_records(read_records(out / "manifest.jsonl"))}
    assert records["white.png"]["status"] == "error"
    assert records["white.png"]["error"].startswith("heatmap is not finite: ")
    assert records["black.png"]["status"] == "ok" and records["black.png"]["zero_heatmap"] is True
    assert not (out / "white.png.png").exists() and not (out / "white.png.npy").exists()
    assert (summary.explained, summary.failed) == (1, 1)


def test_a_byte_budget_smaller_than_one_photo_changes_nothing_but_memory(tmp_path, tiny_model, monkeypatch):
    root = tmp_path / "photos"
    for i in range(7):
        write_photo(root / f"p{i}.jpg", (120, 90), seed=i)
    free = tmp_path / "free"
    run(Explainer(tiny_model), discover_inputs([root]), RunOptions(output_dir=free, batch_size=3))
    from gradcam.runs import pipeline

    held = []
    real_relieve = pipeline._FolderRun._relieve

    def watched(self):
        real_relieve(self)
        held.append(len(self.decoding) + len(self.rendering))

    monkeypatch.setattr(pipeline, "PENDING_BYTES", 1)  # every photo is over budget
    monkeypatch.setattr(pipeline._FolderRun, "_relieve", watched)
    tight = tmp_path / "tight"
    summary = run(Explainer(tiny_model), discover_inputs([root]), RunOptions(output_dir=tight, batch_size=3))
    assert summary.explained == 7 and max(held) == 0  # nothing waits between stages
    for i in range(7):
        name = f"p{i}.jpg.png"
        np.testing.assert_array_equal(np.asarray(Image.open(free / name)), np.asarray(Image.open(tight / name)))


def test_a_failed_batch_is_explained_input_by_input_and_only_the_failing_input_is_an_error(tmp_path, tiny_model):
    """A batch whose step fails is explained again one input at a time. Hand-traced for three photos in
    one batch of three, the middle one failing alone: steps of 3, 1, 1, 1 inputs; b's error record is
    written at once, a's and c's "ok" records when their writes are collected at the end."""
    root = tmp_path / "photos"
    for i, name in enumerate(("a.jpg", "b.jpg", "c.jpg")):
        write_photo(root / name, seed=i)
    explainer = Explainer(tiny_model)
    real_step, steps = explainer.explain_batch, []

    def step(images, *args):
        steps.append(len(images))
        if len(images) > 1 or len(steps) == 3:  # the batch, then b alone
            raise RuntimeError("boom\nnot this line")
        return real_step(images, *args)

    explainer.explain_batch = step
    out = tmp_path / "out"
    summary = run(explainer, discover_inputs([root]), RunOptions(output_dir=out, batch_size=3))
    assert steps == [3, 1, 1, 1]
    records = input_records(read_records(out / "manifest.jsonl"))
    assert [(Path(r["input"]).name, r["status"], r.get("error")) for r in records] == [
        ("b.jpg", "error", "cannot explain: boom"), ("a.jpg", "ok", None), ("c.jpg", "ok", None)]
    assert (summary.explained, summary.failed) == (2, 1)
    assert (out / "a.jpg.png").exists() and not (out / "b.jpg.png").exists() and (out / "c.jpg.png").exists()


def test_the_objects_older_than_a_run_are_frozen_for_the_cycle_collector_during_it_and_only_then(tmp_path, tiny_model,
                                                                                                  monkeypatch):
    import gc

    root = tmp_path / "photos"
    write_photo(root / "a.jpg")
    explainer = Explainer(tiny_model)
    seen = []
    real = explainer.explain_batch

    def watched(*args, **kwargs):
        seen.append(gc.get_freeze_count())
        return real(*args, **kwargs)

    monkeypatch.setattr(explainer, "explain_batch", watched)
    assert gc.get_freeze_count() == 0
    summary = run(explainer, discover_inputs([root]), RunOptions(output_dir=tmp_path / "out"))
    assert summary.explained == 1 and seen and min(seen) > 1000  # the model, TensorFlow, the test session
    assert gc.get_freeze_count() == 0  # given back


@pytest.mark.parametrize("frozen_by_caller, collector_on, expected", [
    (0, True, ["freeze", "unfreeze"]), (5, True, []), (0, False, []), (5, False, [])])
def test_a_process_that_froze_objects_itself_or_turned_the_collector_off_is_left_as_it_is(
        monkeypatch, frozen_by_caller, collector_on, expected):
    # Recorders instead of gc.get_freeze_count() before and after: that count moves under other threads.
    from gradcam.runs import pipeline

    calls = []
    monkeypatch.setattr(pipeline.gc, "get_freeze_count", lambda: frozen_by_caller)
    monkeypatch.setattr(pipeline.gc, "isenabled", lambda: collector_on)
    monkeypatch.setattr(pipeline.gc, "freeze", lambda: calls.append("freeze"))
    monkeypatch.setattr(pipeline.gc, "unfreeze", lambda: calls.append("unfreeze"))
    with pytest.raises(RuntimeError):
        with pipeline.objects_frozen():
            assert calls == expected[:1]
            raise RuntimeError("the run failed")
    assert calls == expected  # given back even when the run raises
