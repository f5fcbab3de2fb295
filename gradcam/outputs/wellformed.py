"""Which manifest records are read back: those whose fields have the types the tool writes. A hand-edited
or damaged line (a list where a path belongs, a NUL in a name, a float sequence number) vouches for nothing."""
from __future__ import annotations


#: record fields read back as file names or text: a string (without NUL) or null
_TEXT_FIELDS = ("input", "status", "overlay", "heatmap", "curves", "planes", "nifti", "class_name", "error", "run")


def well_formed(record: dict) -> bool:
    """True when the fields resume, the gallery and ``gradcam status`` read have their written types; a
    hand-edited or damaged record fails and is left out (it vouches for nothing)."""
    def text(value) -> bool:
        return value is None or (isinstance(value, str) and "\x00" not in value)

    def whole(value) -> bool:
        return value is None or (type(value) is int)

    touched, files = record.get("touched"), record.get("files")
    probability = record.get("probability")
    return (all(text(record.get(key)) for key in _TEXT_FIELDS)
            and whole(record.get("seq")) and whole(record.get("rank")) and whole(record.get("class_index"))
            and (probability is None or (type(probability) in (int, float) and probability == probability))
            and (touched is None or (isinstance(touched, list) and all(text(path) for path in touched)))
            and (files is None or (isinstance(files, dict) and all(text(path) for path in files))
                 or (record.get("event") == "start" and isinstance(files, list))))  # a start record's identities
