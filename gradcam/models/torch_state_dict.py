"""Reading a PyTorch state dict (``.pth``) without torch, safe for a file from anywhere: the zip format of
torch >= 1.6 and the legacy format before it (five pickles, then the raw storages).

No code from the file runs: every pickle goes through :mod:`gradcam.torch_pickle`. No byte outside a storage
is read, and nothing is read before it is known to fit: every tensor view (offset, sizes, strides) is checked
against its storage, every storage against the bytes the file holds, every tensor's shape against the
model's expected shapes, and the total against ``max_bytes``.
"""
from __future__ import annotations

import math
import os
import pickle
import re
import struct
import zipfile
import zlib
from pathlib import Path
from typing import Mapping

import numpy as np

from ..errors import WeightsError, first_line
from .torch_pickle import MAX_PICKLE_BYTES, STATE_GLOBALS, Storage, Tensor, pickle_bytes, unpickle

#: the first pickle of a legacy file, and its second
MAGIC_NUMBER, PROTOCOL_VERSION = 0x1950A86A20F9469CFC6C, 1001
#: the largest zip central directory read (zipfile makes an object per entry; Lite0's directory is ~30 kB)
MAX_ZIP_DIRECTORY = 1 << 20
#: what a hostile file can make the standard library raise while it is read
_READ_ERRORS = (OSError, EOFError, ValueError, KeyError, struct.error, zipfile.BadZipFile, zipfile.LargeZipFile,
                zlib.error, NotImplementedError, pickle.UnpicklingError, MemoryError, OverflowError,
                RecursionError)  # RecursionError: a pickle nested too deep to print or walk


def _read_legacy(handle, path: Path, expected, max_bytes: int) -> dict[str, np.ndarray]:
    """Pickles of the magic number, protocol, system information, state dict and storage keys; then per key an
    int64 element count and the raw elements."""
    def next_pickle(storages=None):
        start = handle.tell()
        data = pickle_bytes(handle.read(MAX_PICKLE_BYTES), STATE_GLOBALS if storages is not None else ())
        handle.seek(start + len(data))
        return unpickle(data, storages)

    try:
        magic = next_pickle()
    except pickle.UnpicklingError as exc:
        raise WeightsError(f"{path} is not a PyTorch state dict (not a zip archive; {first_line(exc)})") from None
    if not (type(magic) is int and magic == MAGIC_NUMBER):
        raise WeightsError(f"{path} is not a PyTorch state dict (not a zip archive, no legacy magic number)")
    protocol = next_pickle()
    if not (type(protocol) is int and protocol == PROTOCOL_VERSION):
        named = protocol if type(protocol) is int else f"of type {type(protocol).__name__}"  # never printed whole
        raise WeightsError(f"{path}: legacy PyTorch protocol {named}, not {PROTOCOL_VERSION}")
    info = next_pickle()
    if type(info) is not dict or not all(type(key) is str and _plain(value) for key, value in info.items()):
        raise WeightsError(f"{path}: the legacy system information is not a dict of plain values")
    if info.get("little_endian", True) is not True:
        raise WeightsError(f"{path} was saved on a big-endian machine: not supported")
    storages: dict[str, Storage] = {}
    tensors = _tensors(next_pickle(storages), path, expected)
    keys = next_pickle()
    if type(keys) is not list or not all(type(key) is str for key in keys) or len(set(keys)) != len(keys) \
            or not set(keys) <= set(storages):
        raise WeightsError(f"{path}: the legacy storage list is not a list of the storages' keys")
    needed, size = _check_views(tensors, path, max_bytes), os.fstat(handle.fileno()).st_size
    for key in keys:
        storage = storages[key]
        (count,) = struct.unpack("<q", _exactly(handle.read(8), 8))
        if count != storage.count:
            raise WeightsError(f"{path}: storage {key} holds {count} elements, the pickle named {storage.count}")
        if storage.nbytes > size - handle.tell():
            raise WeightsError(f"{path}: storage {key} of {storage.nbytes} bytes, the file has "
                               f"{size - handle.tell()} left")
        if key in needed:
            storage.values = np.frombuffer(_exactly(handle.read(storage.nbytes), storage.nbytes), storage.dtype)
        else:
            handle.seek(storage.nbytes, os.SEEK_CUR)
    return _arrays(tensors, path)


def _plain(value) -> bool:
    return type(value) in (bool, int, str) or type(value) is dict and all(
        type(key) is str and type(item) in (bool, int, str) for key, item in value.items())


def _read_zip(handle, path: Path, expected, max_bytes: int) -> dict[str, np.ndarray]:
    """ARCHIVE/data.pkl, a pickle whose storages are persistent ids, and ARCHIVE/data/KEY, each storage's bytes."""
    end_record = getattr(zipfile, "_EndRecData", None)  # what ZipFile reads first (private, there since 2.x)
    if end_record is not None:
        record = end_record(handle)
        if record is None:
            raise zipfile.BadZipFile("a zip archive without its end record (truncated?)")
        if record[zipfile._ECD_SIZE] > MAX_ZIP_DIRECTORY:
            raise WeightsError(f"{path}: a zip central directory of {record[zipfile._ECD_SIZE]} bytes, "
                               f"more than a state dict's ({MAX_ZIP_DIRECTORY})")
    with zipfile.ZipFile(handle) as archive:
        pickles = [name for name in archive.namelist() if re.fullmatch(r"[^/]+/data\.pkl", name)]
        if len(pickles) != 1:
            raise WeightsError(f"{path} is a zip archive with {len(pickles)} ARCHIVE/data.pkl, not a state dict")
        root = pickles[0][: -len("data.pkl")]
        if root + "byteorder" in archive.namelist() and _member(archive, root + "byteorder", limit=16) != b"little":
            raise WeightsError(f"{path} was saved big-endian: not supported")
        data = _member(archive, pickles[0], limit=MAX_PICKLE_BYTES)
        if len(pickle_bytes(data, STATE_GLOBALS)) != len(data):
            raise WeightsError(f"{path}: {pickles[0]} holds more than one pickle")
        storages: dict[str, Storage] = {}
        tensors = _tensors(unpickle(data, storages), path, expected)
        for storage in _check_views(tensors, path, max_bytes).values():
            raw = _member(archive, f"{root}data/{storage.key}", size=storage.nbytes)
            storage.values = np.frombuffer(raw, storage.dtype)
    return _arrays(tensors, path)


def _member(archive: zipfile.ZipFile, name: str, size: int | None = None, limit: int | None = None) -> bytes:
    """A zip member's bytes, once its declared size is ``size`` (or at most ``limit``): no more are inflated."""
    info = archive.getinfo(name)
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED) or info.flag_bits & 1:
        raise zipfile.BadZipFile(f"{name} is encrypted or compressed by an unsupported method")
    if (size is not None and info.file_size != size) or (limit is not None and info.file_size > limit):
        raise zipfile.BadZipFile(f"{name} holds {info.file_size} bytes, not "
                                 f"{size if size is not None else f'at most {limit}'}")
    with archive.open(info) as member:
        return _exactly(member.read(info.file_size), info.file_size)


def _exactly(data: bytes, size: int) -> bytes:
    if len(data) != size:
        raise EOFError(f"the file ends {size - len(data)} bytes early")
    return data


def _tensors(state, path: Path, expected: Mapping[str, tuple[int, ...]] | None) -> dict[str, Tensor]:
    """The state dict's tensors (only the expected keys, when given, each of its expected shape)."""
    if not isinstance(state, dict):
        raise WeightsError(f"{path} holds no state dict")
    tensors = {}
    for key, tensor in state.items():
        if not isinstance(tensor, Tensor):
            continue
        if type(key) is not str:
            raise WeightsError(f"{path}: a tensor named by a {type(key).__name__}, not a string")
        if expected is not None and key in expected and tensor.size != tuple(expected[key]):
            raise WeightsError(f"{path}: {key} has shape {tensor.size}, the model's is {tuple(expected[key])}")
        if expected is None or key in expected:
            tensors[key] = tensor
    return tensors


def _check_views(tensors: dict[str, Tensor], path: Path, max_bytes: int) -> dict[str, Storage]:
    """The storages the tensors read, once every view lies inside its storage and all fits ``max_bytes``."""
    needed, total = {}, 0
    for key, tensor in tensors.items():
        count, storage = math.prod(tensor.size), tensor.storage
        if not count and any(size > max_bytes for size in tensor.size):
            raise WeightsError(f"{path}: {key} has shape {tensor.size}")
        if count:
            last = tensor.offset + sum((size - 1) * stride for size, stride in zip(tensor.size, tensor.stride))
            if last >= storage.count:
                raise WeightsError(f"{path}: {key} reads element {last} of a storage of {storage.count}")
            needed[storage.key] = storage
        total += count * storage.dtype.itemsize
    stored = sum(storage.nbytes for storage in needed.values())
    if max(total, stored) > max_bytes:
        raise WeightsError(f"{path} holds {max(total, stored)} bytes of tensors, more than the "
                           f"{max_bytes} the model's weights can take")
    return needed


def _arrays(tensors: dict[str, Tensor], path: Path) -> dict[str, np.ndarray]:
    """Each tensor copied out of its storage (views checked by :func:`_check_views`)."""
    arrays = {}
    for key, tensor in tensors.items():
        values = tensor.storage.values
        if not math.prod(tensor.size):
            arrays[key] = np.empty(tensor.size, tensor.storage.dtype)
            continue
        if values is None:
            raise WeightsError(f"{path}: no data for the storage of {key}")
        strides = [stride * values.itemsize if size > 1 else 0 for size, stride in zip(tensor.size, tensor.stride)]
        arrays[key] = np.lib.stride_tricks.as_strided(values[tensor.offset:], tensor.size, strides).copy()
    return arrays


def read_state_dict(path: str | Path, expected: Mapping[str, tuple[int, ...]] | None = None,
                    max_bytes: int | None = None) -> dict[str, np.ndarray]:
    """The tensors of a PyTorch ``.pth`` state dict as NumPy arrays (each in its storage's dtype), without torch.

    Args:
        expected: the model's state-dict shapes (PyTorch layout): only these keys are read, each must have its
            shape; other keys are skipped unread.
        max_bytes: the most bytes of storages, and of arrays, read. Default: 8 per expected element + 1 MiB
            (float64 weights fit), or without ``expected`` the file's size + 1 MiB.

    Raises:
        WeightsError: the file is not a state dict of plain tensors, or asks to run code, or a tensor lies
            outside its storage, or has another shape than expected, or the total is past ``max_bytes``.
    """
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            if max_bytes is None:
                max_bytes = (1 << 20) + (os.fstat(handle.fileno()).st_size if expected is None else
                                         8 * sum(math.prod(shape) for shape in expected.values()))
            is_zip = handle.read(2) == b"PK"  # as torch tells the formats apart
            handle.seek(0)
            return (_read_zip if is_zip else _read_legacy)(handle, path, expected, max_bytes)
    except WeightsError as exc:
        message = str(exc)
    except _READ_ERRORS as exc:
        message = f"cannot read the PyTorch state dict {path}: {first_line(exc, 200)}"
    # names from the file may hold newlines or terminal escapes: one printable line
    raise WeightsError("".join(c if c.isprintable() else ascii(c)[1:-1] for c in message)[:500])
