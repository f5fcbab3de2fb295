"""Where outputs go: paths inside the output folder, never outside it."""
from __future__ import annotations

import pytest

from gradcam.errors import OutputError
from gradcam.inputs.discovery import InputImage
from gradcam.outputs.paths import output_paths, prepare_output_dir, relative_path


def test_output_path_cannot_leave_the_folder(tmp_path):
    with pytest.raises(OutputError, match="leave the output folder"):
        output_paths(InputImage(tmp_path / "x.jpg", "../../evil.jpg"), tmp_path / "out")
    overlay, npy = output_paths(InputImage(tmp_path / "x.jpg", "sub/x.jpg"), tmp_path / "out", 2, 3)
    assert overlay.name == "x.jpg.top2.png" and npy.name == "x.jpg.top2.npy" and overlay.parent.name == "sub"


def test_a_linked_folder_inside_the_output_cannot_lead_out(tmp_path):
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    out.mkdir()
    elsewhere.mkdir()
    (out / "sub").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(OutputError, match="leave the output folder"):
        output_paths(InputImage(tmp_path / "x.jpg", "sub/x.jpg"), out)
    overlay, _ = output_paths(InputImage(tmp_path / "x.jpg", "other/x.jpg"), out)
    assert overlay == out.resolve() / "other" / "x.jpg.png"


def test_relative_path_as_manifests_record_it(tmp_path):
    assert relative_path(tmp_path, tmp_path / "sub" / "c.png") == "sub/c.png"
    assert relative_path(tmp_path, None) is None


def test_output_folder_that_cannot_be_made(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="cannot write to output folder"):
        prepare_output_dir(tmp_path / "file" / "out")


def test_the_write_probe_has_a_unique_name(tmp_path, monkeypatch):
    """Two machines on one shared folder can share a pid: a probe named by the pid could collide (here a
    folder of that name stands in the way); mkstemp's name cannot."""
    import os

    out = tmp_path / "out"
    (out / f".gradcam-write-test-{os.getpid()}").mkdir(parents=True)
    prepare_output_dir(out)
    assert sorted(p.name for p in out.iterdir()) == [f".gradcam-write-test-{os.getpid()}"]


def test_outputs_and_manifest_lines_are_fsynced(tmp_path, monkeypatch):
    import os

    from gradcam.outputs.manifest import ManifestWriter
    from gradcam.outputs.render import write_atomic

    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd)))
    write_atomic(tmp_path / "a.png", b"data")
    assert len(synced) == 1  # before the rename
    writer = ManifestWriter(tmp_path)
    writer.write({"input": "a", "status": "ok"})
    writer.close()
    assert len(synced) == 2  # after the line


def test_a_relative_output_folder_follows_the_working_directory(tmp_path, monkeypatch):
    item = InputImage(tmp_path / "x.jpg", "x.jpg")
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        monkeypatch.chdir(tmp_path / folder)
        overlay, _ = output_paths(item, "out")
        assert overlay == (tmp_path / folder / "out" / "x.jpg.png").resolve()


@pytest.mark.parametrize("root, path", [
    ("/out", "/out/a.png"), ("/out", "/out/sub/deeper/a b.jpg.png"), ("/out", "/out/../x.png"),
    ("/out", "/output/a.png"), ("/out", "/out"), ("/out", "/elsewhere/a.png"), ("/", "/a.png"),
    ("/", "//a.png"), ("//out", "//out/a.png"), ("/out", "/out/a\\b.png"), ("/out/", "/out//x/./y.png"),
])
def test_relative_path_is_pathlibs_relative_to(root, path):
    """The string fast path for normalised paths says what Path.relative_to says, and fails where it fails."""
    from pathlib import Path

    try:
        expected = Path(path).relative_to(Path(root)).as_posix()
    except ValueError:
        with pytest.raises(ValueError):
            relative_path(Path(root), Path(path))
        return
    assert relative_path(Path(root), Path(path)) == expected
    assert relative_path(root, path) == expected  # strings: pathlib's own way


def test_output_paths_asked_again_are_the_same_and_still_refuse_to_leave(tmp_path):
    item = InputImage(tmp_path / "x.jpg", "sub/x.jpg")
    first = output_paths(item, tmp_path / "out", 2, 3)
    assert output_paths(item, tmp_path / "out", 2, 3) == first
    assert first == ((tmp_path / "out").resolve() / "sub" / "x.jpg.top2.png",
                     (tmp_path / "out").resolve() / "sub" / "x.jpg.top2.npy")
    for _ in range(2):
        with pytest.raises(OutputError, match="leave the output folder"):
            output_paths(InputImage(tmp_path / "y.jpg", "../y.jpg"), tmp_path / "out")
