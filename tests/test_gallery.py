"""Side-by-side panels and the HTML gallery, checked in a real headless browser."""
from __future__ import annotations

import json
import re
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

from conftest import write_photo
from gradcam.cli import main
from gradcam.gallery import render_gallery
from gradcam.manifest import latest_records
from gradcam.render import panel_figure

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def test_panel_has_both_images_side_by_side():
    photo = np.zeros((60, 80, 3), np.uint8)
    photo[:, :, 0] = 255  # red photo
    overlay = np.zeros((60, 80, 3), np.uint8)
    overlay[:, :, 2] = 255  # blue overlay
    figure = panel_figure(photo, overlay, "tabby (53.0%) · layer block5_conv4 · gradcam")
    assert figure.dtype == np.uint8 and figure.shape[1] >= 900
    middle = figure[figure.shape[0] // 2]
    left, right = middle[: len(middle) // 2], middle[len(middle) // 2 :]
    red = (left[:, 0] > 200) & (left[:, 2] < 60)
    blue = (right[:, 2] > 200) & (right[:, 0] < 60)
    assert red.sum() > 100 and blue.sum() > 100 and not ((right[:, 0] > 200) & (right[:, 2] < 60)).any()


def test_cli_panel(tmp_path, tiny_model_file):
    photo = write_photo(tmp_path / "p.png", (80, 60))
    out = tmp_path / "o"
    assert main(["--model", str(tiny_model_file), str(photo), "-o", str(out), "--panel"]) == 0
    width, height = Image.open(out / "p.png.png").size
    assert width > 2 * 80 and width > height  # a figure, not the bare 80x60 overlay


def test_latest_records_keep_results_across_reruns(tmp_path):
    lines = [
        {"input": "a.jpg", "status": "ok", "class_name": "cat", "class_index": 1, "probability": 0.9,
         "overlay": "a.jpg.png", "rank": 1, "layer": "l"},
        {"input": "b.jpg", "status": "error", "error": "not a readable image", "rank": None},
        {"input": "a.jpg", "status": "skipped", "class_name": None, "overlay": "a.jpg.png", "rank": 1},
    ]
    path = tmp_path / "manifest.jsonl"
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n{cut sho", encoding="utf-8")
    records = latest_records(path)
    assert {r["input"]: r["status"] for r in records} == {"a.jpg": "ok", "b.jpg": "error"}
    page = render_gallery(records)
    assert "cat (90.0%)" in page and "not a readable image" in page and 'href="a.jpg.png"' in page


def test_class_zero_is_shown_and_filterable():
    records = [{"input": "z.jpg", "status": "ok", "class_name": None, "class_index": 0, "probability": 0.5,
                "overlay": "z.jpg.png", "rank": 1, "layer": "l"}]
    page = render_gallery(records)
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
