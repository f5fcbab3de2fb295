"""Volumes for 3-D models: ``.npy`` and NIfTI files read (their size checked from the header first),
checked, and resampled for a model."""
from __future__ import annotations

import os

import numpy as np

from ..errors import ImageError
from .medical import is_nifti_name, nifti_shape, read_nifti
from .resample import zoom_to


def volume_shape(path: str | os.PathLike) -> tuple[int, ...] | None:
    """The shape of a ``.npy`` or NIfTI volume from its header alone; None when it cannot be read."""
    try:
        if is_nifti_name(path):
            return nifti_shape(path)
        return _npy_shape(path)
    except Exception:
        return None


def _npy_shape(path: str | os.PathLike) -> tuple[int, ...]:
    """The shape of a ``.npy`` file from its header. Raises ImageError for anything else."""
    try:
        with open(path, "rb") as handle:
            if handle.read(6) != b"\x93NUMPY":
                raise ImageError("not a readable .npy volume (no NumPy .npy header)")
        mapped = np.load(path, mmap_mode="r", allow_pickle=False)
    except ImageError:
        raise
    except Exception as exc:
        raise ImageError(f"not a readable .npy volume ({str(exc).strip().splitlines()[0][:200]})") from None
    return tuple(mapped.shape)


def read_volume(path: str | os.PathLike, channels: int = 1, max_voxels: int | None = None
                ) -> tuple[np.ndarray, np.ndarray | None]:
    """A volume file: ``.npy`` (D, H, W[, C]) or NIfTI (``.nii``, ``.nii.gz``; its voxel axes as stored).

    Returns:
        (float32 (D, H, W, C), the NIfTI affine float64 (4, 4), or None for a .npy file).

    Raises:
        ImageError: an unreadable file, more than ``max_voxels`` voxels (from the header, before
            reading), another shape or channel count, NaN/infinite values.
    """
    shape = nifti_shape(path) if is_nifti_name(path) else _npy_shape(path)
    voxels = int(np.prod(shape[:3]))
    if max_voxels is not None and voxels > max_voxels:
        raise ImageError(f"volume is too large: {'x'.join(map(str, shape[:3]))} voxels is more than the limit of "
                         f"{max_voxels:,} (raise it with --max-pixels)")
    affine = None
    if is_nifti_name(path):
        values, affine = read_nifti(path)
    else:
        values = np.load(path, allow_pickle=False)
    return load_volume(values, channels), affine


def load_volume_for_model(path: str | os.PathLike, size: tuple[int, int, int], channels: int = 1,
                          max_voxels: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """:func:`read_volume`, and the volume resampled for the model (:func:`resize_volume`):
    (volume float32 (D, H, W, C), model input float32 (d, h, w, C), affine or None)."""
    volume, affine = read_volume(path, channels, max_voxels)
    return volume, resize_volume(volume, size), affine


def load_volume(volume, channels: int = 1) -> np.ndarray:
    """A volume as float32 (D, H, W, C): an array, or a ``.npy`` or NIfTI file's, (D, H, W) or
    (D, H, W, C); yours is not changed.

    Raises:
        ImageError: an unreadable file, another shape, another channel count, values that are not real
            numbers, or NaN/infinite values.
    """
    if isinstance(volume, (str, os.PathLike)):
        return read_volume(volume, channels)[0]
    kind = np.asarray(volume).dtype
    if not (kind == bool or np.issubdtype(kind, np.integer) or np.issubdtype(kind, np.floating)):
        raise ImageError(f"a volume must hold real numbers; got dtype {kind}")
    values = np.array(volume, dtype=np.float32)
    if values.ndim == 3:
        values = values[..., None]
    if values.ndim != 4 or 0 in values.shape or values.shape[3] != channels:
        raise ImageError(f"a volume must be (D, H, W) or (D, H, W, {channels}); got {np.shape(volume)}")
    if not np.isfinite(values).all():
        raise ImageError("the volume has NaN or infinite values")
    return values


def resize_volume(volume: np.ndarray, size: tuple[int, int, int]) -> np.ndarray:
    """A volume (D, H, W, C) resampled to the model's (d, h, w) with ``scipy.ndimage.zoom`` (order 1,
    pixel centres aligned, as the heatmaps are): float32 (d, h, w, C)."""
    if tuple(volume.shape[:3]) == tuple(size):
        return volume
    return zoom_to(volume, (*size, volume.shape[3]))
