"""The medical formats, read and written through optional extras (``pip install ".[medical]"`` from a checkout, or the packages themselves):
DICOM images (pydicom) with their window, NIfTI volumes (nibabel) with their affine, and the
orientation in which a NIfTI volume is drawn. Neither library is imported until a file needs it.
"""
from __future__ import annotations

import gzip
import os
import warnings

import numpy as np

from .dicom_voi import apply_window, voi_grey  # noqa: F401  (apply_window: part of this module's API)
from ..errors import ImageError, UsageError
from ..names import DICOM_EXTENSIONS, IMAGE_EXTENSIONS, VOLUME_EXTENSIONS

#: what to install when pydicom or nibabel is missing
MEDICAL_EXTRA = 'pip install nibabel "pydicom>=3"'

#: the display order of a NIfTI volume's axes (nibabel axis codes): slices from the top of the head
#: down (I), rows from the front (P: anterior at the top), columns to the patient's left (L: the
#: patient's right on the viewer's left, as radiologists read)
DISPLAY_AXES = ("I", "P", "L")


def _missing(module: str, purpose: str) -> UsageError:
    return UsageError(f"reading {purpose} needs {module}: {MEDICAL_EXTRA}")


def import_pydicom():
    """pydicom, or a one-line UsageError that says how to install it."""
    try:
        import pydicom
        import pydicom.pixels  # noqa: F401  (the pixel handlers and LUTs)
    except ImportError:
        raise _missing("pydicom", "DICOM files") from None
    return pydicom


def import_nibabel():
    """nibabel, or a one-line UsageError that says how to install it."""
    try:
        import nibabel
    except ImportError:
        raise _missing("nibabel", "NIfTI volumes") from None
    return nibabel


def is_nifti_name(name: str | os.PathLike) -> bool:
    """True for ``.nii`` and ``.nii.gz`` (any case)."""
    lower = os.fspath(name).lower()
    return lower.endswith(".nii") or lower.endswith(".nii.gz")


def is_dicom_file(path: str | os.PathLike) -> bool:
    """True for a ``.dcm``/``.dicom`` name, or, for a name without a usual image or volume extension (a
    DICOM file named ``IM0001``), a file with the DICOM preamble ("DICM" at byte 128). Photos are
    never opened here."""
    name = os.fspath(path).lower()
    if name.endswith(DICOM_EXTENSIONS):
        return True
    if name.endswith(IMAGE_EXTENSIONS + VOLUME_EXTENSIONS):  # the usual names: no file opened
        return False
    try:
        with open(path, "rb") as handle:
            handle.seek(128)
            return handle.read(4) == b"DICM"
    except OSError:
        return False


def check_readers(paths: list[str | os.PathLike]) -> None:
    """Before a run: when every input needs an extra that is missing (a folder of DICOM files without
    pydicom), the one-line UsageError that says what to install. When only some inputs need it, the
    run goes on and each of those fails alone, with the same words (see :func:`_file_reader`)."""
    needed = [_reader_of(path) for path in paths]
    if needed and all(needed):
        for importer in dict.fromkeys(needed):
            importer()


def _reader_of(path: str | os.PathLike):
    """The importer a file needs: :func:`import_nibabel`, :func:`import_pydicom`, or None."""
    if is_nifti_name(path):
        return import_nibabel
    return import_pydicom if is_dicom_file(path) else None


def _file_reader(importer):
    """``importer()`` for reading one file: a missing library is that file's ImageError (one bad file
    never stops a folder run), with the install hint."""
    try:
        return importer()
    except UsageError as exc:
        raise ImageError(str(exc)) from None


# -- DICOM

def parse_window(text: str) -> tuple[float, float]:
    """'CENTRE,WIDTH' (e.g. '40,400') -> (centre, width) with width >= 1; else ValueError."""
    parts = text.split(",")
    if len(parts) != 2:
        raise ValueError(f"{text!r} is not CENTRE,WIDTH (e.g. 40,400 for soft tissue in CT)")
    centre, width = (float(part) for part in parts)
    if not (np.isfinite(centre) and np.isfinite(width)) or width < 1:
        raise ValueError(f"{text!r}: the window width must be at least 1")
    return centre, width


def read_dicom(path: str | os.PathLike, window: tuple[float, float] | None = None,
               max_pixels: int | None = None) -> tuple[np.ndarray, bool]:
    """A single-frame DICOM image at full depth, ready to display and to feed a model.

    Greyscale images go through the modality LUT (rescale slope and intercept, or the file's LUT) and
    then the VOI transformation (:func:`~gradcam.dicom_voi.voi_grey`): ``window`` = (centre, width) if
    given (with the file's VOI LUT Function; it overrides the file's VOI LUT too), else the file's VOI
    LUT, else its first window, else the image's own range without its padding pixels; MONOCHROME1 is
    inverted. Colour images are scaled to 0-255.

    Returns:
        (float64 (H, W) greyscale or (H, W, 3) colour, in [0, 255], not rounded; True if greyscale).

    Raises:
        ImageError: an unreadable or multi-frame file, one without pixels, more than ``max_pixels``, a
            VOI LUT the file gets wrong, a ``window`` the file's VOI LUT Function does not accept, or
            pydicom is not installed (the message says how to install it).
    """
    pydicom = _file_reader(import_pydicom)
    try:
        with warnings.catch_warnings():  # pydicom warns about every oddity of a file: it reads them anyway
            warnings.simplefilter("ignore")
            return _read_dicom(pydicom, path, window, max_pixels)
    except ImageError:
        raise
    except MemoryError:
        raise ImageError("not enough memory to decode this DICOM image") from None
    except Exception as exc:  # a damaged or unusual file: pydicom and its handlers raise many types
        raise ImageError(f"not a readable DICOM image ({_reason(exc)})") from None


def _read_dicom(pydicom, path, window, max_pixels) -> tuple[np.ndarray, bool]:
    try:
        dataset = pydicom.dcmread(path, force=True)
    except Exception as exc:
        raise ImageError(f"not a readable DICOM file ({_reason(exc)})") from None
    if "PixelData" not in dataset or "Rows" not in dataset or "Columns" not in dataset:
        kind = getattr(getattr(dataset, "SOPClassUID", None), "name", None)
        raise ImageError(f"a DICOM file without an image{f' ({kind})' if kind else ''}: no pixel data")
    rows, columns = int(dataset.Rows), int(dataset.Columns)
    if max_pixels is not None and rows * columns > max_pixels:
        raise ImageError(f"image is too large: {columns}x{rows} pixels is more than the limit of {max_pixels:,} "
                         "(raise it with --max-pixels)")
    frames = int(getattr(dataset, "NumberOfFrames", 1) or 1)
    if frames > 1:
        raise ImageError(f"a multi-frame DICOM ({frames} frames): gradcam explains single-frame images")
    try:
        pixels = dataset.pixel_array
    except Exception as exc:
        raise ImageError(_undecodable(dataset, exc)) from None
    samples = int(getattr(dataset, "SamplesPerPixel", 1) or 1)
    photometric = str(dataset.get("PhotometricInterpretation", "")).strip()
    if samples == 3 and pixels.ndim == 3:  # pydicom 3 gives YBR images as RGB already
        bits = int(getattr(dataset, "BitsStored", 8) or 8)
        return np.asarray(pixels, np.float64) * (255.0 / (2 ** bits - 1)), False
    if photometric == "PALETTE COLOR" and pixels.ndim == 2:  # indices into the file's colour tables
        colours = pydicom.pixels.apply_color_lut(pixels, dataset)
        bits = int(dataset.RedPaletteColorLookupTableDescriptor[2])
        return np.asarray(colours, np.float64) * (255.0 / (2 ** bits - 1)), False
    if pixels.ndim != 2:
        raise ImageError(f"unexpected DICOM pixel layout {pixels.shape}")
    with np.errstate(all="ignore"):  # a crafted slope or intercept (NaN, inf, 1e308): said below
        values = np.asarray(pydicom.pixels.apply_modality_lut(pixels, dataset), np.float64)
    if not np.isfinite(values).all():
        raise ImageError("the file's rescale slope or intercept (or its modality LUT) gives values that are not "
                         "finite")
    grey = voi_grey(values, pixels, dataset, window)
    if photometric == "MONOCHROME1":
        grey = 255.0 - grey
    return grey, True


def dicom_size(path: str | os.PathLike) -> tuple[int, int] | None:
    """(width, height) of a DICOM image from its header alone; None when it cannot be read."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            dataset = import_pydicom().dcmread(path, force=True, stop_before_pixels=True)
        return int(dataset.Columns), int(dataset.Rows)
    except Exception:
        return None


def _undecodable(dataset, exc: BaseException) -> str:
    """Why a DICOM file's pixels cannot be decoded, and for compressed pixels without a decoder, what to
    install."""
    syntax = getattr(getattr(getattr(dataset, "file_meta", None), "TransferSyntaxUID", None), "name", None)
    text = str(exc)
    if syntax and ("missing dependencies" in text or "all available plugins" in text or "plugin" in text):
        return (f"cannot decode the DICOM pixels: they are compressed as {syntax}, which pydicom decodes "
                "with a plugin (e.g. pip install pylibjpeg pylibjpeg-libjpeg pylibjpeg-openjpeg)")
    return f"cannot decode the DICOM pixels ({_reason(exc)})"


def _reason(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:200]


# -- NIfTI

def nifti_shape(path: str | os.PathLike) -> tuple[int, ...]:
    """The shape of a NIfTI volume, from its header alone.

    Raises:
        ImageError: not a readable NIfTI file, or nibabel is not installed (the message says how).
    """
    nibabel = _file_reader(import_nibabel)
    try:
        return tuple(int(n) for n in nibabel.load(os.fspath(path)).shape)
    except Exception as exc:
        raise ImageError(f"not a readable NIfTI file ({_reason(exc)})") from None


def read_nifti(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """A NIfTI volume as stored (voxel axes in the file's order, scaled by its slope and intercept).

    Returns:
        (float32 array (X, Y, Z) or (X, Y, Z, C), float64 affine (4, 4): voxel indices -> millimetres).

    Raises:
        ImageError: not a readable NIfTI file, or nibabel is not installed (the message says how).
    """
    nibabel = _file_reader(import_nibabel)
    try:
        image = nibabel.load(os.fspath(path))
        return np.asarray(image.get_fdata(dtype=np.float32)), np.asarray(image.affine, np.float64)
    except Exception as exc:
        raise ImageError(f"not a readable NIfTI file ({_reason(exc)})") from None


def nifti_bytes(volume: np.ndarray, affine: np.ndarray, compress_level: int = 1) -> bytes:
    """A float32 volume (X, Y, Z) with ``affine`` as the bytes of a gzipped NIfTI-1 file (.nii.gz)."""
    nibabel = import_nibabel()
    image = nibabel.Nifti1Image(np.asarray(volume, np.float32), np.asarray(affine, np.float64))
    image.header.set_xyzt_units("mm")
    return gzip.compress(image.to_bytes(), compresslevel=compress_level, mtime=0)


def to_display(affine: np.ndarray | None, *volumes: np.ndarray) -> list[np.ndarray]:
    """Volumes (X, Y, Z[, C]) of a NIfTI file with this affine, reordered and flipped to
    :data:`DISPLAY_AXES` (axial slices first, anterior up, the patient's right on the left), so that
    montages and plane figures look as in a viewer; with no affine (a .npy volume), unchanged."""
    if affine is None:
        return list(volumes)
    nibabel = import_nibabel()
    orientations = nibabel.orientations
    transform = orientations.ornt_transform(orientations.io_orientation(affine),
                                            orientations.axcodes2ornt(DISPLAY_AXES))
    return [np.ascontiguousarray(orientations.apply_orientation(volume, transform)) for volume in volumes]
