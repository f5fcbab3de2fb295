"""An output belongs to the exact input, model and settings that made it: files are known by their
content (a SHA-256 digest), never by name, size and modification time alone."""
from __future__ import annotations

import hashlib
import os
import shutil
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
from conftest import build_tiny_model
from PIL import Image

import gradcam
from gradcam.inputs import identity
from gradcam.cli import main
from gradcam.inputs.identity import DigestCache, sha256_of
from gradcam.outputs.manifest import read_records


def input_records(out: Path) -> list[dict]:
    return [record for record in read_records(out) if "input" in record]


def bmp(path: Path, seed: int, size=(40, 30)) -> Path:
    """An uncompressed BMP: its byte size depends on its dimensions alone, so two of them collide in size."""
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path)
    return path


def replace_keeping_size_and_mtime(target: Path, source: Path) -> None:
    """Copy ``source`` over ``target`` and set the old modification time back (as ``touch -r`` would)."""
    before = target.stat()
    assert source.stat().st_size == before.st_size
    shutil.copyfile(source, target)
    os.utime(target, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = target.stat()
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)


def result_of(record: dict) -> tuple:
    return record["class_index"], record["probability"]


def fresh_run(tmp_path: Path, name: str, *args) -> list[dict]:
    out = tmp_path / name
    assert main([*args, "-o", str(out)]) == 0
    return input_records(out)


def test_a_photo_replaced_under_the_same_name_with_its_size_and_mtime_is_explained_again(
        tmp_path, tiny_model_file, capsys):
    photo = bmp(tmp_path / "in" / "a.bmp", seed=0)
    other = bmp(tmp_path / "other.bmp", seed=1)
    out = tmp_path / "out"
    args = ["--model", str(tiny_model_file), str(photo), "--save-npy", "-o", str(out)]
    assert main(args) == 0
    replace_keeping_size_and_mtime(photo, other)
    capsys.readouterr()
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "1 explained (1 redone" in printed and "input changed" in printed, printed
    expected = fresh_run(tmp_path, "fresh", "--model", str(tiny_model_file), str(other), "--save-npy")[-1]
    newest = input_records(out)[-1]
    assert newest["status"] == "ok"
    assert result_of(newest) == result_of(expected)
    np.testing.assert_array_equal(np.load(out / "a.bmp.npy"), np.load(tmp_path / "fresh" / "other.bmp.npy"))
    assert newest["source"]["sha256"] == hashlib.sha256(other.read_bytes()).hexdigest()


def test_a_second_folder_with_the_same_names_is_not_credited_with_the_first_folders_maps(
        tmp_path, tiny_model_file, capsys):
    first = [bmp(tmp_path / "first" / f"{name}.bmp", seed=i) for i, name in enumerate("abc")]
    second = [bmp(tmp_path / "second" / f"{name}.bmp", seed=10 + i) for i, name in enumerate("abc")]
    out = tmp_path / "out"
    assert main(["--model", str(tiny_model_file), str(tmp_path / "first"), "-o", str(out)]) == 0
    capsys.readouterr()
    assert main(["--model", str(tiny_model_file), str(tmp_path / "second"), "-o", str(out)]) == 0
    assert "3 explained (3 redone" in capsys.readouterr().out
    newest = {Path(record["input"]).name: record for record in input_records(out)[-3:]}
    assert {Path(record["input"]).parent.name for record in newest.values()} == {"second"}
    assert all(record["status"] == "ok" for record in newest.values())
    expected = fresh_run(tmp_path, "fresh", "--model", str(tiny_model_file), str(tmp_path / "second"))
    for record in expected:
        assert result_of(newest[Path(record["input"]).name]) == result_of(record)
    assert first and second


def test_a_model_copied_over_with_its_size_and_mtime_restored_redoes_the_maps(tmp_path, capsys):
    models = tmp_path / "models"
    models.mkdir()
    build_tiny_model(seed=1).save(models / "one.h5")
    build_tiny_model(seed=2).save(models / "two.h5")
    model = tmp_path / "model.h5"
    shutil.copyfile(models / "one.h5", model)
    photos = [bmp(tmp_path / "in" / f"{i}.bmp", seed=i) for i in range(2)]
    out = tmp_path / "out"
    args = ["--model", str(model), str(tmp_path / "in"), "--save-npy", "-o", str(out)]
    assert main(args) == 0
    replace_keeping_size_and_mtime(model, models / "two.h5")
    capsys.readouterr()
    assert main(args) == 0
    assert "2 explained (2 redone" in capsys.readouterr().out
    fresh_run(tmp_path, "fresh", "--model", str(models / "two.h5"), str(tmp_path / "in"), "--save-npy")
    for photo in photos:
        np.testing.assert_array_equal(np.load(out / f"{photo.name}.npy"),
                                      np.load(tmp_path / "fresh" / f"{photo.name}.npy"))


def test_the_settings_name_the_tensorflow_and_keras_versions_and_files_by_content(tmp_path, tiny_model_file):
    photo = bmp(tmp_path / "a.bmp", seed=0)
    out = tmp_path / "out"
    assert main(["--model", str(tiny_model_file), str(photo), "-o", str(out)]) == 0
    record = input_records(out)[-1]
    for section in (record["settings"], record["request"]):
        assert section["keras"] == metadata.version("keras")
        assert section["tensorflow"] == metadata.version("tensorflow")
        assert section["model_file"] == "sha256:" + hashlib.sha256(tiny_model_file.read_bytes()).hexdigest()


def test_a_run_without_save_npy_removes_the_earlier_npy_of_that_photo(tmp_path, tiny_model_file):
    photo = bmp(tmp_path / "a.bmp", seed=0)
    out = tmp_path / "out"
    assert main(["--model", str(tiny_model_file), str(photo), "--save-npy", "-o", str(out)]) == 0
    assert (out / "a.bmp.npy").is_file()
    assert main(["--model", str(tiny_model_file), str(photo), "--method", "hirescam", "-o", str(out)]) == 0
    assert not (out / "a.bmp.npy").exists()
    assert (out / "a.bmp.png").is_file()
    assert input_records(out)[-1]["heatmap"] is None


def test_a_rerun_hashes_no_file_that_is_unchanged_since_its_record(tmp_path, tiny_model_file, capsys, monkeypatch):
    """The digests recorded in the manifests are reused while a file's inode, size, mtime and ctime are as
    recorded: a rerun of an up-to-date folder reads no input's or model's bytes."""
    for i in range(3):
        bmp(tmp_path / "in" / f"{i}.bmp", seed=i)
    out = tmp_path / "out"
    args = ["--model", str(tiny_model_file), str(tmp_path / "in"), "-o", str(out)]
    assert main(args) == 0
    monkeypatch.setattr(identity, "DIGESTS", DigestCache())  # a new process's empty cache
    for module in ("outputs.manifest", "runs.resume", "runs.decode", "api"):
        monkeypatch.setattr(f"gradcam.{module}.DIGESTS", identity.DIGESTS)
    hashed = []
    monkeypatch.setattr(identity, "sha256_of", lambda path: hashed.append(path) or sha256_of(path))
    capsys.readouterr()
    assert main(args) == 0
    assert "0 explained, 3 skipped" in capsys.readouterr().out
    assert hashed == []


def test_the_digest_cache_rehashes_a_file_whose_stat_changed(tmp_path, monkeypatch):
    path = tmp_path / "f.bin"
    path.write_bytes(b"one")
    calls = []
    monkeypatch.setattr(identity, "sha256_of", lambda p: calls.append(p) or sha256_of(p))
    cache = DigestCache()
    first = cache.identity(path)
    assert first["sha256"] == hashlib.sha256(b"one").hexdigest() and len(calls) == 1
    assert cache.identity(path) == first and len(calls) == 1  # cached
    stat = path.stat()
    path.write_bytes(b"two")
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # same size and mtime; the ctime moved on
    assert cache.identity(path)["sha256"] == hashlib.sha256(b"two").hexdigest() and len(calls) == 2
    learned = DigestCache()
    learned.learn([first, {"sha256": "x" * 64, "size": "3"}, "junk", None])  # malformed entries ignored
    assert learned.digest(path) == "sha256:" + hashlib.sha256(b"two").hexdigest()  # the stale entry is not used
    assert cache.identity(tmp_path / "missing") is None and cache.digest(tmp_path) is None


def test_the_api_cache_knows_a_model_file_by_its_content(tmp_path):
    """A model retrained and saved over the same path: gradcam.explain(path) gives the new model's map."""
    path = tmp_path / "model.keras"
    photo = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    build_tiny_model(seed=1).save(path)
    first = gradcam.explain(str(path), photo, preprocess="none")
    retrained = build_tiny_model(seed=2)
    retrained.save(path)
    second = gradcam.explain(str(path), photo, preprocess="none")
    expected = gradcam.explain(retrained, photo, preprocess="none")
    np.testing.assert_allclose(second.heatmap, expected.heatmap, atol=1e-6)
    assert second.probability == pytest.approx(expected.probability, abs=1e-6)
    assert not np.allclose(first.heatmap, second.heatmap, atol=1e-3)
