"""An HDF5 weights or model file's datasets checked before Keras reads them.

Keras reads each dataset whole before it compares its shape with the layer's, and HDF5 fills a dataset's
unwritten chunks with zeros: a 17 KB file can declare a (32768, 32768) float32 kernel and make Keras allocate
4 GiB (a ``.keras`` file of 20 KB got the process killed for memory). :func:`check_declared_sizes` refuses a
dataset that declares more bytes than its stored bytes could hold once decompressed.
"""
from __future__ import annotations

import shutil
import tempfile
import zipfile
from pathlib import Path

from ..errors import WeightsError

#: the most bytes a dataset may declare per stored byte (deflate, HDF5's usual filter, packs at most 1032:1)
MAX_EXPANSION = 1100
#: bytes any dataset may declare whatever it stores (small or compact datasets, fill values of scalars)
FREE_BYTES = 1 << 20
#: the weights member of a ``.keras`` zip
KERAS_WEIGHTS = "model.weights.h5"
#: a compressed weights member larger than this that inflates more than this many times is a bomb (Keras's rule)
MEMBER_FLOOR_BYTES, MAX_MEMBER_EXPANSION = 1 << 28, 100


def _check_handle(handle, path: Path, what: str) -> None:
    import h5py

    def visit(name, item):
        if isinstance(item, h5py.Dataset):
            declared = int(item.size) * item.dtype.itemsize
            stored = int(item.id.get_storage_size())
            if declared > MAX_EXPANSION * stored + FREE_BYTES:
                raise WeightsError(f"cannot load {what} {path}: its dataset {ascii(name)[:120]} declares {declared} "
                                   f"bytes but stores {stored} (a damaged or crafted file)")

    handle.visititems(visit)  # hard links only: external and soft links are not followed


def _check_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, path: Path, what: str) -> None:
    """A ``.keras`` zip's weights member: read in place when stored (Keras writes it so); when compressed, first
    refused as a bomb by the rule Keras applies (more than :data:`MAX_MEMBER_EXPANSION` times its compressed size
    and over :data:`MEMBER_FLOOR_BYTES`), then inflated once into a temporary file (HDF5 seeks back and forth;
    each seek back in a deflated member would inflate it again from its start)."""
    import h5py

    if info.compress_type == zipfile.ZIP_STORED:
        with archive.open(info) as member, h5py.File(member, "r") as handle:
            _check_handle(handle, path, what)
        return
    if info.file_size > MEMBER_FLOOR_BYTES and info.file_size > MAX_MEMBER_EXPANSION * info.compress_size:
        raise WeightsError(f"cannot load {what} {path}: its {ascii(info.filename)[:80]} inflates {info.compress_size} bytes to "
                           f"{info.file_size} (a damaged or crafted file)")
    with tempfile.TemporaryFile() as copy:
        with archive.open(info) as member:
            shutil.copyfileobj(member, copy, 1 << 20)
        copy.seek(0)
        with h5py.File(copy, "r") as handle:
            _check_handle(handle, path, what)


def check_declared_sizes(path: str | Path, what: str) -> None:
    """Refuse an HDF5 file (or a ``.keras`` zip's weights member) with a dataset that declares more than
    :data:`MAX_EXPANSION` times its stored bytes plus :data:`FREE_BYTES`; ``what`` names the file in the
    message ("weights", "model"). A file h5py cannot open is left to Keras, which refuses it in its own words.

    Raises:
        WeightsError: one line naming the dataset, its declared and its stored bytes.
    """
    import h5py

    path = Path(path)
    try:
        with open(path, "rb") as raw:
            is_zip = raw.read(2) == b"PK"
        if is_zip:
            with zipfile.ZipFile(path) as archive:
                if KERAS_WEIGHTS in archive.namelist():
                    _check_member(archive, archive.getinfo(KERAS_WEIGHTS), path, what)
        else:
            with h5py.File(path, "r") as handle:
                _check_handle(handle, path, what)
    except WeightsError:
        raise
    except Exception:  # not HDF5, damaged, unreadable: Keras refuses it next, in its own words, as before
        return
