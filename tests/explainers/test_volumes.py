"""Volumetric (3-D) models: Conv3D networks explained on (d, h, w, K) activations, maps upsampled in 3-D
with scipy.ndimage.zoom; a small 3-D CNN trained in the test to find a bright cube in a noisy volume,
against an independent computation of its gradients."""
from __future__ import annotations

import numpy as np
import pytest
from conftest import keras

from gradcam.explainers.explainer import Explainer
from gradcam.errors import UsageError

SIDE, CUBE = 16, 5


def cube_volumes(n: int, rng: np.random.Generator):
    """Noise volumes (n, 16, 16, 16, 1); label 1: a bright 5-voxel cube at a random place, 0: noise only.
    Returns (volumes float32, labels, centres (n, 3))."""
    volumes = rng.uniform(0, 0.4, (n, SIDE, SIDE, SIDE, 1)).astype(np.float32)
    labels = rng.integers(0, 2, n)
    centres = rng.integers(CUBE // 2, SIDE - CUBE // 2, (n, 3))
    for volume, label, (z, y, x) in zip(volumes, labels, centres):
        if label:
            volume[z - 2 : z + 3, y - 2 : y + 3, x - 2 : x + 3] = 1.0
    return volumes, labels, centres


@pytest.fixture(scope="module")
def cube_finder():
    k = keras()
    k.utils.set_random_seed(5)
    rng = np.random.default_rng(5)
    volumes, labels, _ = cube_volumes(400, rng)
    inputs = k.Input((SIDE, SIDE, SIDE, 1))
    x = k.layers.Conv3D(8, 3, padding="same", activation="relu", name="conv1")(inputs)
    x = k.layers.MaxPooling3D(2, name="pool")(x)
    x = k.layers.Conv3D(8, 3, padding="same", activation="relu", name="conv2")(x)
    x = k.layers.GlobalMaxPooling3D(name="gap")(x)
    model = k.Model(inputs, k.layers.Dense(2, activation="softmax", name="predictions")(x), name="cube_finder")
    model.compile(optimizer=k.optimizers.Adam(5e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(volumes, labels, epochs=10, batch_size=16, verbose=0)
    test, test_labels, centres = cube_volumes(40, rng)
    assert model.evaluate(test, test_labels, verbose=0)[1] > 0.9, "the 3-D model did not learn"
    positive = test_labels == 1
    return model, test[positive], centres[positive]


def test_a_volume_model_is_explained_in_3d(cube_finder):
    tf = pytest.importorskip("tensorflow")
    model, volumes, centres = cube_finder
    explainer = Explainer(model)
    assert explainer.volumetric and explainer.layer_name == "conv2" and explainer.map_size == (8, 8, 8)
    result = explainer.explain_batch(volumes, 1)
    assert result.cams.shape == (len(volumes), 8, 8, 8)
    # independently: a probe of the caller's model, the logit by hand, Grad-CAM over all three axes
    head = model.get_layer("predictions")
    probe = keras().Model(model.inputs, [model.get_layer("conv2").output, head.input])
    kernel, bias = head.get_weights()
    with tf.GradientTape() as tape:
        activations, features = probe(tf.constant(volumes), training=False)
        score = tf.reduce_sum((tf.matmul(features, kernel) + bias)[:, 1])
    gradients = tape.gradient(score, activations).numpy()
    expected = np.maximum(np.einsum("bdhwk,bk->bdhw", activations.numpy(), gradients.mean(axis=(1, 2, 3))), 0)
    np.testing.assert_allclose(result.cams, expected, rtol=1e-4, atol=1e-5 * expected.max())


def test_the_3d_heatmap_peaks_on_the_cube(cube_finder):
    from gradcam.explainers.heatmap import heatmap_at

    model, volumes, centres = cube_finder
    result = Explainer(model).explain_batch(volumes, 1)
    hits = 0
    for cam, centre in zip(result.cams, centres):
        heatmap, _ = heatmap_at(cam, (SIDE, SIDE, SIDE))  # upsampled in 3-D, as for photos
        assert heatmap.shape == (SIDE, SIDE, SIDE)
        peak = np.array(np.unravel_index(np.argmax(heatmap), heatmap.shape))
        hits += bool(np.all(np.abs(peak - centre) <= CUBE // 2 + 2))
    assert hits >= 0.8 * len(volumes), f"the peak lies on the cube for {hits} of {len(volumes)} volumes"


def test_3d_upsampling_is_zoom_per_axis():
    from gradcam.explainers.heatmap import upsample

    cube = np.zeros((2, 2, 2), np.float32)
    cube[1, 1, 1] = 1.0
    big = upsample(cube, (4, 6, 8))
    assert big.shape == (4, 6, 8)
    # a hot cell's value sits at its centre, (i + 1/2) N / n, on every axis
    assert big[3, 5, 7] == 1.0 and big[0, 0, 0] == 0.0
    np.testing.assert_allclose(big[:, 5, 7], upsample(np.array([[0.0], [1.0]], np.float32), (4, 1))[:, 0])


def test_what_volumes_refuse(cube_finder):
    model, _, _ = cube_finder
    for options in ({"method": "scorecam"}, {"method": "guided-gradcam"}, {"aug_smooth": True}):
        with pytest.raises(UsageError, match="volumetric models are explained by the gradient methods"):
            Explainer(model, **options)


def test_explain_takes_volumes_from_arrays_and_npy_files_and_draws_them(cube_finder, tmp_path):
    import gradcam

    model, volumes, centres = cube_finder
    path = tmp_path / "v.npy"
    big = np.repeat(volumes[0], 2, axis=0)[..., 0]  # (32, 16, 16): resampled to the model's 16^3 in 3-D
    np.save(path, big)
    before = big.copy()
    result = gradcam.explain(model, path)
    assert result.heatmap.shape == (32, 16, 16) and result.class_index == 1
    np.testing.assert_array_equal(big, before)
    pair = gradcam.explain(model, [volumes[0], volumes[1]], class_index=1)
    assert len(pair) == 2 and pair[0].heatmap.shape == (16, 16, 16)
    picture = np.asarray(pair[0].overlay())
    assert picture.shape == (16, 8 * 16 + 7 * 2, 3)  # eight axial slices side by side
    figure = pair[0].figure()
    assert figure._repr_png_().startswith(b"\x89PNG")
    with pytest.raises(gradcam.ImageError, match="a volume must be"):
        gradcam.explain(model, np.zeros((4, 4)))


def lps_affine() -> np.ndarray:
    """A NIfTI affine of 1.5 mm voxels whose axes run to the patient's left, back and top (L, P, S),
    shifted: not the identity, so that keeping it is tested."""
    return np.array([[-1.5, 0, 0, 90.0], [0, -1.5, 0, 120.0], [0, 0, 1.5, -60.0], [0, 0, 0, 1]])


def test_cli_explains_a_folder_of_npy_and_nifti_volumes(cube_finder, tmp_path, capsys):
    nibabel = pytest.importorskip("nibabel")
    from PIL import Image

    from gradcam.cli import main
    from gradcam.outputs.manifest import input_records, read_records

    model, volumes, centres = cube_finder
    model_path = tmp_path / "cube.keras"
    model.save(model_path)
    folder = tmp_path / "scans"
    folder.mkdir()
    np.save(folder / "a.npy", volumes[0][..., 0])
    nibabel.save(nibabel.Nifti1Image(volumes[1][..., 0], lps_affine()), folder / "b.nii.gz")
    Image.new("RGB", (8, 8)).save(folder / "photo.png")  # not a volume: not read for a 3-D model
    out = tmp_path / "out"
    assert main([str(folder), "--model", str(model_path), "-o", str(out), "--class-index", "1"]) == 0
    text = capsys.readouterr().out
    assert "2 volume(s)" in text and "2 explained" in text
    for name, volume, centre in (("a.npy", volumes[0], centres[0]), ("b.nii.gz", volumes[1], centres[1])):
        heatmap = np.load(out / f"{name}.npy")
        assert heatmap.shape == (SIDE, SIDE, SIDE) and heatmap.dtype == np.float32
        # the same map as the Python API on the same array
        np.testing.assert_allclose(heatmap, gradcam_heatmap(model, volume), atol=1e-6)
        peak = np.array(np.unravel_index(np.argmax(heatmap), heatmap.shape))
        assert np.all(np.abs(peak - centre) <= CUBE // 2 + 2), (name, peak, centre)
        montage_png = np.asarray(Image.open(out / f"{name}.png"))
        assert montage_png.shape[0] == SIDE and montage_png.shape[1] == 8 * SIDE + 7 * 2
        assert Image.open(out / f"{name}.planes.png").size[0] > 600
    written = nibabel.load(out / "b.nii.gz.nii.gz")
    np.testing.assert_array_equal(written.affine, lps_affine())
    np.testing.assert_allclose(written.get_fdata(), np.load(out / "b.nii.gz.npy"), atol=1e-7)
    assert not (out / "a.npy.nii.gz").exists()  # a .npy volume has no affine
    records = {r["input"].rsplit("/", 1)[-1]: r for r in input_records(read_records(out / "manifest.jsonl"))}
    assert set(records) == {"a.npy", "b.nii.gz"}
    assert records["b.nii.gz"]["nifti"] == "b.nii.gz.nii.gz" and records["a.npy"]["planes"] == "a.npy.planes.png"
    assert set(records["b.nii.gz"]["files"]) == {"b.nii.gz.png", "b.nii.gz.npy", "b.nii.gz.planes.png",
                                                   "b.nii.gz.nii.gz"}
    # a rerun skips both; a replaced NIfTI output is made again
    assert main([str(folder), "--model", str(model_path), "-o", str(out), "--class-index", "1"]) == 0
    assert "every output is up to date" in capsys.readouterr().out
    (out / "b.nii.gz.nii.gz").write_bytes(b"not the map")
    assert main([str(folder), "--model", str(model_path), "-o", str(out), "--class-index", "1"]) == 0
    assert "1 explained (1 redone" in capsys.readouterr().out
    np.testing.assert_array_equal(nibabel.load(out / "b.nii.gz.nii.gz").affine, lps_affine())


def gradcam_heatmap(model, volume) -> np.ndarray:
    import gradcam

    return gradcam.explain(model, volume, class_index=1).heatmap


def test_cli_volume_errors_are_one_line(cube_finder, tmp_path, capsys):
    from gradcam.cli import main

    model, volumes, _ = cube_finder
    model_path = tmp_path / "cube.keras"
    model.save(model_path)
    np.save(tmp_path / "flat.npy", np.zeros((16, 16)))  # 2-D: no volume
    np.save(tmp_path / "nan.npy", np.full((16, 16, 16), np.nan, np.float32))
    (tmp_path / "junk.nii").write_bytes(b"not nifti")
    np.save(tmp_path / "complex.npy", np.zeros((16, 16, 16), np.complex64))
    np.save(tmp_path / "ok.npy", volumes[0][..., 0])
    inputs = [str(tmp_path / name) for name in ("flat.npy", "nan.npy", "junk.nii", "complex.npy", "ok.npy")]
    assert main([*inputs, "--model", str(model_path), "-o", str(tmp_path / "out")]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert any("flat.npy: error: a volume must be (D, H, W) or (D, H, W, 1)" in line for line in lines)
    assert any("nan.npy: error: the volume has NaN or infinite values" in line for line in lines)
    assert any("junk.nii: error: not a readable NIfTI file" in line for line in lines)
    assert any("complex.npy: error: a volume must hold real numbers; got dtype complex64" in line for line in lines)
    assert any("ok.npy: class (1), p=" in line and line.endswith("-> ok.npy.png") for line in lines), lines
    for flags, message in ((["--evaluate"], "--evaluate applies to 2-D images"),
                           (["--max-size", "8"], "--max-size applies to 2-D images")):
        assert main([inputs[-1], "--model", str(model_path), "-o", str(tmp_path / "o2"), *flags]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1
    assert main(["sanity", inputs[-1], "--model", str(model_path), "-o", str(tmp_path / "o3")]) == 2
    assert "not volumetric (3-D) ones" in capsys.readouterr().err
    assert main([inputs[-1], "--model", str(model_path), "-o", str(tmp_path / "o4"), "--max-pixels", "100"]) == 1
    assert "volume is too large: 16x16x16 voxels" in capsys.readouterr().out


def test_cli_finds_the_volumes_when_the_model_file_does_not_tell_its_input_rank(cube_finder, tmp_path, capsys,
                                                                               monkeypatch):
    from PIL import Image

    import gradcam.models.loading
    from gradcam.cli import main

    model, volumes, _ = cube_finder
    model_path = tmp_path / "cube.keras"
    model.save(model_path)
    folder = tmp_path / "mixed"
    folder.mkdir()
    for i in range(2):
        np.save(folder / f"v{i}.npy", volumes[i][..., 0])
    Image.new("RGB", (8, 8)).save(folder / "photo.png")
    monkeypatch.setattr(gradcam.models.loading, "peek_input_rank", lambda path: None)  # as for an unknown file layout
    assert main([str(folder), "--model", str(model_path), "-o", str(tmp_path / "out"), "--shard", "0/1"]) == 0
    out = capsys.readouterr().out
    assert "gradcam: shard 0/1: 2 of 2 volume(s), model" in out  # counted after the folder is read again
    assert "2 explained, 0 skipped, 0 failed" in out


def test_the_readmes_volume_demo_runs(tmp_path, monkeypatch, capsys):
    """examples/volume_demo.py, then the command docs/medical.md gives, on what it wrote."""
    import runpy
    from pathlib import Path

    from gradcam.cli import main

    monkeypatch.chdir(tmp_path)
    runpy.run_path(str(Path(__file__).resolve().parents[2] / "examples" / "volume_demo.py"))
    assert main(["volumes/", "--model", "demo_3d.keras", "-o", "gradcam_output/volumes"]) == 0
    heatmap = np.load(tmp_path / "gradcam_output" / "volumes" / "ball.npy.npy")
    assert heatmap.shape == (48, 64, 64) and np.isfinite(heatmap).all()
    assert (tmp_path / "gradcam_output" / "volumes" / "ball.npy.planes.png").is_file()
