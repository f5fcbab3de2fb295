"""gradcam evaluate end to end: every metric family in the manifest beside its baselines, the settings
that made them recorded (a rerun with other settings redoes the maps), one-line errors, and on a CNN
trained here to find objects at known places, the pointing game ranks Grad-CAM far above the random map."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from PIL import Image

from conftest import OBJECT, SIZE, build_tiny_model, keras, make_images, write_photo
from gradcam.cli import main
from gradcam.outputs.manifest import input_records, read_records


def records(out):
    return input_records(read_records(out / "manifest.jsonl"))


@pytest.fixture(scope="module")
def shapes_model_file(tmp_path_factory):
    """A CNN (BatchNormalization, global-average-pooling head) trained to tell a square from a cross at a
    random place of a noisy 48 x 48 photo; saved as .keras."""
    k = keras()
    k.utils.set_random_seed(5)
    rng = np.random.default_rng(5)
    train_x, train_y, _ = make_images(1200, rng)
    inputs = k.Input((SIZE, SIZE, 3))
    x = k.layers.Rescaling(1 / 255.0)(inputs)
    x = k.layers.Conv2D(16, 3, padding="same")(x)
    x = k.layers.BatchNormalization()(x)
    x = k.layers.Activation("relu")(x)
    x = k.layers.MaxPooling2D(2)(x)
    x = k.layers.Conv2D(32, 3, padding="same", activation="relu", name="features")(x)
    x = k.layers.GlobalAveragePooling2D()(x)
    model = k.Model(inputs, k.layers.Dense(2, activation="softmax")(x))
    model.compile(optimizer=k.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(train_x, train_y, epochs=6, batch_size=32, verbose=0)
    path = tmp_path_factory.mktemp("shapes") / "shapes.keras"
    model.save(path)
    return path


def test_the_pointing_game_ranks_gradcam_far_above_the_random_map_on_a_trained_toy(tmp_path, shapes_model_file):
    rng = np.random.default_rng(11)
    images, labels, centres = make_images(16, rng)
    folder = tmp_path / "photos"
    folder.mkdir()
    rows = []
    for i, (image, (r, c)) in enumerate(zip(images, centres)):
        Image.fromarray(image.astype(np.uint8)).save(folder / f"p{i:02d}.png")
        half = OBJECT // 2
        rows.append([f"p{i:02d}.png", c - half, r - half, c + half, r + half])
    boxes = tmp_path / "boxes.csv"
    with open(boxes, "w", newline="") as handle:
        csv.writer(handle).writerows([["image", "x0", "y0", "x1", "y1"], *rows])
    out = tmp_path / "out"
    assert main(["evaluate", str(folder), "--model", str(shapes_model_file), "-o", str(out), "--boxes", str(boxes),
                 "--metrics", "localisation", "--tolerance", "2"]) == 0
    found = records(out)
    assert len(found) == 16 and all(r["ground_truth"]["kind"] == "boxes" for r in found)
    game = np.mean([r["pointing_game"] for r in found])
    chance = np.mean([r["baselines"]["random"]["pointing_game"] for r in found])
    energy = np.mean([r["energy_pointing_game"] for r in found])
    energy_random = np.mean([r["baselines"]["random"]["energy_pointing_game"] for r in found])
    assert game >= 0.75 and chance <= 0.4, (game, chance)
    assert energy > energy_random + 0.1, (energy, energy_random)
    # the random map's energy share is about the boxes' share of the photo: a check that can fail
    assert abs(energy_random - OBJECT ** 2 / SIZE ** 2) < 0.08


def test_every_family_is_recorded_beside_its_baselines_with_its_settings(tmp_path, tiny_model_file, capsys):
    photo = write_photo(tmp_path / "a.png", size=(40, 30))
    out = tmp_path / "out"
    assert main(["evaluate", str(photo), "--model", str(tiny_model_file), "-o", str(out), "--steps", "4",
                 "--metrics", "faithfulness,road,complexity,robustness", "--road-percentiles", "20,50,80",
                 "--sensitivity-samples", "3"]) == 0
    (record,) = records(out)
    for key in ("deletion_auc", "insertion_auc", "average_drop", "road_combined", "sparseness", "complexity",
                "max_sensitivity"):
        assert isinstance(record[key], float) and np.isfinite(record[key]), key
    for name in ("random", "sobel"):
        assert set(record["baselines"][name]) >= {"deletion_auc", "road_combined", "sparseness", "complexity"}
        assert "max_sensitivity" not in record["baselines"][name]
    evaluation = record["settings"]["evaluation"]
    assert evaluation["road_percentiles"] == [20.0, 50.0, 80.0] and evaluation["sensitivity_samples"] == 3
    assert evaluation["families"] == ["faithfulness", "road", "complexity", "robustness"]
    assert record["request"]["evaluation"] == evaluation
    printed = capsys.readouterr().out
    assert "score means over the output folder: deletion auc" in printed and "baseline sobel:" in printed


def test_another_evaluation_setting_redoes_the_maps_and_the_same_skips_them(tmp_path, tiny_model_file, capsys):
    photo = write_photo(tmp_path / "a.png")
    out = tmp_path / "out"
    base = ["evaluate", str(photo), "--model", str(tiny_model_file), "-o", str(out), "--steps", "2",
            "--metrics", "road", "--no-baselines"]
    assert main(base + ["--road-percentiles", "50"]) == 0
    assert main(base + ["--road-percentiles", "50"]) == 0
    assert "the model was not loaded" in capsys.readouterr().out
    assert main(base + ["--road-percentiles", "30,60"]) == 0
    latest = records(out)[-1]
    assert latest["status"] == "ok" and latest["settings"]["evaluation"]["road_percentiles"] == [30.0, 60.0]


def test_a_boxes_file_rewritten_under_its_name_redoes_the_scores(tmp_path, tiny_model_file, capsys):
    photo = write_photo(tmp_path / "a.png", size=(40, 30))
    boxes = tmp_path / "boxes.csv"
    boxes.write_text("image,x0,y0,x1,y1\na.png,0,0,10,10\n")
    out = tmp_path / "out"
    base = ["evaluate", str(photo), "--model", str(tiny_model_file), "-o", str(out), "--boxes", str(boxes),
            "--metrics", "localisation", "--no-baselines"]
    assert main(base) == 0
    first = records(out)[-1]["relevance_mass"]
    boxes.write_text("image,x0,y0,x1,y1\na.png,0,0,40,30\n")  # the whole photo: all the mass inside
    assert main(base) == 0
    latest = records(out)[-1]
    assert latest["status"] == "ok" and latest["relevance_mass"] == pytest.approx(1.0) and first < 1.0


def test_the_random_baseline_follows_the_photos_content_not_its_name(tmp_path, tiny_model_file):
    first = write_photo(tmp_path / "one" / "a.png", seed=3)
    second = tmp_path / "two" / "b.png"
    second.parent.mkdir()
    second.write_bytes(first.read_bytes())
    other = write_photo(tmp_path / "two" / "c.png", seed=4)
    out = tmp_path / "out"
    assert main(["evaluate", str(first), str(second), str(other), "--model", str(tiny_model_file), "-o", str(out),
                 "--metrics", "complexity"]) == 0
    random = {r["input"].split("/")[-1]: r["baselines"]["random"]["sparseness"] for r in records(out)}
    assert random["a.png"] == random["b.png"] != random["c.png"]


@pytest.mark.parametrize("extra, message", [
    (["--metrics", "faithfulness,speed"], "unknown metric family speed"),
    (["--metrics", "localisation"], "localisation needs ground truth"),
    (["--boxes", "missing.csv"], "--boxes: no such file"),
    (["--masks", "missing"], "--masks: no such folder"),
    (["--road-percentiles", "0,50"], "--road-percentiles must lie strictly between 0 and 100"),
    (["--methods", "gradcam,gradcm"], "unknown method 'gradcm'; did you mean gradcam"),
    (["--methods", "gradcam"], "two or more methods"),
])
def test_evaluation_errors_are_one_line_before_the_model_loads(tmp_path, tiny_model_file, capsys, extra, message):
    photo = write_photo(tmp_path / "a.png")
    code = main(["evaluate", str(photo), "--model", str(tiny_model_file), "-o", str(tmp_path / "o"), *extra])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err


def test_methods_are_ranked_metric_by_metric_into_csv_figure_and_json(tmp_path, capsys):
    model = build_tiny_model(size=32, classes=3)
    model_file = tmp_path / "m.keras"
    model.save(model_file)
    photos = [write_photo(tmp_path / "in" / f"p{i}.png", seed=i) for i in range(3)]
    out = tmp_path / "out"
    assert main(["evaluate", str(tmp_path / "in"), "--model", str(model_file), "-o", str(out), "--steps", "4",
                 "--methods", "gradcam,layercam", "--metrics", "faithfulness,complexity"]) == 0
    with open(out / "ranking.csv", newline="") as handle:
        rows = {row["metric"]: row for row in csv.DictReader(handle)}
    assert set(rows) == {"deletion_auc", "insertion_auc", "average_drop", "sparseness", "complexity"}
    for method in ("gradcam", "layercam"):
        folder = records(out / method)
        assert len(folder) == len(photos)
        mean = np.mean([r["sparseness"] for r in folder])
        assert float(rows["sparseness"][method]) == pytest.approx(mean, rel=1e-9)
    # the baselines do not depend on the method: scored with the first only, shown on every row
    assert all("baselines" in r for r in records(out / "gradcam"))
    assert not any("baselines" in r for r in records(out / "layercam"))
    assert rows["sparseness"]["random baseline"] != ""
    better = max(("gradcam", "layercam"), key=lambda m: float(rows["sparseness"][m]))
    assert rows["sparseness"][f"{better} rank"] == "1"
    assert (out / "ranking.png").stat().st_size > 1000
    assert json.loads((out / "ranking.json").read_text())["settings"]["families"] == ["faithfulness", "complexity"]
    assert "no overall winner" in capsys.readouterr().out


def test_a_bad_mask_fails_its_input_alone_and_an_input_without_truth_is_scored_without_it(tmp_path, tiny_model_file,
                                                                                         capsys):
    folder = tmp_path / "in"
    for name in ("good", "wrong_size", "no_mask"):
        write_photo(folder / f"{name}.png", size=(40, 30))
    masks = tmp_path / "masks"
    masks.mkdir()
    Image.fromarray(np.pad(np.ones((10, 10), np.uint8) * 255, ((0, 20), (0, 30)))).save(masks / "good.png")
    Image.fromarray(np.ones((5, 5), np.uint8)).save(masks / "wrong_size.png")
    out = tmp_path / "out"
    code = main(["evaluate", str(folder), "--model", str(tiny_model_file), "-o", str(out), "--masks", str(masks),
                 "--metrics", "localisation,complexity", "--no-baselines"])
    assert code == 1
    latest = {r["input"].split("/")[-1]: r for r in records(out)}
    assert latest["wrong_size.png"]["status"] == "error" and "cannot score the map" in latest["wrong_size.png"]["error"]
    good, bare = latest["good.png"], latest["no_mask.png"]
    assert good["status"] == "ok" and good["ground_truth"] == {"kind": "mask", "pixels": 100, "share": 100 / 1200}
    assert 0 <= good["relevance_mass"] <= 1 and good["pointing_game"] in (0.0, 1.0)
    assert bare["status"] == "ok" and bare["ground_truth"] is None and "pointing_game" not in bare
    assert isinstance(bare["sparseness"], float)
    assert "Traceback" not in capsys.readouterr().err


def test_an_interrupted_method_stops_the_ranking_run(tmp_path, tiny_model_file, monkeypatch, capsys):
    import gradcam.cli.explain as explain

    photo = write_photo(tmp_path / "a.png")
    ran = []

    def interrupted(args):
        ran.append(args.method)
        return 130  # what a run stopped by Ctrl-C or SIGTERM returns

    monkeypatch.setattr(explain, "run_command", interrupted)
    code = main(["evaluate", str(photo), "--model", str(tiny_model_file), "-o", str(tmp_path / "out"),
                 "--methods", "gradcam,layercam,hirescam"])
    assert code == 130 and ran == ["gradcam"] and not (tmp_path / "out" / "ranking.csv").exists()
