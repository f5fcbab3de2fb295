"""The compiled bilinear resize gives Pillow's pixels byte for byte: its coefficients against a plain loop written
from Pillow's C and against a case worked by hand, the kernel against Pillow itself over many shapes, and the
load-time check that keeps a kernel which disagrees from ever being used."""
from __future__ import annotations

import math
import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from gradcam.inputs import resize_fast
from gradcam.inputs.resample_fast import LazyKernel

SAMPLES = os.path.join(os.path.dirname(__file__), "..", "..", "sample_images")


def pillow_resize(photo: np.ndarray, height: int, width: int) -> np.ndarray:
    return np.asarray(Image.fromarray(photo).resize((width, height), Image.BILINEAR))


@pytest.fixture(scope="module")
def kernel():
    resize_fast.KERNEL.compile()
    assert resize_fast.KERNEL.compiled is not None, resize_fast.KERNEL.error
    return resize_fast.KERNEL.compiled


def loop_coefficients(in_size: int, out_size: int) -> tuple[list[tuple[int, int]], list[list[int]]]:
    """Pillow's precompute_coeffs + normalize_coeffs_8bpc for the bilinear filter, one value at a time."""
    scale = float(in_size) / out_size
    filterscale = max(scale, 1.0)
    support = filterscale
    inverse = 1.0 / filterscale
    bounds, weights = [], []
    for xx in range(out_size):
        centre = 0.0 + (xx + 0.5) * scale
        xmin = max(int(centre - support + 0.5), 0)
        xmax = min(int(centre + support + 0.5), in_size) - xmin
        row, total = [], 0.0
        for x in range(xmax):
            distance = abs((x + xmin - centre + 0.5) * inverse)
            w = 1.0 - distance if distance < 1.0 else 0.0
            row.append(w)
            total += w
        if total != 0.0:
            row = [w / total for w in row]
        bounds.append((xmin, xmax))
        weights.append([int(-0.5 + w * (1 << 22)) if w < 0 else int(0.5 + w * (1 << 22)) for w in row])
    return bounds, weights


def test_coefficients_by_hand():
    # 4 -> 2: scale 2, support 2, five taps at most; output 0 is centred on 1.0 and sees pixels 0, 1, 2 with
    # filter values 0.75, 0.75, 0.25 (distances 0.25, 0.25, 0.75 once divided by the scale), normalised by 1.75
    bounds, weights = resize_fast.coefficients(4, 2)
    assert weights.shape == (2, 5)
    assert bounds[0].tolist() == [0, 3]
    assert weights[0].tolist() == [int(0.5 + 3 / 7 * 2**22), int(0.5 + 3 / 7 * 2**22), int(0.5 + 1 / 7 * 2**22), 0, 0]
    assert weights[0, :3].tolist() == [1797559, 1797559, 599186]
    # output 1 is centred on 3.0: pixels 1, 2, 3 (the window is cut at the edge)
    assert bounds[1].tolist() == [1, 3]
    assert weights[1, :3].tolist() == [599186, 1797559, 1797559]


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 5000), st.integers(1, 800))
def test_coefficients_equal_the_loop(in_size, out_size):
    bounds, weights = resize_fast.coefficients(in_size, out_size)
    loop_bounds, loop_weights = loop_coefficients(in_size, out_size)
    assert weights.shape[1] == int(math.ceil(max(in_size / out_size, 1.0))) * 2 + 1
    assert [tuple(b) for b in bounds.tolist()] == loop_bounds
    for row, taps, expected in zip(weights.tolist(), bounds[:, 1].tolist(), loop_weights):
        assert row[:taps] == expected and not any(row[taps:])


@pytest.mark.parametrize("sizes, first", [(((480, 640), (224, 224)), True), (((640, 480), (224, 224)), True),
                                          (((640, 90), (224, 224)), False), (((224, 300), (50, 250)), False), (((224, 300), (100, 224)), True),
                                          (((100, 100), (300, 300)), True)])
def test_pass_order(sizes, first):
    # vertical first only when the height loses more than twice as many pixels as the width
    assert resize_fast.horizontal_first(*sizes) is first


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 400), st.integers(1, 400), st.integers(1, 300), st.integers(1, 300), st.integers(0, 2**32 - 1))
def test_kernel_gives_pillows_pixels(kernel, in_h, in_w, out_h, out_w, seed):
    photo = np.random.default_rng(seed).integers(0, 256, (in_h, in_w, 3), dtype=np.uint8)
    resized = resize_fast.resize(photo, (out_h, out_w))
    np.testing.assert_array_equal(resized, pillow_resize(photo, out_h, out_w))


@pytest.mark.parametrize("name", ["cat.jpg", "astronaut.jpg", "rocket.jpg"])
@pytest.mark.parametrize("size", [(224, 224), (299, 299), (97, 1000), (13, 7)])
def test_sample_photos(kernel, name, size):
    with Image.open(os.path.join(SAMPLES, name)) as image:
        photo = np.asarray(image.convert("RGB"))
    np.testing.assert_array_equal(resize_fast.resize(photo, size), pillow_resize(photo, *size))


def test_large_photo_and_extremes(kernel):
    rng = np.random.default_rng(3)
    photo = rng.integers(0, 256, (1500, 2000, 3), dtype=np.uint8)
    for size in [(224, 224), (1, 1), (1500, 1), (2, 2000)]:
        np.testing.assert_array_equal(resize_fast.resize(photo, size), pillow_resize(photo, *size))
    # saturated pixels: every sum at its largest (255 x the sum of the rounded weights)
    white = np.full((333, 517, 3), 255, np.uint8)
    np.testing.assert_array_equal(resize_fast.resize(white, (224, 224)), pillow_resize(white, 224, 224))


def test_input_untouched_and_same_size_copied(kernel):
    photo = np.random.default_rng(4).integers(0, 256, (50, 60, 3), dtype=np.uint8)
    before = photo.copy()
    same = resize_fast.resize(photo, (50, 60))
    resize_fast.resize(photo, (20, 20))
    np.testing.assert_array_equal(photo, before)
    np.testing.assert_array_equal(same, photo)
    assert not np.shares_memory(same, photo)
    # a non-contiguous view is read as its values
    view = photo[::2, ::3]
    np.testing.assert_array_equal(resize_fast.resize(view, (9, 9)), pillow_resize(np.ascontiguousarray(view), 9, 9))


def test_wrong_arrays_refused(kernel):
    with pytest.raises(ValueError):
        kernel(np.zeros((4, 4, 3), np.float32), np.zeros((2, 2, 3), np.uint8))
    with pytest.raises(ValueError):
        kernel(np.zeros((4, 4, 3), np.uint8), np.zeros((2, 2, 4), np.uint8))


def test_a_kernel_that_disagrees_with_pillow_is_never_used(kernel, monkeypatch):
    # a kernel off by one grey level in one value: the load-time check refuses it, and resize() gives None (the
    # caller then takes Pillow's path)
    real_caller = resize_fast._caller

    def off_by_one_caller(function):
        compiled = real_caller(function)

        def wrong(photo, out):
            compiled(photo, out)
            out[-1, -1, 2] ^= 1

        return wrong

    assert resize_fast.agrees_with_pillow(kernel)
    monkeypatch.setattr(resize_fast, "_caller", off_by_one_caller)
    broken = LazyKernel(resize_fast._kernel, resize_fast.SIGNATURE, caller=resize_fast._checked_caller)
    broken.compile()  # the cached machine code loads; the check against Pillow refuses it
    assert broken.compiled is None and "Pillow" in broken.error
    monkeypatch.setattr(resize_fast.KERNEL, "compiled", None)
    assert resize_fast.resize(np.zeros((4, 4, 3), np.uint8), (2, 2)) is None


def test_the_renders_loader_loads_it_whatever_was_imported_first():
    # a process that loads the render's kernel before anything imported resize_fast still gets it (the loader
    # runs once per process: a kernel registered after it would never load)
    import subprocess
    import sys

    code = ("from gradcam.outputs import fused\nassert fused.prepare()\n"
            "from gradcam.inputs import resize_fast\nprint(resize_fast.KERNEL.compiled is not None)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "True"


def test_what_is_not_a_uint8_photo_is_left_to_pillow(kernel):
    assert resize_fast.resize(np.zeros((4, 4, 3), np.float32), (2, 2)) is None
    assert resize_fast.resize(np.zeros((4, 4), np.uint8), (2, 2)) is None
    assert resize_fast.resize(np.zeros((4, 4, 4), np.uint8), (2, 2)) is None
    assert resize_fast.resize(np.zeros((0, 4, 3), np.uint8), (2, 2)) is None
    assert resize_fast.resize(np.zeros((4, 4, 3), np.uint8), (0, 2)) is None
