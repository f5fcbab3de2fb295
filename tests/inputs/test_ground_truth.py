"""Ground-truth boxes: CSV and COCO files read by hand-checked examples, every hostile file a one-line
UsageError naming its line (fuzzed with hypothesis), an input's boxes found by the documented rule, and
the boxes shipped with the sample photos."""
from __future__ import annotations

import json
import os
import unicodedata
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import gradcam.inputs.ground_truth as ground_truth
from gradcam.errors import UsageError
from gradcam.inputs.discovery import discover_inputs
from gradcam.inputs.ground_truth import Box, boxes_for, input_relative, read_boxes
from gradcam.inputs.headers import image_size
from gradcam.models.classes import imagenet_synonyms

SAMPLES = Path(__file__).resolve().parents[2] / "sample_images"


def write(tmp_path: Path, text: str | bytes, name: str = "boxes.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode("utf-8") if isinstance(text, str) else text)
    return path


def test_csv_boxes_by_hand(tmp_path):
    path = write(tmp_path, "\ufeffImage, X0 ,y0,x1,y1,Class\r\n"
                           "cat.jpg,1,2,30.5,40,tabby\r\n"
                           "\r\n"
                           "cat.jpg, 0 , 0 ,1e1,5,\n"
                           "sub\\dog.png,0,0,1,1,\"military uniform\"\n"
                           "./sub//c d.jpg,3,4,5,6,x\n")
    assert read_boxes(path) == {
        "cat.jpg": [Box(1.0, 2.0, 30.5, 40.0, "tabby"), Box(0.0, 0.0, 10.0, 5.0, None)],
        "sub/dog.png": [Box(0.0, 0.0, 1.0, 1.0, "military uniform")],
        "sub/c d.jpg": [Box(3.0, 4.0, 5.0, 6.0, "x")],
    }
    assert read_boxes(write(tmp_path, "image,x0,y0,x1,y1\na.jpg,0,0,2,3\n")) == {"a.jpg": [Box(0, 0, 2, 3)]}
    assert read_boxes(write(tmp_path, "image,x0,y0,x1,y1\n")) == {}


@pytest.mark.parametrize("text, message", [
    ("image,x0,y0,x1,y1\ncat.jpg,nan,0,1,1\n", "line 2: x0 is not a finite number"),
    ("image,x0,y0,x1,y1\ncat.jpg,0,0,inf,1\n", "line 2: x1 is not a finite number"),
    ("image,x0,y0,x1,y1\n\ncat.jpg,0,-1,1,1\n", "line 3: y0 is negative"),
    ("image,x0,y0,x1,y1\ncat.jpg,5,0,4,1\n", "line 2: the box is empty or inverted"),
    ("image,x0,y0,x1,y1\ncat.jpg,0,2,1,2\n", "line 2: the box is empty or inverted"),
    ("image,x0,y0,x1,y1\ncat.jpg,0,zero,1,1\n", "line 2: a corner is not a number"),
    ("image,x0,y0,x1,y1\ncat.jpg,0,0,1\n", "line 2: 4 fields where the header has 5"),
    ("image,x0,y0,x1,y1\n,0,0,1,1\n", "line 2: no image name"),
    ("image,x0,y0,x1,y1,class,score\n", "line 1: the header must be"),
    ("image,x,y,w,h\n", "line 1: the header must be"),
    ("cat.jpg,0,0,1,1\n", "line 1: the header must be"),
    ("", "no header"),
    ("image,x0,y0,x1,y1\ncat.jpg,0,0,1,1\x00\n", "line 2: a corner is not a number"),
    ("image,x0,y0,x1,y1\n\"cat.jpg,0,0,1,1\n" + "x" * 200_000 + "\"\n", "not CSV"),
])
def test_bad_csv_gives_one_line_naming_the_line(tmp_path, text, message):
    with pytest.raises(UsageError, match=message) as caught:
        read_boxes(write(tmp_path, text))
    assert "\n" not in str(caught.value) and "boxes.csv" in str(caught.value)


def test_hostile_files(tmp_path, monkeypatch):
    with pytest.raises(UsageError, match="not UTF-8 text"):
        read_boxes(write(tmp_path, b"image,x0,y0,x1,y1\n\xff\xfe,0,0,1,1\n"))
    with pytest.raises(UsageError, match="not a regular file"):
        read_boxes(tmp_path)
    with pytest.raises(UsageError, match="cannot read the ground truth"):
        read_boxes(tmp_path / "missing.csv")
    if hasattr(os, "mkfifo"):  # a pipe is refused unopened: reading it would wait for a writer
        os.mkfifo(tmp_path / "pipe.csv")
        with pytest.raises(UsageError, match="not a regular file"):
            read_boxes(tmp_path / "pipe.csv")
    monkeypatch.setattr(ground_truth, "MAX_FILE_BYTES", 40)
    with pytest.raises(UsageError, match="larger than"):
        read_boxes(write(tmp_path, "image,x0,y0,x1,y1\n" + "a.jpg,0,0,1,1\n" * 3))
    monkeypatch.setattr(ground_truth, "MAX_FILE_BYTES", 2 ** 20)
    monkeypatch.setattr(ground_truth, "MAX_BOXES", 2)
    with pytest.raises(UsageError, match="line 4: more than 2 boxes"):
        read_boxes(write(tmp_path, "image,x0,y0,x1,y1\n" + "a.jpg,0,0,1,1\n" * 3))
    monkeypatch.setattr(ground_truth, "MAX_JSON_CONTAINERS", 10)
    with pytest.raises(UsageError, match="more than 10 JSON objects and lists"):
        read_boxes(write(tmp_path, '{"images": [' + "{}," * 10 + "{}]}", "coco.json"))


COCO = {
    "images": [{"id": 1, "file_name": "cat.jpg", "width": 451, "height": 300},
               {"id": "two", "file_name": "sub\\coffee.jpg"},
               {"id": 3, "file_name": "empty.jpg"}],
    "annotations": [{"image_id": 1, "bbox": [10, 20, 30.5, 40], "category_id": 7},
                    {"image_id": "two", "bbox": [0, 0, 1, 2]},
                    {"image_id": 1, "bbox": [1, 1, 2, 2], "category_id": 8, "iscrowd": 0, "area": 4}],
    "categories": [{"id": 7, "name": "tabby"}, {"id": 8, "name": "Egyptian cat"}],
}


def test_coco_boxes_by_hand(tmp_path):
    path = write(tmp_path, "  \n" + json.dumps(COCO), "truth.data")  # JSON by its first character
    assert read_boxes(path) == {
        "cat.jpg": [Box(10.0, 20.0, 40.5, 60.0, "tabby"), Box(1.0, 1.0, 3.0, 3.0, "Egyptian cat")],
        "sub/coffee.jpg": [Box(0.0, 0.0, 1.0, 2.0, None)],
    }  # empty.jpg has no annotation: no ground truth


@pytest.mark.parametrize("change, message", [
    (lambda d: d.pop("images"), "'images' is missing or not a list"),
    (lambda d: d.update(annotations={}), "'annotations' is missing or not a list"),
    (lambda d: d.update(categories=[1]), "'categories' is not a list of objects"),
    (lambda d: d["images"].append({"id": 1, "file_name": "x.jpg"}), r"images\[3\]: the image id 1 is given twice"),
    (lambda d: d["images"][0].update(id=True), r"images\[0\]: id is missing"),
    (lambda d: d["images"][0].update(width=-3), r"images\[0\]: width is not a positive number"),
    (lambda d: d["images"][0].update(file_name=" "), r"images\[0\]: file_name is missing"),
    (lambda d: d["annotations"][1].update(image_id=9), r"annotations\[1\]: no image has the id 9"),
    (lambda d: d["annotations"][0].update(bbox=[1, 2, 3]), r"annotations\[0\]: bbox is not a list of four"),
    (lambda d: d["annotations"][0].update(bbox=[1, 2, 3, "4"]), r"annotations\[0\]: bbox is not a list of four"),
    (lambda d: d["annotations"][0].update(bbox=[1, 2, 0, 4]), r"annotations\[0\]: the box is empty or inverted"),
    (lambda d: d["annotations"][0].update(bbox=[-1, 2, 3, 4]), r"annotations\[0\]: x0 is negative"),
    (lambda d: d["annotations"][0].update(bbox=[1.7e308, 2, 1.7e308, 4]), r"annotations\[0\]: x1 is not a finite"),
    (lambda d: d["annotations"][0].update(category_id=99), r"annotations\[0\]: the category_id 99 is not"),
    (lambda d: d["annotations"][0].update(category_id=[7]), r"annotations\[0\]: the category_id \[7\] is not"),
])
def test_bad_coco_gives_one_line_naming_the_entry(tmp_path, change, message):
    data = json.loads(json.dumps(COCO))
    change(data)
    with pytest.raises(UsageError, match=message) as caught:
        read_boxes(write(tmp_path, json.dumps(data), "coco.json"))
    assert "\n" not in str(caught.value) and "coco.json" in str(caught.value)


@pytest.mark.parametrize("text", ["{", "{" + "[" * 100_000, '{"images": NaN}', "{}",
                                  '{"images": [], "annotations": 3}'])
def test_broken_json(tmp_path, text):
    with pytest.raises(UsageError):
        read_boxes(write(tmp_path, text, "coco.json"))


VALID_CSV = "image,x0,y0,x1,y1,class\ncat.jpg,1,2,30.5,40,tabby\nsub/dog.png,0,0,1,1,\n"


def mutated(text: str, edits: list[tuple[int, int, str]]) -> str:
    """``text`` after each edit (position, characters to delete, text to insert)."""
    for position, delete, insert in edits:
        position %= len(text) + 1
        text = text[:position] + insert + text[position + delete:]
    return text


EDITS = st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 4),
                           st.text(alphabet=st.sampled_from(list(',"\n\r\\{}[]:.-e0123456789 nafix\x00\ufeffé')),
                                   max_size=4)), max_size=6)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.one_of(
    st.binary(max_size=300),
    st.builds(lambda edits: mutated(VALID_CSV, edits).encode("utf-8", "surrogatepass"), EDITS),
    st.builds(lambda edits: mutated(json.dumps(COCO), edits).encode("utf-8", "surrogatepass"), EDITS),
))
def test_fuzzed_files_give_boxes_or_one_usage_error(tmp_path, data):
    path = write(tmp_path, data, "fuzz.txt")
    try:
        table = read_boxes(path)
    except UsageError as error:
        assert "\n" not in str(error) and str(error)
        return
    for name, boxes in table.items():
        assert isinstance(name, str) and boxes
        for box in boxes:
            assert 0 <= box.x0 < box.x1 < float("inf") and 0 <= box.y0 < box.y1 < float("inf")
            assert box.class_name is None or isinstance(box.class_name, str)


# -- an input's boxes ----------------------------------------------------------------------------------


def test_boxes_for_follows_the_rule(tmp_path):
    for name in ("sub/cat.jpg", "sub/Cat.JPG", "sub/dog.png", "other/bird.jpg", "a/fish.jpg", "b/fish.jpg",
                 "mouse.jpg"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    items = {item.relative: item for item in discover_inputs([tmp_path], recursive=True)}
    one, two, three, four, five = (Box(0, 0, i, i) for i in range(1, 6))
    table = {"sub/cat.jpg": [one], "sub/dog": [two], "elsewhere/bird.jpg": [three], "x/fish.jpg": [four],
             "y/fish.jpg": [four], "/data/set/mouse": [five]}

    def look_up(relative):
        return boxes_for(table, items[relative].path, relative)

    assert look_up("sub/dog.png") == [two]  # without
    assert look_up("other/bird.jpg") == [three]  # the file name alone, unique in the table
    assert look_up("a/fish.jpg") is None  # ambiguous: x/fish.jpg and y/fish.jpg
    assert look_up("mouse.jpg") == [five]  # the file name without its extension, unique
    assert items["sub/cat.jpg-2"].path.name == "cat.jpg"  # sorted after Cat.JPG, whose output name it shares
    assert input_relative(items["sub/cat.jpg-2"].path, "sub/cat.jpg-2") == "sub/cat.jpg"  # the "-2" is not its name
    assert look_up("sub/cat.jpg-2") == [one]  # the relative path, with its extension
    assert look_up("sub/Cat.JPG") is None  # names are compared with their case
    assert boxes_for({"sub/Cat.JPG": [two]}, items["sub/Cat.JPG"].path, "sub/Cat.JPG") == [two]


def test_boxes_for_compares_unicode_forms(tmp_path):
    nfc, nfd = unicodedata.normalize("NFC", "café.jpg"), unicodedata.normalize("NFD", "café.jpg")
    assert boxes_for({nfc: [Box(0, 0, 1, 1)]}, tmp_path / nfd, nfd) == [Box(0, 0, 1, 1)]
    assert boxes_for({nfc: [Box(0, 0, 1, 1)], nfd: [Box(0, 0, 2, 2)]}, tmp_path / nfc, nfc) == \
        [Box(0, 0, 1, 1), Box(0, 0, 2, 2)]  # one name in two forms: its boxes together
    assert boxes_for({"dir\\" + nfc: [Box(0, 0, 3, 3)]}, tmp_path / nfc, nfc) == [Box(0, 0, 3, 3)]  # by name
    assert boxes_for({}, tmp_path / "x.jpg", "x.jpg") is None


# -- the boxes shipped with the sample photos --------------------------------------------------------------


def test_shipped_sample_boxes_lie_in_their_photos():
    table = read_boxes(SAMPLES / "boxes.csv")
    photos = sorted(path.name for path in SAMPLES.glob("*.jpg"))
    assert sorted(table) == photos  # one object for every sample photo
    names = {name for synonyms in imagenet_synonyms() for name in synonyms}
    for name, boxes in table.items():
        width, height = image_size(SAMPLES / name)  # upright
        assert boxes
        for box in boxes:
            assert 0 <= box.x0 < box.x1 <= width and 0 <= box.y0 < box.y1 <= height, (name, box)
            assert box.class_name is None or box.class_name in names
            assert (box.x1 - box.x0) * (box.y1 - box.y0) >= 0.02 * width * height  # an object, not a speck
    found = {item.relative: boxes_for(table, item.path, item.relative) for item in discover_inputs([SAMPLES])}
    assert found == {name: table[name] for name in photos}
