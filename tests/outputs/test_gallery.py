"""The HTML gallery: captions, filters, failures, and every image loading in a real browser."""
from __future__ import annotations

import re
import shutil
import subprocess

import pytest
from conftest import (
    write_photo,
)

from gradcam.cli import main
from gradcam.outputs.gallery import render_gallery

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def test_class_zero_is_shown_and_filterable():
    records = [{"input": "z.jpg", "status": "ok", "class_name": None, "class_index": 0, "probability": 0.5,
                "overlay": "z.jpg.png", "rank": 1, "layer": "l", "method": "scorecam"}]
    page = render_gallery(records)
    assert "z.jpg · 0 (50.0%) · l · scorecam" in page
    assert 'data-class="0"' in page and '<option value="0">0</option>' in page and "z.jpg · 0 (50.0%)" in page


def find_browser():
    for name in BROWSERS:
        if shutil.which(name):
            return shutil.which(name)
    return None


def test_gallery_loads_every_image_in_a_browser(tmp_path, tiny_model_file):
    browser = find_browser()
    if browser is None:
        pytest.skip("no headless browser installed (apt-get install chromium) to render the gallery")
    root, out = tmp_path / "my photos", tmp_path / "out"
    for name in ("a b.jpg", "ünï.png", "sub/c.webp"):
        write_photo(root / name)
    (root / "broken.jpg").write_bytes(b"nope")
    assert main(["--model", str(tiny_model_file), str(root), "-r", "-o", str(out), "--top-k", "2"]) == 1
    page = out / "index.html"
    assert page.is_file()
    dom = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=10000",
                          "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120).stdout
    states = re.findall(r'<img [^>]*data-state="(\w+)"', dom)
    images = re.findall(r"<img ", dom)
    assert len(images) == 6, dom[:2000]
    assert states == ["loaded"] * 6, states
    assert "broken.jpg" in dom and "not a readable image" in dom
