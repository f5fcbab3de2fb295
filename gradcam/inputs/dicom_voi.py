"""The DICOM VOI transformation (PS3.3 C.11.2): a greyscale image's modality values (after the
rescale or modality LUT) onto grey levels 0-255, in float64, not rounded.

The order: a user's window (with the file's VOI LUT Function) overrides everything in the file; else
the first item of the file's VOI LUT Sequence; else the file's first window with its VOI LUT Function;
else the image's own range, without its padding pixels. The results equal pydicom's
``apply_voi_lut`` rescaled from its output range onto 0-255.
"""
from __future__ import annotations

import numpy as np

from ..errors import ImageError

#: the VOI LUT Functions of PS3.3 C.11.2.1.3; an absent or unknown one is LINEAR, the standard's default
VOI_FUNCTIONS = ("LINEAR", "LINEAR_EXACT", "SIGMOID")


def first_value(value) -> float | None:
    """A DICOM value that may hold several (window centre/width): the first, as a float; None if absent
    or not a number."""
    if value is None:
        return None
    try:
        return float(value[0]) if hasattr(value, "__len__") and not isinstance(value, (str, bytes)) else float(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def voi_function(dataset) -> str:
    """The file's VOI LUT Function (0028,1056): LINEAR, LINEAR_EXACT or SIGMOID; LINEAR when absent or
    unknown (a documented fallback: the standard's default)."""
    value = dataset.get("VOILUTFunction")
    if hasattr(value, "__len__") and not isinstance(value, str):  # several values: the first
        value = value[0] if len(value) else None
    name = str(value).strip().upper() if value is not None else ""
    return name if name in VOI_FUNCTIONS else "LINEAR"


def window_fits(centre: float, width: float, function: str = "LINEAR") -> bool:
    """True when (centre, width) is a window the function accepts: finite, and the width at least 1
    for LINEAR (C.11.2.1.2.1), more than 0 for LINEAR_EXACT and SIGMOID (C.11.2.1.3)."""
    if not (np.isfinite(centre) and np.isfinite(width)):
        return False
    return width >= 1 if function == "LINEAR" else width > 0


def apply_window(values: np.ndarray, centre: float, width: float, function: str = "LINEAR") -> np.ndarray:
    """A VOI window onto 0-255, float64 of ``values``' shape, not rounded.

    LINEAR (C.11.2.1.2.1): values at or below c - 1/2 - (w - 1)/2 give 0, above c - 1/2 + (w - 1)/2
    give 255, in between ((x - (c - 1/2)) / (w - 1) + 1/2) * 255 (width 1: a threshold). LINEAR_EXACT
    (C.11.2.1.3.2): the same with c and w as given. SIGMOID (C.11.2.1.3.1): 255 / (1 + exp(-4 (x - c) / w)).

    Raises:
        ValueError: a width the function does not accept (see :func:`window_fits`) or an unknown function.
    """
    if function not in VOI_FUNCTIONS:
        raise ValueError(f"unknown VOI LUT Function {function!r}")
    if not window_fits(centre, width, function):
        raise ValueError(f"window {centre:g},{width:g} is not valid for the {function} VOI LUT Function")
    values = np.asarray(values, np.float64)
    if function == "SIGMOID":
        with np.errstate(over="ignore"):  # far below the centre: exp overflows, the grey is 0
            return 255.0 / (1.0 + np.exp(-4.0 * (values - centre) / width))
    if function == "LINEAR":
        centre, width = centre - 0.5, width - 1.0
    low, high = centre - width / 2.0, centre + width / 2.0
    grey = np.where(values > high, 255.0, 0.0)
    between = (values > low) & (values <= high)
    grey[between] = ((values[between] - centre) / width + 0.5) * 255.0
    return grey


def voi_grey(values: np.ndarray, stored: np.ndarray, dataset, window: tuple[float, float] | None = None
             ) -> np.ndarray:
    """A greyscale image's modality values through its VOI transformation, onto 0-255.

    Args:
        values: float (H, W), the modality values (after the rescale or modality LUT).
        stored: (H, W), the stored pixel values (the pixel padding is given in those).
        dataset: the pydicom Dataset.
        window: the user's (centre, width), drawn with the file's VOI LUT Function; it overrides the
            file's windows and its VOI LUT Sequence.

    Returns:
        float64 (H, W) in [0, 255], not rounded (MONOCHROME1 not yet inverted).

    Raises:
        ImageError: a user window the file's function does not accept, or a VOI LUT the file gets
            wrong (a file window it gets wrong is skipped instead, as when absent).
    """
    function = voi_function(dataset)
    if window is not None:
        centre, width = (float(v) for v in window)
        if not window_fits(centre, width, function):
            need = "at least 1" if function == "LINEAR" else "more than 0"
            raise ImageError(f"the window width must be {need} for this file's {function} VOI LUT Function")
        return apply_window(values, centre, width, function)
    lut = voi_lut(dataset)
    if lut is not None:
        return apply_lut(values, *lut)
    centre, width = first_value(dataset.get("WindowCenter")), first_value(dataset.get("WindowWidth"))
    if centre is not None and width is not None and window_fits(centre, width, function):
        return apply_window(values, centre, width, function)
    return own_range(values, padding_mask(stored, dataset))


def apply_lut(values: np.ndarray, table: np.ndarray, first: int, top: int) -> np.ndarray:
    """A VOI LUT onto 0-255: ``values`` below ``first`` take the first entry, above the last mapped one
    the last entry (C.11.2.1.1), and the entries 0..``top`` are scaled onto 0-255. Non-integer values
    are mapped by their floor. Returns float64 of ``values``' shape."""
    index = np.clip(np.floor(np.asarray(values, np.float64) - first), 0, len(table) - 1).astype(np.intp)
    return table[index] * (255.0 / top)


def voi_lut(dataset) -> tuple[np.ndarray, int, int] | None:
    """The first item of the file's VOI LUT Sequence as (float64 entries, first mapped value, the
    largest entry the LUT can hold: 2**bits - 1, or more when an entry is larger than its bits allow);
    None when the file has no VOI LUT (no sequence, or an item without LUT Descriptor or LUT Data).

    Raises:
        ImageError: a descriptor that is not three numbers, bits outside 8-16, or LUT Data whose length
            does not match the number of entries.
    """
    sequence = dataset.get("VOILUTSequence")
    if not sequence:
        return None
    item = sequence[0]
    descriptor, data = item.get("LUTDescriptor"), item.get("LUTData")
    if descriptor is None or data is None or (hasattr(data, "__len__") and len(data) == 0):
        return None
    little = dataset.original_encoding[1] is not False
    if isinstance(descriptor, (bytes, bytearray)):  # VR not resolved: three 16-bit words
        descriptor = np.frombuffer(bytes(descriptor), "<u2" if little else ">u2").tolist()
    if not hasattr(descriptor, "__len__") or len(descriptor) != 3:
        raise _bad_lut("the LUT Descriptor is not three numbers")
    try:
        entries, first, bits = (int(v) for v in descriptor)
    except (TypeError, ValueError, OverflowError):
        raise _bad_lut("the LUT Descriptor is not three numbers") from None
    entries, bits = entries % 65536 or 65536, bits % 65536  # always US (C.11.2.1.1), whatever the VR read
    if _may_be_negative(dataset) and first >= 32768:  # an SS value read as US
        first -= 65536
    if not 8 <= bits <= 16:
        raise _bad_lut(f"{bits} bits per entry (the standard allows 8 to 16)")
    table = _lut_entries(data, entries, bits, little)
    top = 2**bits - 1
    biggest = int(table.max())
    if biggest > top:  # the descriptor's depth is too small for its own entries: the entries' depth
        top = 2**biggest.bit_length() - 1
    return table.astype(np.float64), first, top


def _lut_entries(data, entries: int, bits: int, little: bool) -> np.ndarray:
    """LUT Data as int64 entries: a list of US values, or OW bytes holding 16-bit words (or, for 8-bit
    entries, one byte each)."""
    if isinstance(data, (bytes, bytearray)):
        if len(data) == 2 * entries:
            return np.frombuffer(bytes(data), "<u2" if little else ">u2").astype(np.int64)
        if bits == 8 and len(data) in (entries, entries + 1):  # packed bytes, padded to an even length
            return np.frombuffer(bytes(data), np.uint8)[:entries].astype(np.int64)
        raise _bad_lut(f"the LUT Descriptor gives {entries} entries but the LUT Data holds {len(data)} bytes")
    values = list(data) if hasattr(data, "__len__") and not isinstance(data, str) else [data]
    try:
        table = np.array([int(v) for v in values], np.int64)
    except (TypeError, ValueError, OverflowError):
        raise _bad_lut("the LUT Data are not numbers") from None
    if len(table) != entries:
        raise _bad_lut(f"the LUT Descriptor gives {entries} entries but the LUT Data holds {len(table)}")
    if table.min() < 0:
        raise _bad_lut("negative LUT Data")
    return table


def _bad_lut(why: str) -> ImageError:
    return ImageError(f"the file's VOI LUT is unusable: {why} (--window CENTRE,WIDTH windows the image instead)")


def _may_be_negative(dataset) -> bool:
    """Whether the modality values (the VOI LUT's input) may be negative: signed pixels, or a rescale
    whose output range reaches below 0 (then the first mapped value is SS, C.11.2.1.1)."""
    if dataset.get("ModalityLUTSequence"):
        return False
    if int(dataset.get("PixelRepresentation", 0) or 0) == 1:
        return True
    intercept = first_value(dataset.get("RescaleIntercept"))
    if intercept is None:
        return False
    slope = first_value(dataset.get("RescaleSlope"))
    slope = 1.0 if slope is None else slope
    largest = 2.0 ** int(dataset.get("BitsStored", 16) or 16) - 1
    return min(intercept, slope * largest + intercept) < 0


def padding_mask(stored: np.ndarray, dataset) -> np.ndarray:
    """True where a stored pixel is padding: equal to Pixel Padding Value (0028,0120), or, with Pixel
    Padding Range Limit (0028,0121), between the two (inclusive). Both are in stored-pixel units,
    compared before the modality LUT. Returns bool of ``stored``' shape."""
    value = _stored_number(dataset.get("PixelPaddingValue"), dataset)
    if value is None:
        return np.zeros(np.shape(stored), bool)
    limit = _stored_number(dataset.get("PixelPaddingRangeLimit"), dataset)
    if limit is None:
        return np.asarray(stored) == value
    low, high = min(value, limit), max(value, limit)
    return (np.asarray(stored) >= low) & (np.asarray(stored) <= high)


def _stored_number(value, dataset) -> int | None:
    """A US-or-SS value in stored-pixel units: read as US for signed pixels, turned back into SS."""
    number = first_value(value)
    if number is None or not np.isfinite(number):
        return None
    number = int(number)
    if int(dataset.get("PixelRepresentation", 0) or 0) == 1 and number >= 32768:
        number -= 65536
    return number


def own_range(values: np.ndarray, padding: np.ndarray) -> np.ndarray:
    """The image's own range onto 0-255: the smallest value that is not padding gives 0, the largest
    255, padding clipped to 0 or 255 (the standard keeps it beyond the image's values). An image all of
    padding is scaled by its whole range; a constant image gives 0. Returns float64, ``values``' shape."""
    values = np.asarray(values, np.float64)
    tissue = values[~padding] if not padding.all() else values
    low, high = float(tissue.min()), float(tissue.max())
    if not high > low:
        return np.zeros_like(values)
    return np.clip((values - low) * (255.0 / (high - low)), 0.0, 255.0)
