"""Two runs compared: pairing by content, never by name; Spearman against SciPy, the top-region IoU by
hand, maps of two sizes; hostile folders; the report; and the CLI's runs of two methods over the same
photos, one folder's photos renamed."""
from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
from conftest import write_photo
from saved_runs import blob, record_for, write_run

from gradcam.cli import main
from gradcam.errors import UsageError
from gradcam.metrics.compare import (
    COMPARE_HTML,
    COMPARE_JSON,
    common_shape,
    compare_runs,
    default_destination,
    digest,
)
from gradcam.metrics.saved_maps import iou, top_region


def test_top_region_and_iou_by_hand():
    a = np.array([[0.9, 0.8, 0.1, 0, 0], [0, 0, 0, 0, 0.05]])
    b = np.array([[0.9, 0.1, 0.7, 0, 0], [0, 0, 0, 0, 0.05]])
    # top 20 % of 10 pixels: the 2 highest
    np.testing.assert_array_equal(top_region(a, 0.2), [[1, 1, 0, 0, 0], [0, 0, 0, 0, 0]])
    assert iou(top_region(a, 0.2), top_region(b, 0.2)) == pytest.approx(1 / 3)  # {00} of {00, 01, 02}
    ties = np.array([[0.5, 0.5, 0.5, 0, 0], [0, 0, 0, 0, 0.1]])
    assert top_region(ties, 0.2).sum() == 3  # the ties at the cut are all in
    assert top_region(np.array([[0.3, 0, 0, 0, 0]]), 0.6).sum() == 1  # zeros never
    assert iou(top_region(np.zeros((2, 2)), 0.2), top_region(np.zeros((2, 2)), 0.2)) is None
    assert common_shape((480, 640), (240, 320)) == (192, 256) and common_shape((10, 8), (9, 12)) == (9, 8)


def test_pairs_by_content_not_by_name(tmp_path):
    rng = np.random.default_rng(1)
    maps = {name: rng.random((6, 6)).astype(np.float32) for name in ("cat", "dog", "same", "nodigest", "twin")}
    a = write_run(tmp_path / "a", maps, [
        record_for("cat", class_index=3, class_name="tabby"), record_for("dog", class_index=5),
        record_for("same", content="bytes of A's same"), record_for("nodigest", content=False),
        record_for("twin", content="cat")])  # another input of A with cat's bytes
    renamed = {"kitty": maps["cat"] ** 2, "puppy": maps["dog"], "same": maps["same"]}
    b = write_run(tmp_path / "b", renamed, [
        record_for("kitty", class_index=3, content="cat"), record_for("puppy", class_index=4, content="dog"),
        record_for("same", content="bytes of B's same")])
    comparison = compare_runs(a, b)
    assert {(pair.input_a, pair.input_b) for pair in comparison.pairs} == {("photos/cat", "photos/kitty"),
                                                                         ("photos/dog", "photos/puppy")}
    assert comparison.only_a == ["photos/same"] and comparison.only_b == ["photos/same"]  # one name, two files
    assert comparison.no_digest_a == ["photos/nodigest"] and comparison.duplicates == ["photos/twin"]
    by_name = {pair.input_b: pair for pair in comparison.pairs}
    assert by_name["photos/kitty"].spearman == pytest.approx(1.0)  # squaring keeps the order of [0, 1]
    assert by_name["photos/kitty"].iou == pytest.approx(1.0) and by_name["photos/kitty"].same_class
    assert by_name["photos/puppy"].spearman == pytest.approx(1.0) and not by_name["photos/puppy"].same_class
    assert comparison.agreement == pytest.approx(0.5)
    assert digest({"source": {"sha256": "AB" * 32}}) == "ab" * 32
    assert digest({"source": {"sha256": "not hex"}}) is None and digest({"source": ["x"]}) is None


def test_spearman_against_scipy_and_maps_of_two_sizes(tmp_path):
    from scipy import stats

    rng = np.random.default_rng(2)
    big = np.round(rng.random((8, 8)) * 4) / 4  # ties
    small = rng.random((4, 4))
    other = np.round(rng.random((8, 8)) * 3) / 3
    a = write_run(tmp_path / "a", {"x": big, "y": big, "z": other})
    b = write_run(tmp_path / "b", {"x": small, "y": big, "z": big})
    comparison = compare_runs(a, b, top_share=0.25)
    pairs = {pair.input_a: pair for pair in comparison.pairs}
    blocks = big.astype(np.float32).astype(np.float64).reshape(4, 2, 4, 2).mean(axis=(1, 3))  # area-averaged
    assert pairs["photos/x"].spearman == pytest.approx(stats.spearmanr(blocks.ravel(), small.astype(np.float32).ravel())
                                                       .statistic)
    assert pairs["photos/y"].spearman == pytest.approx(1.0) and pairs["photos/y"].iou == pytest.approx(1.0)
    expected = stats.spearmanr(other.astype(np.float32).ravel(), big.astype(np.float32).ravel()).statistic
    assert pairs["photos/z"].spearman == pytest.approx(expected)
    saved_a, saved_b = other.astype(np.float32), big.astype(np.float32)  # as the .npy holds them
    top_a = (saved_a >= np.sort(saved_a.ravel())[-16]) & (saved_a > 0)  # 25 % of 64 pixels, ties in
    top_b = (saved_b >= np.sort(saved_b.ravel())[-16]) & (saved_b > 0)
    assert top_a.sum() > 16 and top_b.sum() > 16  # ties at the cut: more than 16 pixels each
    assert pairs["photos/z"].iou == pytest.approx((top_a & top_b).sum() / (top_a | top_b).sum())
    assert comparison.mean_spearman == pytest.approx(np.mean([p.spearman for p in comparison.pairs]))
    assert [pair.spearman for pair in comparison.pairs] == sorted(pair.spearman for pair in comparison.pairs)


def test_hostile_folders(tmp_path):
    a = write_run(tmp_path / "a", {"x": blob((4, 4), 1, 1), "y": blob((4, 4), 2, 2), "z": blob((4, 4), 0, 0)},
                  extra_lines=[b"{broken\n", b'{"input": "photos/x", "status": "ok", "rank": 1.5}\n'])
    b = write_run(tmp_path / "b", {"x": None, "y": np.full((4, 4), np.nan), "z": blob((4, 4), 0, 0)})
    (tmp_path / "b" / "w.npy").write_bytes(b"\x93NUMPY garbage")
    comparison = compare_runs(a, b)
    reasons = {pair.input_b: pair.reason for pair in comparison.pairs}
    assert reasons == {"photos/x": "B: the .npy is missing", "photos/y": "B: the map has NaN or infinite values",
                       "photos/z": None}
    assert [pair.input_b for pair in comparison.disagreeing] == ["photos/z"]
    no_maps = write_run(tmp_path / "c", {"x": None}, [record_for("x", heatmap=False)])
    with pytest.raises(UsageError, match="--save-npy"):
        compare_runs(a, no_maps)
    with pytest.raises(UsageError, match="not a folder"):
        compare_runs(tmp_path / "b" / "w.npy", a)
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="no gradcam manifest"):
        compare_runs(a, tmp_path / "empty")
    for bad in ({"top_share": 0}, {"top_share": 1.5}, {"worst": 0}):
        with pytest.raises(UsageError):
            compare_runs(a, b, **bad)


def test_report_shows_both_overlays_side_by_side(tmp_path, monkeypatch):
    a = write_run(tmp_path / "runs" / "a", {"<b>x": blob((4, 4), 1, 1), "y": blob((4, 4), 2, 2)})
    b = write_run(tmp_path / "runs" / "b", {"x2": blob((4, 4), 3, 3), "y": blob((4, 4), 2, 2)},
                  [record_for("x2", content="<b>x"), record_for("y")])
    comparison = compare_runs(a, b, worst=1)
    dest = default_destination(a, b)
    assert dest == b / "compare-with-a"
    html_path, json_path = comparison.write(dest)
    assert (html_path, json_path) == (dest / COMPARE_HTML, dest / COMPARE_JSON)
    assert json.loads(json_path.read_text(encoding="utf-8")) == json.loads(json.dumps(comparison.as_dict()))
    text = html_path.read_text(encoding="utf-8")
    assert 'href="../../a/%3Cb%3Ex.png"' in text and 'href="../x2.png"' in text  # the least alike pair only
    assert "<b>x" not in text and "&lt;b&gt;x" in text and "y.png" not in text
    monkeypatch.chdir(tmp_path)
    assert 'href="runs/a/%3Cb%3Ex.png"' in comparison._repr_html_()
    lines = comparison.lines()
    assert lines[1].startswith("2 image(s) in both folders") and "same class 100% (2 of 2)" in lines[1]
    assert lines[3].split()[-1] == "photos/x2"


def test_two_methods_over_the_same_photos_one_folder_renamed(tmp_path, tiny_model_file):
    """The CLI explains four photos with gradcam into A, and the same photos renamed with gradcam++ into B
    (and with gradcam again into C): every photo is paired by content; each pair's numbers equal SciPy's
    on the saved maps; the same method gives identical maps."""
    from scipy import stats

    photos, renamed = tmp_path / "photos", tmp_path / "renamed"
    for number in range(4):
        write_photo(photos / f"p{number}.png", size=(40, 30), seed=number)
    renamed.mkdir()
    for number in range(4):
        shutil.copy(photos / f"p{number}.png", renamed / f"copy-{3 - number}.png")
    model = ["--model", str(tiny_model_file), "--save-npy"]
    assert main([str(photos), *model, "-o", str(tmp_path / "A")]) == 0
    assert main([str(renamed), *model, "-o", str(tmp_path / "B"), "--method", "gradcam++"]) == 0
    assert main([str(renamed), *model, "-o", str(tmp_path / "C")]) == 0
    comparison = compare_runs(tmp_path / "A", tmp_path / "B")
    assert comparison.methods == ("gradcam", "gradcam++") and len(comparison.pairs) == 4
    assert not (comparison.only_a or comparison.only_b or comparison.no_digest_a or comparison.duplicates)
    for pair in comparison.pairs:
        number = int(os.path.basename(pair.input_a)[1])
        assert os.path.basename(pair.input_b) == f"copy-{3 - number}.png"
        first = np.load(tmp_path / "A" / f"p{number}.png.npy").astype(np.float64)
        second = np.load(tmp_path / "B" / f"copy-{3 - number}.png.npy").astype(np.float64)
        assert pair.spearman == pytest.approx(stats.spearmanr(first.ravel(), second.ravel()).statistic)
        assert pair.same_class  # one model: the same top class whatever the method
    assert comparison.agreement == 1.0
    same = compare_runs(tmp_path / "A", tmp_path / "C")
    assert [pair.spearman for pair in same.pairs] == pytest.approx([1.0] * 4)
    assert [pair.iou for pair in same.pairs] == pytest.approx([1.0] * 4)
