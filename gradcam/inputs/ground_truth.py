"""Ground truth the user hands over for evaluation (boxes in a CSV or COCO-style JSON file), and finding
an input's boxes in it. Files are read as hostile: every problem is one :class:`~gradcam.errors.UsageError`
line naming the file and the line (CSV) or entry (JSON).

Boxes are in pixels of the ORIGINAL photo as shown, upright (its EXIF orientation applied): ``x0, y0``
the top-left corner (inclusive), ``x1, y1`` the bottom-right corner (exclusive), floats allowed; pixel
(r, c) covers [c, c + 1) x [r, r + 1). The masks of boxes and mask files are
:mod:`gradcam.inputs.truth_masks`'s, importable from here too.
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import unicodedata
from pathlib import Path, PurePosixPath

from ..errors import UsageError
from .regular import open_regular
from .truth_masks import Box, find_mask, input_relative, read_mask, resize_mask, scale_boxes, truth_mask_from_boxes

__all__ = ["Box", "MAX_BOXES", "MAX_FILE_BYTES", "boxes_for", "find_mask", "input_relative", "read_boxes",
           "read_mask", "resize_mask", "scale_boxes", "truth_mask_from_boxes"]

#: largest ground-truth file read (bytes), and most boxes in one file
MAX_FILE_BYTES = 64 * 1024 * 1024
MAX_BOXES = 1_000_000
#: most JSON objects and lists (``{`` and ``[``) in a COCO file: four per annotation with a polygon
MAX_JSON_CONTAINERS = 4 * MAX_BOXES
#: most lines of a CSV file (blank ones count: one a byte would take minutes to skip), and most
#: characters in one line (a row of millions of commas would be split into millions of fields)
MAX_CSV_LINES = 2 * MAX_BOXES
MAX_LINE_CHARS = 65_536
#: a line over the limit, tried at line starts only (from every position, lines just under it took O(L^2))
_LONG_LINE = re.compile(f"(?:\\A|(?<=[\\r\\n]))[^\\r\\n]{{{MAX_LINE_CHARS + 1}}}")
#: the CSV's columns: these five, then optionally ``class``
CSV_COLUMNS = ("image", "x0", "y0", "x1", "y1")


def read_boxes(path: str | os.PathLike) -> dict[str, list[Box]]:
    """The boxes of a CSV or COCO-style JSON file, by image name (as written, in POSIX form: ``\\`` -> ``/``,
    ``./`` and doubled slashes dropped). A file whose first character (after a UTF-8 BOM and spaces) is
    ``{`` is read as JSON, any other as CSV.

    CSV: a header ``image,x0,y0,x1,y1`` (names in any case, in this order), optionally then ``class``;
    one box a row, several rows for several boxes; blank rows skipped; an empty class is None. Spaces
    around a name are dropped.

    COCO: ``images`` [{id, file_name, width?, height?}], ``annotations`` [{image_id, bbox [x, y, w, h],
    category_id?}], ``categories`` [{id, name}] (a category_id needs its category). Images without an
    annotation are left out (no ground truth, as for a name absent from a CSV).

    Raises:
        UsageError: one line: not a regular file, over :data:`MAX_FILE_BYTES`, not UTF-8, no or a wrong
            header, a value that is not a finite number >= 0, a box with x1 <= x0 or y1 <= y0, more than
            :data:`MAX_BOXES` boxes, a COCO structure not as above.
    """
    text = _text_of(path)
    name = Path(path).name
    if text.lstrip().startswith("{"):
        return _read_coco(text, name)
    return _read_csv(text, name)


def _text_of(path: str | os.PathLike) -> str:
    """The file's text (UTF-8, a BOM dropped) after the checks of :func:`read_boxes`."""
    try:
        opened = open_regular(path)  # a FIFO would block: refused unopened
        if opened is None:
            raise UsageError(f"the ground truth {path} is not a regular file")
        file, info = opened
        with file:
            if info.st_size > MAX_FILE_BYTES:
                raise UsageError(f"the ground truth {path} is larger than {MAX_FILE_BYTES // 2 ** 20} MB")
            data = file.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise UsageError(f"cannot read the ground truth {path}: {exc.strerror or exc}") from None
    if len(data) > MAX_FILE_BYTES:
        raise UsageError(f"the ground truth {path} is larger than {MAX_FILE_BYTES // 2 ** 20} MB")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UsageError(f"the ground truth {path} is not UTF-8 text (byte {exc.start})") from None


def posix_name(name: str) -> str:
    """An image name as a table key: POSIX separators, ``.`` parts and doubled slashes dropped."""
    return str(PurePosixPath(name.replace("\\", "/")))


def _checked_box(x0: float, y0: float, x1: float, y1: float, class_name: str | None, where: str) -> Box:
    """A :class:`Box` once its corners are finite, >= 0 and in order; else a UsageError naming ``where``."""
    for label, value in zip(("x0", "y0", "x1", "y1"), (x0, y0, x1, y1)):
        if not math.isfinite(value):
            raise UsageError(f"{where}: {label} is not a finite number ({value})")
        if value < 0:
            raise UsageError(f"{where}: {label} is negative ({value:g})")
    if x1 <= x0 or y1 <= y0:
        raise UsageError(f"{where}: the box is empty or inverted (x0={x0:g}, y0={y0:g}, x1={x1:g}, y1={y1:g}; "
                         "x1 must be greater than x0 and y1 than y0)")
    return Box(float(x0), float(y0), float(x1), float(y1), class_name)


def _add(table: dict[str, list[Box]], key: str, box: Box, count: int, where: str) -> int:
    """Add a box under ``key``; the running count, checked against :data:`MAX_BOXES`."""
    if count >= MAX_BOXES:
        raise UsageError(f"{where}: more than {MAX_BOXES:,} boxes")
    table.setdefault(key, []).append(box)
    return count + 1


def _read_csv(text: str, name: str) -> dict[str, list[Box]]:
    """The boxes of a CSV file's text (see :func:`read_boxes`)."""
    lines = max(text.count("\n"), text.count("\r"))
    if lines > MAX_CSV_LINES:
        raise UsageError(f"{name}: more than {MAX_CSV_LINES:,} lines (at most {MAX_BOXES:,} boxes, one a line)")
    long_line = _LONG_LINE.search(text)
    if long_line is not None:
        before = text[: long_line.start()]
        number = max(before.count("\n"), before.count("\r")) + 1
        raise UsageError(f"{name} line {number}: not CSV (a line longer than {MAX_LINE_CHARS:,} characters)")
    table: dict[str, list[Box]] = {}
    count = 0
    reader = csv.reader(io.StringIO(text, newline=""))
    header: list[str] | None = None
    try:
        for row in reader:
            where = f"{name} line {reader.line_num}"
            if not any(field.strip() for field in row):
                continue
            if header is None:
                header = [field.strip().lower() for field in row]
                if tuple(header) not in (CSV_COLUMNS, (*CSV_COLUMNS, "class")):
                    raise UsageError(f"{where}: the header must be image,x0,y0,x1,y1 or image,x0,y0,x1,y1,class "
                                     f"(found {','.join(row)[:100]!r})")
                continue
            if len(row) != len(header):
                raise UsageError(f"{where}: {len(row)} fields where the header has {len(header)}")
            image = row[0].strip()
            if not image:
                raise UsageError(f"{where}: no image name")
            try:
                x0, y0, x1, y1 = (float(field) for field in row[1:5])
            except ValueError:
                raise UsageError(f"{where}: a corner is not a number ({','.join(row[1:5])[:100]!r})") from None
            class_name = (row[5].strip() or None) if len(row) == 6 else None
            count = _add(table, posix_name(image), _checked_box(x0, y0, x1, y1, class_name, where), count, where)
    except csv.Error as exc:
        raise UsageError(f"{name} line {reader.line_num}: not CSV ({exc})") from None
    if header is None:
        raise UsageError(f"{name}: no header (image,x0,y0,x1,y1[,class]) and no box")
    return table


def _read_coco(text: str, name: str) -> dict[str, list[Box]]:
    """The boxes of a COCO-style JSON file's text (see :func:`read_boxes`)."""
    if text.count("{") + text.count("[") > MAX_JSON_CONTAINERS:
        raise UsageError(f"{name}: more than {MAX_JSON_CONTAINERS:,} JSON objects and lists")
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise UsageError(f"{name}: not JSON ({str(exc).splitlines()[0][:150] if str(exc) else 'too deep'})") from None
    if not isinstance(data, dict):
        raise UsageError(f"{name}: a COCO file is a JSON object")
    images = _list_of(data, "images", name, required=True)
    categories = {}
    for index, entry in enumerate(_list_of(data, "categories", name, required=False)):
        where = f"{name} categories[{index}]"
        categories[_key(entry, "id", where)] = _text(entry, "name", where)
    files = {}
    for index, entry in enumerate(images):
        where = f"{name} images[{index}]"
        image_id = _key(entry, "id", where)
        if image_id in files:
            raise UsageError(f"{where}: the image id {image_id!r} is given twice")
        for side in ("width", "height"):
            value = entry.get(side)
            if value is not None and not (_is_number(value) and value > 0):
                raise UsageError(f"{where}: {side} is not a positive number")
        files[image_id] = posix_name(_text(entry, "file_name", where))
    table: dict[str, list[Box]] = {}
    count = 0
    for index, entry in enumerate(_list_of(data, "annotations", name, required=True)):
        where = f"{name} annotations[{index}]"
        image_id = _key(entry, "image_id", where)
        if image_id not in files:
            raise UsageError(f"{where}: no image has the id {image_id!r}")
        bbox = entry.get("bbox")
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(_is_number(v) for v in bbox)):
            raise UsageError(f"{where}: bbox is not a list of four numbers [x, y, width, height]")
        category = entry.get("category_id")
        if category is not None and (not _is_key(category) or category not in categories):
            raise UsageError(f"{where}: the category_id {category!r} is not in categories")
        x, y, width, height = (float(v) for v in bbox)
        box = _checked_box(x, y, x + width, y + height, categories.get(category), where)
        count = _add(table, files[image_id], box, count, where)
    return table


def _list_of(data: dict, field: str, name: str, required: bool) -> list[dict]:
    """``data[field]``: a list of JSON objects (empty when absent and not ``required``)."""
    value = data.get(field, None if required else [])
    if not isinstance(value, list) or not all(isinstance(entry, dict) for entry in value):
        raise UsageError(f"{name}: {field!r} is {'missing or ' if required else ''}not a list of objects")
    return value


def _is_number(value) -> bool:
    """An int or float (not a bool), finite as a float (JSON integers have no size limit)."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(float(value))
    except OverflowError:
        return False


def _is_key(value) -> bool:
    """A usable id: an int (not a bool) or a string."""
    return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))


def _key(entry: dict, field: str, where: str):
    """``entry[field]`` when it is an id (see :func:`_is_key`)."""
    value = entry.get(field)
    if not _is_key(value):
        raise UsageError(f"{where}: {field} is missing or not an integer or a string")
    return value


def _text(entry: dict, field: str, where: str) -> str:
    """``entry[field]`` when it is a non-empty string."""
    value = entry.get(field)
    if not isinstance(value, str) or not value.strip():
        raise UsageError(f"{where}: {field} is missing or not a non-empty string")
    return value.strip()


def _stem(name: str) -> str:
    """``name`` without its last extension (``sub/cat.jpg`` -> ``sub/cat``)."""
    path = PurePosixPath(name)
    return str(path.with_suffix("")) if path.suffix else name


#: the last table's keys and its index: NFC name -> the keys written so, file name -> the NFC names ending so
_INDEX: tuple[tuple[str, ...], dict[str, list[str]], dict[str, set[str]]] = ((), {}, {})


def _index(table: dict[str, list[Box]]) -> tuple[dict[str, list[str]], dict[str, set[str]]]:
    """The table's keys by NFC name, and its NFC names by file name; kept for the next call with the same
    keys (the index depends on the keys alone), so a folder's inputs cost one pass over the table."""
    global _INDEX
    keys, cached = tuple(table), _INDEX  # one read of the global: safe from threads
    if keys != cached[0]:
        paths: dict[str, list[str]] = {}
        names: dict[str, set[str]] = {}
        for key in keys:
            normal = unicodedata.normalize("NFC", posix_name(key))  # a table built by hand too
            paths.setdefault(normal, []).append(key)
            names.setdefault(PurePosixPath(normal).name, set()).add(normal)
        cached = _INDEX = (keys, paths, names)
    return cached[1], cached[2]


def boxes_for(table: dict[str, list[Box]], item_path: str | os.PathLike, relative: str) -> list[Box] | None:
    """An input's boxes in a table of :func:`read_boxes`, or None when the table has none for it.

    The rule, first match wins (names compared in POSIX form and Unicode NFC, case as written):

    1. the input's path relative to the folder given (:func:`input_relative`), with its extension
       (``sub/cat.jpg``), then without (``sub/cat``);
    2. the file name alone, ``cat.jpg`` then ``cat``, against the last part of the table's names, only
       when exactly one name in the table ends so (``a/cat.jpg`` and ``b/cat.jpg`` match neither).

    Names written in several Unicode forms that are the same name give their boxes together.
    """
    paths, names = _index(table)
    full = unicodedata.normalize("NFC", input_relative(item_path, relative))
    found = next((path for path in (full, _stem(full)) if path in paths), None)
    if found is None:
        name = PurePosixPath(full).name
        found = next((next(iter(names[n])) for n in (name, _stem(name)) if len(names.get(n, ())) == 1), None)
    return None if found is None else [box for key in paths[found] for box in table[key]]
