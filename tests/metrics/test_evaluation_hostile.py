"""Hostile and careless inputs to gradcam evaluate's ground truth and to the saved maps the atlas and the
comparison read: each gives one line or a listed reason, in bounded time and memory, never a crash; a
rerun redoes the scores whenever the ground truth it read has changed."""
from __future__ import annotations

import os
from pathlib import Path
import time
import tracemalloc

import numpy as np
import pytest
from PIL import Image

from gradcam.errors import UsageError
from gradcam.inputs.ground_truth import read_boxes
from gradcam.metrics import saved_maps
from gradcam.metrics.evaluation import folder_digest
from gradcam.metrics.saved_maps import MapSkipped, resample, saved_map


def _mask(path, value=255, size=(40, 30)):
    pixels = np.zeros((size[1], size[0]), np.uint8)
    pixels[2:9, 3:11] = value
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return path


def test_a_mask_reached_through_a_link_is_part_of_the_masks_digest(tmp_path):
    """read_mask follows a link to a mask (and a linked sub-folder): its content must count, or a rerun
    would keep the scores of the mask it replaced."""
    real = tmp_path / "real"
    _mask(real / "a.png")
    _mask(real / "sub" / "b.png")
    masks = tmp_path / "masks"
    masks.mkdir()
    os.symlink(real / "a.png", masks / "a.png")
    os.symlink(real / "sub", masks / "sub")
    first = folder_digest(str(masks))
    _mask(real / "a.png", value=7)  # another object, same name
    second = folder_digest(str(masks))
    _mask(real / "sub" / "b.png", value=9)
    third = folder_digest(str(masks))
    assert len({first, second, third}) == 3


def test_the_masks_digest_survives_link_loops_fifos_and_devices(tmp_path):
    masks = tmp_path / "masks"
    _mask(masks / "a.png")
    os.symlink(masks, masks / "loop")  # a folder linked into itself
    os.symlink(masks / "x.png", masks / "x.png")
    os.mkfifo(masks / "fifo.png")
    os.symlink("/dev/zero", masks / "zero.png")
    started = time.monotonic()
    digest = folder_digest(str(masks))
    assert digest.startswith("sha256:") and time.monotonic() - started < 10
    (masks / "fifo.png").unlink()
    assert folder_digest(str(masks)) == digest  # what is not a regular file does not count


def test_sixty_megabytes_of_blank_lines_are_refused_at_once(tmp_path):
    path = tmp_path / "boxes.csv"
    path.write_bytes(b"image,x0,y0,x1,y1\n" + b"\n" * 3_000_000)
    started = time.monotonic()
    with pytest.raises(UsageError, match="lines"):
        read_boxes(path)
    assert time.monotonic() - started < 2


def test_a_line_of_commas_is_refused_before_it_is_split(tmp_path):
    path = tmp_path / "boxes.csv"
    path.write_bytes(b"image,x0,y0,x1,y1\na.png,1,2,3,4\n" + b"," * 10_000_000 + b"\n")
    tracemalloc.start()
    try:
        with pytest.raises(UsageError, match="line 3"):
            read_boxes(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # the file is read into a buffer of 64 MB (its limit); split, the row would add a list of ten million
    # fields (80 MB of pointers alone)
    assert peak < 100e6


def test_a_million_legitimate_rows_stay_allowed(tmp_path):
    path = tmp_path / "boxes.csv"
    rows = "".join(f"p{i}.png,1,2,3,4\r\n" for i in range(200_000))
    path.write_text("\ufeffimage,x0,y0,x1,y1\r\n" + rows + "\r\n\r\n")
    assert len(read_boxes(path)) == 200_000


def test_a_map_of_one_long_row_resamples_in_bounded_memory():
    values = np.linspace(0, 1, 400_000)[None, :]
    tracemalloc.start()
    try:
        framed = resample(values, (64, 64))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # by hand: each output column is the mean of 6250 consecutive values of the ramp, every row alike
    expected = values[0].reshape(64, 6250).mean(axis=1)
    np.testing.assert_allclose(framed, np.broadcast_to(expected, (64, 64)), atol=1e-12)
    assert peak < 60e6  # a dense weight matrix alone is 64 x 400000 x 8 bytes = 205 MB


def test_a_map_with_a_side_over_the_limit_is_skipped_with_its_reason(tmp_path, monkeypatch):
    np.save(tmp_path / "long.npy", np.linspace(0, 1, 300, dtype=np.float32)[None, :])
    monkeypatch.setattr(saved_maps, "MAX_MAP_SIDE", 256)
    with pytest.raises(MapSkipped, match="a side over 256"):
        saved_map(tmp_path, {"heatmap": "long.npy"})


def test_a_heatmap_link_loop_is_skipped_not_a_crash(tmp_path):
    os.symlink(tmp_path / "loop.npy", tmp_path / "loop.npy")
    with pytest.raises(MapSkipped, match="cannot be resolved"):
        saved_map(tmp_path, {"heatmap": "loop.npy"})


def test_a_masks_folder_of_too_many_files_is_one_line(tmp_path, monkeypatch):
    from gradcam.metrics import evaluation

    for i in range(4):
        _mask(tmp_path / "masks" / f"m{i}.png")
    monkeypatch.setattr(evaluation, "MAX_MASK_FILES", 3)
    with pytest.raises(UsageError, match="more than 3 files"):
        folder_digest(str(tmp_path / "masks"))


def test_an_empty_file_in_the_masks_folder_is_never_opened(tmp_path, monkeypatch):
    """/proc's files say they are empty and some block when read (--masks / walks them): an empty file's
    digest is known without opening it, and it still changes when the file gets content."""
    from gradcam.metrics import evaluation

    masks = tmp_path / "masks"
    _mask(masks / "a.png")
    (masks / "empty.png").write_bytes(b"")
    opened = []
    digest = evaluation.DIGESTS.digest
    monkeypatch.setattr(evaluation.DIGESTS, "digest", lambda path: opened.append(Path(path).name) or digest(path))
    first = folder_digest(str(masks))
    assert opened == ["a.png"]
    (masks / "empty.png").write_bytes(b"now a mask")
    assert folder_digest(str(masks)) != first


def _method_folder(folder: Path, scores: dict[str, float], evaluation: dict, stale: dict[str, float] = {}):
    """A --methods folder: one "ok" record per input with its sparseness, under ``evaluation``; ``stale``:
    inputs of an earlier run into the same folder, under other settings."""
    import json

    folder.mkdir(parents=True)
    lines = [{"seq": i + 1, "input": name, "status": "ok", "rank": 1, "sparseness": value, "overlay": f"{i}.png",
              "settings": {"evaluation": evaluation if name not in stale else {**evaluation, "steps": 99}}}
             for i, (name, value) in enumerate({**stale, **scores}.items())]
    (folder / "manifest.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))


def test_methods_are_ranked_on_the_same_images_under_the_same_settings(tmp_path):
    """A folder reused from an earlier run keeps that run's inputs: the ranking must not average them in
    (other settings, images the other method never saw), nor rank two methods on different images."""
    from gradcam.metrics.ranking import rank_methods

    evaluation = {"families": ["complexity"], "steps": 20, "baselines": True}
    _method_folder(tmp_path / "m1", {"a": 0.2, "b": 0.4, "only-m1": 0.9}, evaluation, stale={"old": 0.0})
    _method_folder(tmp_path / "m2", {"a": 0.5, "b": 0.1}, {**evaluation, "baselines": False})
    ranking = rank_methods({"m1": tmp_path / "m1", "m2": tmp_path / "m2"}, evaluation=evaluation)
    assert ranking.images == {"m1": 2, "m2": 2}
    assert ranking.means["m1"]["sparseness"] == pytest.approx(0.3)  # a and b: (0.2 + 0.4) / 2
    assert ranking.means["m2"]["sparseness"] == pytest.approx(0.3)


def test_a_ranking_rerun_on_fewer_photos_with_other_settings_ranks_only_those(tmp_path, tiny_model_file, capsys):
    import json
    import sys

    sys.path.insert(0, str(Path(__file__).parents[1]))
    from conftest import write_photo
    from gradcam.cli import main

    for i in range(3):
        write_photo(tmp_path / "in" / f"p{i}.png", seed=i)
    out = tmp_path / "ranked"
    base = ["evaluate", "--model", str(tiny_model_file), "-o", str(out), "--methods", "gradcam,layercam",
            "--metrics", "complexity", "--no-baselines"]
    assert main([*base, str(tmp_path / "in")]) == 0
    assert json.loads((out / "ranking.json").read_text())["images"] == {"gradcam": 3, "layercam": 3}
    assert main([*base, str(tmp_path / "in" / "p0.png"), "--seed", "7"]) == 0
    ranking = json.loads((out / "ranking.json").read_text())
    assert ranking["images"] == {"gradcam": 1, "layercam": 1} and ranking["settings"]["seed"] == 7


@pytest.mark.parametrize("values, message", [
    ({"tolerance": float("inf")}, "--tolerance"),
    ({"sensitivity_radius": float("inf")}, "--sensitivity-radius"),
    ({"steps": 10 ** 9}, "--steps"),  # a batch of 2 (steps + 1) + 1 images: terabytes
    ({"sensitivity_samples": 10 ** 9}, "--sensitivity-samples"),
])
def test_settings_that_cannot_be_computed_are_one_line_before_the_run(values, message):
    from gradcam.metrics.evaluation import EvaluationSettings

    with pytest.raises(UsageError, match=message):
        EvaluationSettings(families=("faithfulness", "robustness", "localisation"), boxes="b.csv", **values)


def test_a_score_that_fails_is_a_one_line_gradcam_error_for_the_run_to_record(tmp_path):
    """The run turns a GradcamError from its scorer into the input's error record; anything else (a
    model that fails on the perturbed batch, memory) would end the run with a traceback."""
    from types import SimpleNamespace

    from gradcam.errors import GradcamError
    from gradcam.metrics.evaluation import EvaluationSettings, Evaluator

    def predict(batch):
        raise MemoryError()

    explainer = SimpleNamespace(predict=predict, deletion_baseline=lambda: None)
    entry = SimpleNamespace(photo=np.zeros((8, 8, 3), np.uint8), model_input=np.zeros((8, 8, 3), np.float32),
                            item=SimpleNamespace(path=tmp_path / "a.png", relative="a.png"), source=None)
    heatmap = np.random.default_rng(0).random((8, 8)).astype(np.float32)
    scorer = Evaluator(EvaluationSettings(families=("faithfulness",), steps=2, baselines=False))
    with pytest.raises(GradcamError, match="MemoryError") as caught:
        scorer(explainer, entry, heatmap, heatmap, 0)
    assert len(str(caught.value).splitlines()) == 1


@pytest.mark.parametrize("entry", ['"width": 1E400', '"width": ' + "9" * 400])
def test_a_coco_number_beyond_floats_is_one_line(tmp_path, entry):
    """JSON integers have no size limit (up to Python's 4300 digits): one past float's range overflowed."""
    path = tmp_path / "boxes.json"
    path.write_text('{"images": [{"id": 1, "file_name": "a.png", ' + entry + '}], "annotations": '
                    '[{"image_id": 1, "bbox": [0, 0, 2, 2]}]}')
    with pytest.raises(UsageError, match="images\\[0\\]: width"):
        read_boxes(path)
    path.write_text('{"images": [{"id": 1, "file_name": "a.png"}], "annotations": '
                    '[{"image_id": 1, "bbox": [0, 0, ' + "9" * 400 + ', 2]}]}')
    with pytest.raises(UsageError, match="annotations\\[0\\]: bbox"):
        read_boxes(path)


def test_a_map_mostly_at_its_maximum_is_skipped_by_the_atlas_with_its_reason(tmp_path):
    """Its median is its maximum, so nothing lies above it: no attention to place, as a constant map."""
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from saved_runs import blob, write_run

    from gradcam.metrics.atlas import build_atlas

    mostly = np.ones((16, 16), np.float32)
    mostly[0, 0] = 0.0
    out = write_run(tmp_path / "out", {"mostly": mostly, "peak": blob((16, 16), 3, 3), "other": blob((16, 16), 9, 9)})
    atlas = build_atlas(out)
    assert sorted(image.input for image in atlas.images) == ["photos/other", "photos/peak"]
    assert [name for name, _ in atlas.skipped] == ["photos/mostly"] and "above its median" in atlas.skipped[0][1]


def test_a_ranking_that_cannot_be_written_is_one_output_error(tmp_path):
    from gradcam.errors import OutputError
    from gradcam.metrics.ranking import Ranking

    ranking = Ranking(["a", "b"], {"a": {"sparseness": 0.5}, "b": {"sparseness": 0.25}}, images={"a": 1, "b": 1})
    (tmp_path / "ranking.png").mkdir()  # a folder under the figure's name
    with pytest.raises(OutputError, match="ranking.png"):
        ranking.write(tmp_path)


def test_lines_just_under_the_length_limit_are_checked_in_linear_time(tmp_path):
    from gradcam.inputs.ground_truth import MAX_LINE_CHARS

    path = tmp_path / "boxes.csv"
    name = "a" * (MAX_LINE_CHARS - 20)
    path.write_text("image,x0,y0,x1,y1\n" + "".join(f"{name}{i},1,2,3,4\n" for i in range(20)))
    started = time.monotonic()
    assert len(read_boxes(path)) == 20
    assert time.monotonic() - started < 3  # tried from every position, the check took 14 s a line
    path.write_text("image,x0,y0,x1,y1\r" + name + "x" * 30 + ",1,2,3,4\r")  # old Mac line ends count too
    with pytest.raises(UsageError, match="line 2: not CSV"):
        read_boxes(path)


def test_the_atlas_does_not_hold_a_framed_map_per_record(tmp_path):
    """A manifest of many lines naming one small map: held at once, the framed maps alone would take
    lines x frame x 4 bytes (400 x 256 x 256 x 4 = 105 MB here; a million lines at 64 x 64, 16 GB)."""
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from saved_runs import blob, record_for, write_run

    from gradcam.metrics.atlas import build_atlas

    records = [dict(record_for(f"p{i}", class_index=i % 2), heatmap="one.npy") for i in range(400)]
    out = write_run(tmp_path / "out", {"one": blob((8, 8), 2, 3)}, records)
    tracemalloc.start()
    try:
        atlas = build_atlas(out, frame=(256, 256))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(atlas.images) == 400 and [c.maps for c in atlas.classes] == [200, 200]
    assert all(image.correlation == pytest.approx(1.0) for image in atlas.images)  # every map is the same
    assert peak < 50e6, peak
