"""The atlas: border shares and resampling worked out by hand, correlations against NumPy and SciPy, the
atlas of folders written here (shards, ground truth, hostile files and manifests), its report, and a CNN
trained here with a planted shortcut whose marker images the atlas must find."""
from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from conftest import SIZE, keras, make_images
from PIL import Image
from saved_runs import blob, record_for, write_run

from gradcam.cli import main
from gradcam.errors import UsageError
from gradcam.inputs.resample import zoom_to
from gradcam.metrics.atlas import ATLAS_HTML, ATLAS_JSON, build_atlas, flat_share, shortcut_score
from gradcam.metrics.saved_maps import (
    MapSkipped,
    attention,
    axis_weights,
    border_share,
    pearson,
    resample,
    saved_map,
    spearman,
)


# --- the arithmetic, by hand ---------------------------------------------------------------------------

def test_border_share_by_hand():
    assert border_share(blob((10, 10), 0, 0), 0.1) == pytest.approx(1.0)
    assert border_share(blob((10, 10), 9, 5), 0.1) == pytest.approx(1.0)
    assert border_share(blob((10, 10), 5, 5), 0.1) == pytest.approx(0.0)
    interior = np.zeros((10, 10))
    interior[1:9, 1:9] = 1  # the band is exactly one pixel wide
    assert border_share(interior, 0.1) == pytest.approx(0.0)
    # band 1.5 px: half of pixel (1, 1)'s rows and half its columns are in it: 1 - 0.5 x 0.5 outside
    assert border_share(blob((10, 10), 1, 1), 0.15) == pytest.approx(0.75)
    # half the mass on the edge pixel (0, 5), half in the middle: 0.5
    two = blob((10, 10), 0, 5) + blob((10, 10), 5, 5)
    assert border_share(two, 0.1) == pytest.approx(0.5)
    assert border_share(np.zeros((4, 4)), 0.1) is None


@pytest.mark.parametrize("shape", [(10, 10), (37, 53), (3, 3), (480, 640)])
@pytest.mark.parametrize("border", [0.1, 0.25])
def test_a_flat_map_puts_the_band_share_of_its_mass_on_the_border_at_any_size(shape, border):
    assert border_share(np.ones(shape), border) == pytest.approx(1 - (1 - 2 * border) ** 2)
    assert flat_share(0.1) == pytest.approx(0.36)


def test_area_resampling_by_hand():
    values = np.arange(16, dtype=np.float64).reshape(4, 4)
    np.testing.assert_allclose(resample(values, (2, 2)), [[2.5, 4.5], [10.5, 12.5]])  # block means
    # 3 -> 2: output pixel 0 covers [0, 1.5): pixel 0 whole, half of pixel 1, over 1.5
    np.testing.assert_allclose(axis_weights(3, 2), [[2 / 3, 1 / 3, 0], [0, 1 / 3, 2 / 3]])
    np.testing.assert_allclose(resample(np.array([[3.0, 6.0, 9.0]]), (1, 2)), [[4.0, 8.0]])
    assert not np.shares_memory(resample(values, (4, 4)), values)


@given(arrays(np.float64, st.tuples(st.integers(1, 30), st.integers(1, 30)), elements=st.floats(0, 1)),
       st.integers(1, 30), st.integers(1, 30))
@settings(max_examples=60, deadline=None)
def test_shrinking_keeps_the_mean_and_enlarging_is_the_tools_zoom(values, rows, cols):
    rows, cols = min(rows, values.shape[0]), min(cols, values.shape[1])
    assert resample(values, (rows, cols)).mean() == pytest.approx(values.mean(), abs=1e-12)
    bigger = (values.shape[0] + rows, values.shape[1] + cols)
    np.testing.assert_allclose(resample(values, bigger), zoom_to(values, bigger), atol=1e-12)


def test_correlations_against_numpy_and_scipy():
    from scipy import stats

    rng = np.random.default_rng(3)
    a = rng.random((9, 7))
    b = a + rng.random((9, 7))
    assert pearson(a, b) == pytest.approx(np.corrcoef(a.ravel(), b.ravel())[0, 1])
    ties_a, ties_b = np.round(a * 3) / 3, np.round(b * 2) / 2  # many ties
    assert spearman(ties_a, ties_b) == pytest.approx(stats.spearmanr(ties_a.ravel(), ties_b.ravel()).statistic)
    assert pearson(np.ones((3, 3)), a[:3, :3]) is None and spearman(a[:3, :3], np.zeros((3, 3))) is None


def test_attention_is_the_map_above_its_median():
    values = np.array([[0.1, 0.1, 0.1], [0.1, 0.9, 0.4]])
    np.testing.assert_allclose(attention(values), [[0, 0, 0], [0, 0.8, 0.3]])
    assert values[1, 1] == 0.9  # not changed


def test_shortcut_score_by_hand():
    # border 0.1: a flat map's share is 0.36; a share of 0.68 is half-way to 1
    assert shortcut_score(0.68, 0.9, 0.1) == pytest.approx(0.5)
    assert shortcut_score(0.68, -0.8, 0.1) == pytest.approx(0.8)  # anti-correlated with its class: larger
    assert shortcut_score(0.2, 0.3, 0.1) == 0.0
    assert shortcut_score(1.0, None, 0.1) == 1.0


# --- the atlas of a folder written here ----------------------------------------------------------------

SHAPE = (10, 10)  # the border band (0.1) is exactly one pixel wide


def three_and_two(folder, shards=None, **extra):
    """Class 0: a corner blob 'c0', two centre blobs 'a0' and 'b0'; class 1: two maps 'p1', 'q1'."""
    maps = {"a0": blob(SHAPE, 5, 5), "b0": blob(SHAPE, 5, 5), "c0": blob(SHAPE, 0, 0),
            "p1": blob(SHAPE, 4, 4) + blob(SHAPE, 9, 9, 0.5), "q1": blob(SHAPE, 4, 5)}
    records = [record_for(name, class_index=int(name[1]), class_name=("cat", "dog")[int(name[1])],
                          **extra.get(name, {})) for name in maps]
    return write_run(folder, maps, records, shards=shards), maps


@pytest.mark.parametrize("shards", [None, 2])
def test_atlas_of_a_folder_by_hand(tmp_path, shards):
    folder, maps = three_and_two(tmp_path / "out", shards)
    atlas = build_atlas(folder, frame=SHAPE)
    assert [c.class_index for c in atlas.classes] == [0, 1] and [c.maps for c in atlas.classes] == [3, 2]
    assert atlas.classes[0].class_name == "cat" and atlas.skipped == []
    np.testing.assert_allclose(atlas.classes[0].mean_map, (maps["a0"] + maps["b0"] + maps["c0"]) / 3, atol=1e-7)
    images = {os.path.basename(image.input): image for image in atlas.images}
    # a0 against the mean of b0 and c0 (0.5 at (5, 5) and at (0, 0)), 100 pixels: the covariance sum is
    # 0.5 - 100 (1/100)^2, the variance sums 1 - 1/100 and 0.5 - 1/100: r = 0.49 / sqrt(0.99 x 0.49)
    assert images["a0"].correlation == pytest.approx(math.sqrt(49 / 99))
    assert images["c0"].correlation == pytest.approx(-1 / 99)  # against a0 and b0's centre: (-1/100)/(99/100)
    assert images["c0"].border_share == pytest.approx(1.0) and images["c0"].shortcut_score == pytest.approx(1.0)
    # p1: 1 at (4, 4) and 0.5 at the corner pixel (9, 9): a third of its mass on the border
    assert images["p1"].border_share == pytest.approx(1 / 3)
    assert images["p1"].correlation == pytest.approx(pearson(maps["p1"], maps["q1"]))
    assert atlas.classes[0].border_share == pytest.approx(1 / 3)  # (1 + 0 + 0) / 3
    assert atlas.candidates[0].input == "photos/c0"
    assert [image.shortcut_score for image in atlas.images] == sorted((i.shortcut_score for i in atlas.images),
                                                                      reverse=True)
    assert len(atlas.candidates_of(atlas.classes[1])) == 2


def test_ground_truth_scores_are_averaged_where_records_carry_them(tmp_path):
    folder, _ = three_and_two(tmp_path / "out", a0={"relevance_mass": 0.75, "energy_pointing_game": 1.0},
                              b0={"relevance_mass": 0.25}, c0={"relevance_mass": "0.5"},  # text: not a score
                              p1={"relevance_mass": 1.5})  # out of range: not a score
    atlas = build_atlas(folder, frame=SHAPE)
    cat, dog = atlas.classes
    assert cat.outside_object == pytest.approx(0.5) and cat.pointing_game == pytest.approx(1.0)
    assert cat.ground_truth == 2 and dog.ground_truth == 0 and dog.outside_object is None
    assert {os.path.basename(i.input): i.outside_object for i in atlas.images}["a0"] == pytest.approx(0.25)


def test_only_rank_one_records_with_a_map_count(tmp_path):
    maps = {"kept": blob(SHAPE, 0, 0), "second": blob(SHAPE, 0, 1), "failed": None, "ok": blob(SHAPE, 5, 5)}
    records = [{**record_for("kept"), "status": "skipped"},  # a rerun kept its result: it counts
               {**record_for("ok", class_index=1), "rank": 2, "heatmap": "second.npy"},  # top 2: not the prediction
               {**record_for("failed"), "status": "error", "error": "cannot read"}, record_for("ok")]
    atlas = build_atlas(write_run(tmp_path / "out", maps, records), frame=SHAPE)
    assert sorted(image.input for image in atlas.images) == ["photos/kept", "photos/ok"]
    assert [c.class_index for c in atlas.classes] == [0] and atlas.skipped == []


def test_frame_resampling_puts_maps_of_any_size_in_one_frame(tmp_path):
    maps = {"wide": np.zeros((30, 60)), "tall": np.zeros((90, 46))}
    maps["wide"][:15, :30], maps["tall"][:45, :23] = 1, 1  # both: the top-left quarter
    atlas = build_atlas(write_run(tmp_path / "out", maps), frame=(4, 6))
    expected = np.zeros((4, 6))
    expected[:2, :3] = 1
    np.testing.assert_allclose(atlas.classes[0].mean_map, expected, atol=1e-6)


def test_a_folder_without_saved_maps_or_manifest_is_one_line_error(tmp_path):
    folder = write_run(tmp_path / "out", {"a": None}, [record_for("a", heatmap=False)])
    with pytest.raises(UsageError, match="--save-npy"):
        build_atlas(folder)
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="no gradcam manifest"):
        build_atlas(tmp_path / "empty")
    with pytest.raises(UsageError, match="not a folder"):
        build_atlas(tmp_path / "missing")
    for bad in ({"border": 0.5}, {"border": 0}, {"frame": (1, 64)}, {"frame": (64,)}, {"top": 0}):
        with pytest.raises(UsageError):
            build_atlas(tmp_path / "out", **bad)


# --- hostile folders -------------------------------------------------------------------------------------

def npy_header(shape: tuple, dtype: str = "<f4") -> bytes:
    """A .npy version 1.0 header for ``shape`` and ``dtype``, padded as NumPy pads it."""
    text = f"{{'descr': '{dtype}', 'fortran_order': False, 'shape': {shape!r}, }}"
    text += " " * (63 - (10 + len(text)) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + len(text).to_bytes(2, "little") + text.encode("latin1")


def test_hostile_maps_and_manifest_lines_are_listed_as_skipped_never_a_crash(tmp_path, monkeypatch):
    import gradcam.metrics.saved_maps as saved_maps

    folder = tmp_path / "out"
    good = {"good1": blob(SHAPE, 5, 5), "good2": blob(SHAPE, 0, 0)}
    hostile = {"pickled": "unreadable", "npz": "not a .npy array", "text": "unreadable", "short": "unreadable",
               "volume": "not a 2-D float heatmap", "ints": "not a 2-D float heatmap", "empty": "not a 2-D",
               "nan": "NaN or infinite", "big": "outside [0, 1]", "negative": "outside [0, 1]", "flat": "constant",
               "missing": "missing", "link": "leaves the output folder", "fifo": "not a regular file",
               "folder": "not a regular file", "huge": "more than 150", "escape": "leaves the output folder",
               "absolute": "leaves the output folder", "none": "--save-npy"}
    records = [record_for(name) for name in [*good, *hostile]]
    records[-3]["heatmap"] = "../outside.npy"
    records[-2]["heatmap"] = str(tmp_path / "outside.npy")
    records[-1]["heatmap"] = None
    damaged = [b"{not json\n", b'{"input": ["a list"], "status": "ok", "heatmap": "good1.npy", "rank": 1}\n',
               b'{"input": "photos/cut", "status": "ok", "heatm']
    write_run(folder, good, records, extra_lines=damaged)
    np.save(tmp_path / "outside.npy", blob(SHAPE, 1, 1))
    np.save(folder / "pickled.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with open(folder / "npz.npy", "wb") as handle:
        np.savez(handle, x=blob(SHAPE, 1, 1))
    (folder / "text.npy").write_bytes(b"hello, not an array")
    (folder / "short.npy").write_bytes(npy_header((100000, 100000)) + b"\0" * 64)  # claims 40 GB
    np.save(folder / "volume.npy", np.zeros((2, 3, 4), np.float32))
    np.save(folder / "ints.npy", np.ones((4, 4), np.int64))
    np.save(folder / "empty.npy", np.zeros((0, 5), np.float32))
    np.save(folder / "nan.npy", np.full((4, 4), np.nan, np.float32))
    np.save(folder / "big.npy", np.full((4, 4), 2.0, np.float32))
    np.save(folder / "negative.npy", blob((4, 4), 1, 1, -1.0))
    np.save(folder / "flat.npy", np.full((4, 4), 0.5, np.float32))
    np.save(folder / "huge.npy", blob((20, 20), 3, 3))
    os.symlink(tmp_path / "outside.npy", folder / "link.npy")
    os.mkfifo(folder / "fifo.npy")  # opening it would hang
    (folder / "folder.npy").mkdir()
    monkeypatch.setattr(saved_maps, "MAX_MAP_PIXELS", 150)
    atlas = build_atlas(folder, frame=SHAPE)
    assert sorted(os.path.basename(image.input) for image in atlas.images) == ["good1", "good2"]
    reasons = {os.path.basename(name): reason for name, reason in atlas.skipped}
    assert sorted(reasons) == sorted(hostile)
    for name, expected in hostile.items():
        assert expected in reasons[name], (name, reasons[name])
    assert "photos/cut" not in str(atlas.as_dict()) and "a list" not in str(atlas.as_dict())


@given(st.binary(max_size=400), st.booleans())
@settings(max_examples=150, deadline=None)
def test_any_bytes_as_a_map_give_a_map_or_a_reason(data, with_header):
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "m.npy")
        with open(path, "wb") as handle:
            handle.write((npy_header((4, 4)) if with_header else b"") + data)
        try:
            values = saved_map(folder, {"heatmap": "m.npy"})
        except MapSkipped as exc:
            assert str(exc)
        else:
            assert values.shape == (4, 4) and values.dtype == np.float64 and 0 <= values.min() < values.max() <= 1


# --- the report ----------------------------------------------------------------------------------------

def test_report_files_escape_names_and_link_overlays(tmp_path, monkeypatch):
    maps = {"<img src=x onerror=alert(1)>": blob(SHAPE, 0, 0), "été #1?": blob(SHAPE, 5, 5), "bad": blob(SHAPE, 4, 4)}
    records = [record_for(name) for name in maps]
    records[2]["overlay"] = "../../etc/passwd"  # leaves the folder: not linked
    folder = write_run(tmp_path / "out", maps, records)
    atlas = build_atlas(folder, frame=SHAPE, top=3)
    html_path, json_path = atlas.write()
    assert (html_path, json_path) == (folder / ATLAS_HTML, folder / ATLAS_JSON)
    assert json.loads(json_path.read_text(encoding="utf-8")) == json.loads(json.dumps(atlas.as_dict()))
    text = html_path.read_text(encoding="utf-8")
    assert "<img src=x" not in text and "&lt;img src=x onerror=alert(1)&gt;" in text
    assert 'href="%3Cimg%20src%3Dx%20onerror%3Dalert%281%29%3E.png"' in text
    assert 'href="%C3%A9t%C3%A9%20%231%3F.png"' in text and "passwd" not in text
    assert text.count('src="data:image/png;base64,') == 1  # one class, one mean map
    assert not [p for p in folder.iterdir() if p.name.endswith(".part")]
    # written elsewhere, or shown in a notebook, the links lead back to the folder
    elsewhere = atlas.write(tmp_path / "reports" / "x")[0].read_text(encoding="utf-8")
    assert 'href="../../out/%C3%A9t%C3%A9%20%231%3F.png"' in elsewhere
    monkeypatch.chdir(tmp_path)
    assert 'href="out/%C3%A9t%C3%A9%20%231%3F.png"' in atlas._repr_html_()
    lines = atlas.lines()
    assert lines[0].startswith(f"gradcam atlas of {folder}: 3 map(s) in 1 predicted class(es), 0 record(s) skipped")
    first = lines[lines.index(next(line for line in lines if line.startswith("Shortcut candidates"))) + 1]
    # r with the mean of two other one-pixel maps: -0.01 / sqrt(0.99 x 0.49) = -0.0144
    assert first.split() == ["1.00", "border", "100%", "r", "-0.014", "0", "photos/<img", "src=x", "onerror=alert(1)>"]
    assert len(lines) == 3 + 3  # the counts, one class, the candidates' title, three candidates


# --- what it means: a planted shortcut ------------------------------------------------------------------

def marked(images: np.ndarray) -> np.ndarray:
    """The planted shortcut: a red 6 x 6 marker in the top-left corner (a copy)."""
    images = images.copy()
    images[:, :6, :6] = (255, 0, 0)
    return images


def test_the_atlas_finds_the_images_a_planted_shortcut_decides(tmp_path):
    """A CNN learns squares (class 0) from crosses (class 1), and that a red marker in the top-left corner
    makes an image class 1 whatever its shape (a quarter of its training images carry it). The CLI explains
    40 plain test images and 10 marked squares (--save-npy); the atlas's top 10 candidates are mostly the
    marked squares (chance: 2 of 10), and class 1's mean map peaks in the marker's corner."""
    k = keras()
    k.utils.set_random_seed(5)
    rng = np.random.default_rng(5)
    plain_x, plain_y, _ = make_images(600, rng)
    marker_x = marked(make_images(200, rng)[0])
    inputs = k.Input((SIZE, SIZE, 3))
    x = k.layers.Rescaling(1 / 255.0)(inputs)
    x = k.layers.Conv2D(16, 3, padding="same", activation="relu")(x)
    x = k.layers.MaxPooling2D(2)(x)
    x = k.layers.Conv2D(32, 3, padding="same", activation="relu", name="features")(x)
    model = k.Model(inputs, k.layers.Dense(2, activation="softmax")(k.layers.GlobalMaxPooling2D()(x)))
    model.compile(optimizer=k.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(np.concatenate([plain_x, marker_x]), np.concatenate([plain_y, np.ones(200, int)]), epochs=3,
              batch_size=32, verbose=0)
    test_x, test_y, _ = make_images(40, rng)
    shapes_x, shapes_y, _ = make_images(30, rng)
    squares = marked(shapes_x[shapes_y == 0][:10])
    assert model.evaluate(test_x, test_y, verbose=0)[1] >= 0.9, "the model did not learn the shapes"
    assert (model.predict(squares, verbose=0).argmax(axis=1) == 1).sum() >= 9, "the marker does not decide"

    photos, out = tmp_path / "photos", tmp_path / "out"
    photos.mkdir()
    for prefix, images in (("plain", test_x), ("marked", squares)):
        for number, image in enumerate(images):
            Image.fromarray(image.astype(np.uint8)).save(photos / f"{prefix}{number:02d}.png")
    model.save(tmp_path / "toy.keras")
    assert main([str(photos), "--model", str(tmp_path / "toy.keras"), "-o", str(out), "--save-npy"]) == 0
    atlas = build_atlas(out, top=10)
    found = [os.path.basename(image.input).startswith("marked") for image in atlas.candidates]
    assert sum(found) >= 7, [(image.input, round(image.shortcut_score, 2)) for image in atlas.candidates]
    ones = next(atlas_class for atlas_class in atlas.classes if atlas_class.class_index == 1)
    row, col = np.unravel_index(np.argmax(ones.mean_map), ones.mean_map.shape)
    assert row < 0.2 * atlas.frame[0] and col < 0.2 * atlas.frame[1], (row, col)
    assert len(atlas.images) == 50 and atlas.skipped == []
