"""The folder run on a local Ray cluster (num_cpus=2): the same outputs as a local run, resume, bad files."""
from __future__ import annotations

import sys

import pytest
from conftest import assert_same_outputs, write_photo

from gradcam.cli import main
from gradcam.outputs.manifest import input_records, read_records


@pytest.fixture(scope="module")
def local_ray():
    import ray  # in the test extra

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    yield ray
    ray.shutdown()


def folder(root):
    for i in range(7):
        write_photo(root / ("sub" if i % 2 else "") / f"p{i}.png", (50 + i, 40), seed=i)
    (root / "bad.jpg").write_bytes(b"not an image")
    return root


def by_input(out):
    return {r["input"]: r for r in input_records(read_records(out / "manifest.jsonl"))}


def test_ray_run_equals_a_local_run_and_resumes(tmp_path, tiny_model_file, local_ray, capsys):
    root = folder(tmp_path / "photos")
    local, remote = tmp_path / "local", tmp_path / "ray"
    base = ["--model", str(tiny_model_file), str(root), "-r", "--save-npy", "--batch-size", "2", "--top-k", "2"]
    assert main(base + ["-o", str(local)]) == 1  # bad.jpg
    assert main(base + ["-o", str(remote), "--ray", "--ray-workers", "2"]) == 1
    printed = capsys.readouterr()
    assert printed.out.count("7 explained, 0 skipped, 1 failed") == 2  # the local run and the Ray run
    assert len(assert_same_outputs(local, remote)) == 7 * 2 * 2  # 7 photos x top 2 x (.png, .npy)
    local_records, remote_records = by_input(local), by_input(remote)
    assert set(local_records) == set(remote_records)
    bad = remote_records[str(root / "bad.jpg")]
    assert bad["status"] == "error" and bad["error"] == local_records[str(root / "bad.jpg")]["error"]
    assert "bad.jpg" in (remote / "index.html").read_text()

    # a rerun resumes: every explained input is skipped, the bad file fails again
    assert main(base + ["-o", str(remote), "--ray"]) == 1
    assert "0 explained, 7 skipped, 1 failed" in capsys.readouterr().out


def test_ray_with_a_shard(tmp_path, tiny_model_file, local_ray, capsys):
    root = folder(tmp_path / "photos")
    out = tmp_path / "out"
    base = ["--model", str(tiny_model_file), str(root), "-r", "-o", str(out), "--ray"]
    codes = [main(base + ["--shard", f"{i}/2"]) for i in range(2)]
    assert sorted(codes) == [0, 1]
    assert main(["status", str(out)]) == 1  # bad.jpg failed in one shard
    assert capsys.readouterr().out.splitlines()[-1].split() == ["all", "7", "explained", "0", "skipped", "1", "failed",
                                                                "(8", "input(s))"]
    records = [r for i in range(2) for r in read_records(out / f"manifest.shard-{i}-of-2.jsonl")]
    inputs = input_records(records)
    assert sorted(r["input"] for r in inputs) == sorted({r["input"] for r in inputs}) and len(inputs) == 8
    # one run id per shard run (the driver's), and each shard's run finished
    for i in range(2):
        shard = read_records(out / f"manifest.shard-{i}-of-2.jsonl")
        assert len({r["run"] for r in shard}) == 1 and shard[0]["event"] == "start" and shard[-1]["event"] == "end"


def test_missing_ray_is_one_clear_line(tmp_path, tiny_model_file, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    photo = write_photo(tmp_path / "p.png")
    assert main(["--model", str(tiny_model_file), str(photo), "-o", str(tmp_path / "o"), "--ray"]) == 2
    err = capsys.readouterr().err
    assert 'pip install "ray[data]"' in err and "Traceback" not in err


def test_ray_explains_volumes_as_a_local_run_does(tmp_path, local_ray, capsys):
    """A 3-D model on Ray: the actors write the same .npy heatmaps, montages and planes as a local run,
    and the NIfTI heatmap with the input's affine."""
    nibabel = pytest.importorskip("nibabel")
    import numpy as np
    from conftest import keras

    k = keras()
    k.utils.set_random_seed(2)
    inputs = k.Input((8, 8, 8, 1))
    x = k.layers.Conv3D(4, 3, padding="same", activation="relu", name="conv")(inputs)
    x = k.layers.GlobalAveragePooling3D()(x)
    model = k.Model(inputs, k.layers.Dense(2, activation="softmax")(x))
    model_path = tmp_path / "volumes.keras"
    model.save(model_path)
    scans = tmp_path / "scans"
    scans.mkdir()
    rng = np.random.default_rng(2)
    np.save(scans / "a.npy", rng.uniform(0, 1, (12, 8, 10)).astype(np.float32))
    affine = np.diag([2.0, 2.0, 3.0, 1.0])
    nibabel.save(nibabel.Nifti1Image(rng.uniform(0, 1, (8, 8, 8)).astype(np.float32), affine), scans / "b.nii")
    common = [str(scans), "--model", str(model_path), "--class-index", "1"]
    assert main([*common, "-o", str(tmp_path / "ray"), "--ray"]) == 0
    assert main([*common, "-o", str(tmp_path / "local")]) == 0
    names = assert_same_outputs(tmp_path / "ray", tmp_path / "local")
    assert set(names) == {"a.npy.npy", "a.npy.png", "a.npy.planes.png", "b.nii.npy", "b.nii.png", "b.nii.planes.png"}
    np.testing.assert_array_equal(nibabel.load(tmp_path / "ray" / "b.nii.nii.gz").affine, affine)
    np.testing.assert_array_equal(nibabel.load(tmp_path / "ray" / "b.nii.nii.gz").get_fdata(),
                                  np.load(tmp_path / "local" / "b.nii.npy"))
