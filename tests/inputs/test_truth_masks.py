"""Truth masks: boxes on the pixel grid by hand and against a loop over pixel centres, boxes and masks
landing alike on a resized photo, and mask files (found by stem, read EXIF-upright as photos are, every
kind of image, hostile files as one-line UsageErrors)."""
from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from gradcam.errors import UsageError
from gradcam.inputs.ground_truth import Box, read_mask, resize_mask, scale_boxes, truth_mask_from_boxes
from gradcam.inputs.images import load_image
from gradcam.inputs.truth_masks import find_mask


def test_boxes_on_the_grid_by_hand():
    mask = truth_mask_from_boxes([Box(1, 1, 3, 2)], (3, 4))  # columns 1-2 of row 1
    np.testing.assert_array_equal(mask, [[0, 0, 0, 0], [0, 1, 1, 0], [0, 0, 0, 0]])
    # centres 0.5 and 1.5: 0.5 lies in [0.5, 1.5), 1.5 does not
    np.testing.assert_array_equal(truth_mask_from_boxes([Box(0.5, 0.5, 1.5, 1.5)], (2, 2)), [[1, 0], [0, 0]])
    np.testing.assert_array_equal(truth_mask_from_boxes([Box(0.6, 0.6, 1.6, 1.6)], (2, 2)), [[0, 0], [0, 1]])
    np.testing.assert_array_equal(truth_mask_from_boxes([Box(0.6, 0.6, 1.4, 1.4)], (2, 2)), [[0, 0], [0, 0]])
    # a union, and a box reaching past the photo clipped
    mask = truth_mask_from_boxes([Box(0, 0, 1, 1), Box(2, 1, 99, 50)], (3, 4))
    np.testing.assert_array_equal(mask, [[1, 0, 0, 0], [0, 0, 1, 1], [0, 0, 1, 1]])
    assert not truth_mask_from_boxes([Box(10, 10, 12, 12)], (3, 4)).any()  # wholly outside
    assert not truth_mask_from_boxes([], (3, 4)).any()
    assert truth_mask_from_boxes([Box(0, 0, 4, 3)], (3, 4)).all()


def test_boxes_on_a_resized_photo_by_hand():
    boxes = [Box(2, 0, 4, 2, "cat")]  # on a 4 x 6 photo; the photo halved is 2 x 3
    assert scale_boxes(boxes, (4, 6), (2, 3)) == [Box(1, 0, 2, 1, "cat")]
    np.testing.assert_array_equal(truth_mask_from_boxes(boxes, (4, 6), (2, 3)), [[0, 1, 0], [0, 0, 0]])
    np.testing.assert_array_equal(truth_mask_from_boxes(boxes, (4, 6), (4, 6)), truth_mask_from_boxes(boxes, (4, 6)))
    # 3 -> 2 columns: centres 0.5 and 1.5 map to 0.75 and 2.25 in the photo
    np.testing.assert_array_equal(truth_mask_from_boxes([Box(1, 0, 3, 1)], (1, 3), (1, 2)), [[0, 1]])
    np.testing.assert_array_equal(resize_mask(np.array([[True, False, False]]), (1, 2)), [[True, False]])
    np.testing.assert_array_equal(resize_mask(np.array([[False, True, False]]), (1, 2)), [[False, False]])
    np.testing.assert_array_equal(resize_mask(np.array([[True, False]]), (1, 4)), [[True, True, False, False]])


def loop_mask(boxes, size, original_size):
    """Pixel by pixel: is the centre, moved into the photo, inside a box?"""
    (height, width), (original_h, original_w) = size, original_size
    mask = np.zeros(size, bool)
    for r in range(height):
        for c in range(width):
            for box in boxes:
                x0, x1 = box.x0 * width / original_w, box.x1 * width / original_w
                y0, y1 = box.y0 * height / original_h, box.y1 * height / original_h
                mask[r, c] |= x0 <= c + 0.5 < x1 and y0 <= r + 0.5 < y1
    return mask


SIZES = st.tuples(st.integers(1, 17), st.integers(1, 17))
INTEGER_BOXES = st.lists(st.tuples(st.integers(0, 20), st.integers(0, 20), st.integers(1, 12), st.integers(1, 12)),
                         max_size=4)


@settings(max_examples=200, deadline=None)
@given(size=SIZES, original=SIZES, corners=INTEGER_BOXES, shift=st.sampled_from([0.0, 0.25, 0.5, 0.499]))
def test_boxes_match_a_loop_over_pixel_centres(size, original, corners, shift):
    boxes = [Box(x + shift, y + shift, x + w + shift, y + h + shift) for x, y, w, h in corners]
    np.testing.assert_array_equal(truth_mask_from_boxes(boxes, original, size), loop_mask(boxes, size, original))


@settings(max_examples=200, deadline=None)
@given(size=SIZES, original=SIZES, corners=INTEGER_BOXES)
def test_a_mask_of_boxes_resizes_to_the_boxes_on_the_resized_photo(size, original, corners):
    boxes = [Box(x, y, x + w, y + h) for x, y, w, h in corners]
    np.testing.assert_array_equal(resize_mask(truth_mask_from_boxes(boxes, original), size),
                                  truth_mask_from_boxes(boxes, original, size))


# -- mask files ----------------------------------------------------------------------------------------


def save(path, array, mode=None, exif_orientation=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(array) if mode is None else Image.fromarray(array, mode)
    if exif_orientation:
        exif = Image.Exif()
        exif[0x0112] = exif_orientation
        image.save(path, exif=exif)
    else:
        image.save(path)
    return path


def photo(folder, relative, height, width, exif_orientation=None):
    """A photo file of (height, width) stored pixels, and its InputImage-style (path, relative)."""
    path = save(folder / relative, np.full((height, width, 3), 128, np.uint8), exif_orientation=exif_orientation)
    return path, relative


def test_masks_found_by_relative_path_and_stem(tmp_path):
    masks, photos = tmp_path / "masks", tmp_path / "photos"
    object_ = np.zeros((4, 6), np.uint8)
    object_[1, 2:4] = 255
    save(masks / "sub" / "cat.png", object_)
    cat = photo(photos, "sub/cat.jpg", 4, 6)
    mask = read_mask(masks, *cat, (4, 6))
    assert mask.dtype == bool and mask.shape == (4, 6)
    np.testing.assert_array_equal(mask, object_ > 0)
    assert read_mask(masks, cat[0], "sub/cat.jpg-2", (4, 6)) is not None  # an output name's "-2" is not its name
    assert read_mask(masks, *photo(photos, "sub/dog.jpg", 4, 6), (4, 6)) is None  # no mask: no ground truth
    assert read_mask(masks, *photo(photos, "elsewhere/cat.jpg", 4, 6), (4, 6)) is None
    assert read_mask(masks, *photo(photos, "cat.jpg", 4, 6), (4, 6)) is None
    save(masks / "sub" / "cat.jpg.png", object_)  # another name: not cat.jpg's mask
    assert find_mask(masks, "sub/cat.jpg") == masks / "sub" / "cat.png"
    # the photo resized (--max-size): the mask moved onto it
    np.testing.assert_array_equal(read_mask(masks, *cat, (2, 3)), [[0, 1, 0], [0, 0, 0]])
    save(masks / "sub" / "cat.tif", object_)
    with pytest.raises(UsageError, match="several masks for sub/cat.jpg"):
        read_mask(masks, *cat, (4, 6))
    save(masks / "sub" / "cat.jpg", np.full((4, 6, 3), 255, np.uint8))  # the same name wins
    assert read_mask(masks, *cat, (4, 6)).all()
    tall = photo(photos, "sub/cat.tif", 6, 4)
    with pytest.raises(UsageError, match=r"is 6x4 pixels \(upright\), its photo 4x6"):
        read_mask(masks, *tall, (6, 4))
    with pytest.raises(UsageError, match="not a path inside a folder"):
        read_mask(masks, cat[0], "../sub/cat.jpg", (4, 6))
    with pytest.raises(UsageError, match="is not a folder"):
        read_mask(tmp_path / "none", *cat, (4, 6))
    (photos / "sub" / "odd.jpg").write_bytes(b"not an image")  # no header: the size asked for is the frame
    save(masks / "sub" / "odd.png", object_)
    np.testing.assert_array_equal(read_mask(masks, photos / "sub" / "odd.jpg", "sub/odd.jpg", (4, 6)), object_ > 0)


def test_an_exif_turned_mask_is_read_upright_as_its_photo(tmp_path):
    stored = np.zeros((4, 6, 3), np.uint8)  # stored 6 wide, 4 high; orientation 6: turn 90 degrees clockwise
    stored[0, 5] = (200, 0, 0)  # top-right, shown at the bottom-right: row 5, column 3 of 6 x 4
    stored[3, 0] = (0, 0, 1)  # bottom-left, shown at the top-left
    path = save(tmp_path / "masks" / "turned.png", stored, exif_orientation=6)
    expected = np.zeros((6, 4), bool)
    expected[5, 3] = expected[0, 0] = True
    turned_photo = photo(tmp_path / "photos", "turned.jpg", 4, 6, exif_orientation=6)  # shown 4 wide, 6 high
    mask = read_mask(tmp_path / "masks", *turned_photo, (6, 4))
    np.testing.assert_array_equal(mask, expected)
    np.testing.assert_array_equal(mask, load_image(path).any(axis=2))  # as the photo reader turns it
    with pytest.raises(UsageError, match="is 4x6 pixels"):  # the mask turned, the photo not
        read_mask(tmp_path / "masks", *photo(tmp_path / "photos", "turned.png", 4, 6), (4, 6))
    save(tmp_path / "masks" / "upright.png", expected.astype(np.uint8))  # a mask stored upright fits too
    upright = photo(tmp_path / "photos", "upright.jpg", 4, 6, exif_orientation=6)
    np.testing.assert_array_equal(read_mask(tmp_path / "masks", *upright, (6, 4)), expected)


@pytest.mark.parametrize("make, expected", [
    (lambda: Image.fromarray(np.array([[0, 1], [300, 0]], np.uint16)), [[0, 1], [1, 0]]),  # 16-bit
    (lambda: Image.fromarray(np.array([[0.0, 0.3], [0.0, -2.0]], np.float32)), [[0, 1], [0, 1]]),  # float
    (lambda: Image.fromarray(np.array([[0, 7], [0, 0]], np.int32)), [[0, 1], [0, 0]]),  # 32-bit
    (lambda: Image.fromarray(np.array([[False, True], [True, False]])), [[0, 1], [1, 0]]),  # 1-bit
    (lambda: Image.fromarray(np.array([[[0, 255], [9, 0]], [[5, 255], [0, 255]]], np.uint8), "LA"),
     [[0, 0], [1, 0]]),  # grey 9 but transparent: outside
    (lambda: Image.fromarray(np.array([[[0, 0, 0, 255], [0, 0, 1, 255]], [[9, 9, 9, 0], [0, 0, 0, 0]]],
                                      np.uint8), "RGBA"), [[0, 1], [0, 0]]),
])
def test_every_kind_of_mask(tmp_path, make, expected):
    image = make()
    image.save(tmp_path / "m.tif" if image.mode in ("F", "I") else tmp_path / "m.png")
    np.testing.assert_array_equal(read_mask(tmp_path, tmp_path / "m.jpg", "m.jpg", (2, 2)), np.array(expected, bool))


def test_palette_mask_by_colour(tmp_path):
    image = Image.fromarray(np.array([[0, 1], [2, 0]], np.uint8), "P")
    image.putpalette([0, 0, 0, 255, 0, 0, 0, 0, 0] + [0] * 759)  # index 2 is black too
    image.save(tmp_path / "m.png")
    np.testing.assert_array_equal(read_mask(tmp_path, tmp_path / "m.jpg", "m.jpg", (2, 2)),
                                  [[False, True], [False, False]])


def test_hostile_mask_files_give_one_line(tmp_path):
    save(tmp_path / "good.png", np.zeros((8, 8), np.uint8))
    data = (tmp_path / "good.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    (tmp_path / "noise.png").write_bytes(os.urandom(64))
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "folder.png").mkdir()
    Image.fromarray(np.array([[np.nan, 1.0]], np.float32)).save(tmp_path / "nan.tif")
    cases = {"cut": "cannot read the mask", "noise": "cannot read the mask", "empty": "cannot read the mask",
             "folder": "not a regular file", "nan": "NaN or infinite"}
    if hasattr(os, "mkfifo"):
        os.mkfifo(tmp_path / "pipe.png")
        cases["pipe"] = "not a regular file"
    for stem, message in cases.items():
        size = (1, 2) if stem == "nan" else (8, 8)
        with pytest.raises(UsageError, match=message) as caught:
            read_mask(tmp_path, tmp_path / f"{stem}.jpg", f"{stem}.jpg", size)
        assert "\n" not in str(caught.value)
    assert not read_mask(tmp_path, tmp_path / "good.jpg", "good.jpg", (8, 8)).any()  # all zero: returned as it is
