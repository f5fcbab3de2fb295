"""Heatmaps saved with ``--save-npy``, read back from an output folder for the atlas and the comparison of
runs: the explained records, each record's map loaded as a file from anywhere (its header checked before its
data), and the arithmetic on maps: resampling to a frame, the share of the attention in a border band,
correlations, the top region and its IoU.

Every map here is the ``.npy`` the run wrote: float32 (H, W) at the photo's size, min-max scaled to [0, 1].
"""
from __future__ import annotations

import math
import os
import stat
from pathlib import Path

import numpy as np

from ..errors import UsageError, first_line
from ..inputs.images import DEFAULT_MAX_PIXELS
from ..inputs.truth_masks import require_regular_file
from ..outputs.manifest import latest_records, manifest_paths

#: the most pixels a saved map may have (read from its header before its data): the photos' own limit
MAX_MAP_PIXELS = DEFAULT_MAX_PIXELS

#: the longest side a saved map may have: resampling costs memory in proportion to it
MAX_MAP_SIDE = 2 ** 20

#: the statuses whose record stands for a map on disk: made by the run, or kept by a rerun that skipped it
EXPLAINED = ("ok", "skipped")


class MapSkipped(Exception):
    """A record's map cannot be used; the message is the one-line reason shown in the reports."""


def finite(value) -> float | None:
    """A real number as float; None for None, NaN, infinity or anything else (JSON has no NaN)."""
    if type(value) not in (int, float) or not math.isfinite(value):
        return None
    return float(value)


def explained_records(output_dir: Path) -> list[dict]:
    """The rank-1 records of every manifest in ``output_dir`` (all shards; the newest per input, see
    :func:`~gradcam.outputs.manifest.latest_records`) whose status is "ok" or "skipped", ordered by input.

    Raises:
        UsageError: ``output_dir`` is not a folder, holds no gradcam manifest, or a manifest that is not
            a regular file (a FIFO, a device, a link loop).
    """
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        raise UsageError(f"{output_dir} is not a folder of gradcam results")
    paths = manifest_paths(output_dir)
    if not paths:
        raise UsageError(f"{output_dir} holds no gradcam manifest (manifest.jsonl): is it a gradcam output folder?")
    for path in paths:  # a FIFO would block the reading, a link to /dev/zero fill the memory
        require_regular_file(path, "the manifest")
    records = [record for record in latest_records(output_dir)
               if record.get("status") in EXPLAINED and (record.get("rank") or 1) == 1]
    return sorted(records, key=lambda record: record.get("input") or "")


def require_saved_maps(output_dir: Path, records: list[dict]) -> None:
    """Raises UsageError when no record of ``output_dir`` names a saved map (a run without --save-npy)."""
    if not any(record.get("heatmap") for record in records):
        raise UsageError(f"{output_dir} has no saved heatmaps (.npy): run gradcam with --save-npy into it first")


def inside(output_dir: Path, relative) -> Path | None:
    """``output_dir / relative`` when that names a path inside ``output_dir`` (links resolved), else None."""
    if not isinstance(relative, str) or not relative or "\x00" in relative or os.path.isabs(relative):
        return None
    try:
        root = Path(output_dir).resolve()
        path = (root / relative).resolve()
    except (OSError, RuntimeError, ValueError):  # a symlink loop, a name the system refuses
        return None
    return path if path != root and root in path.parents else None


def saved_map(output_dir: Path, record: dict) -> np.ndarray:
    """The map a record's ``heatmap`` names, as float64 (H, W) in [0, 1].

    The file may come from anywhere: it must be a regular file inside ``output_dir``, a ``.npy`` (read
    without pickles) whose header says a 2-D float array of at most :data:`MAX_MAP_PIXELS` pixels, with
    finite values in [0, 1] and not all equal.

    Raises:
        MapSkipped: with the reason, for anything else.
    """
    name = record.get("heatmap")
    if not name:
        raise MapSkipped("no .npy recorded (run gradcam with --save-npy)")
    path = inside(output_dir, name)
    if path is None:
        raise MapSkipped(f"the recorded .npy path {name!r} leaves the output folder or cannot be resolved "
                         "(a link loop)")
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise MapSkipped("the .npy is not a regular file")
        mapped = np.load(path, mmap_mode="r", allow_pickle=False)
    except MapSkipped:
        raise
    except FileNotFoundError:
        raise MapSkipped("the .npy is missing") from None
    except Exception as exc:  # a damaged header, a short file, a pickle, an unreadable file
        raise MapSkipped(f"the .npy is unreadable ({first_line(exc, 120)})") from None
    if not isinstance(mapped, np.ndarray):  # an .npz archive under the name
        getattr(mapped, "close", lambda: None)()
        raise MapSkipped("the file is not a .npy array")
    if mapped.dtype.kind != "f" or mapped.ndim != 2 or not mapped.size:
        raise MapSkipped(f"the .npy holds {mapped.dtype} {mapped.shape}, not a 2-D float heatmap")
    if mapped.size > MAX_MAP_PIXELS or max(mapped.shape) > MAX_MAP_SIDE:
        raise MapSkipped(f"the .npy is {mapped.shape[1]:,} x {mapped.shape[0]:,} pixels: more than "
                         f"{MAX_MAP_PIXELS:,} pixels or a side over {MAX_MAP_SIDE:,}")
    values = np.array(mapped, dtype=np.float64)
    del mapped
    if not np.isfinite(values).all():
        raise MapSkipped("the map has NaN or infinite values")
    if values.min() < 0 or values.max() > 1:
        raise MapSkipped("the map has values outside [0, 1] (gradcam saves maps scaled to [0, 1])")
    if values.max() == values.min():
        raise MapSkipped("the map is constant: it places no attention")
    return values


def attention(values: np.ndarray) -> np.ndarray:
    """float64 (H, W): a map's attention, the map above its median (its background level), zero below: a
    faint floor that covers the whole photo then weighs nothing against the peaks; yours is not changed."""
    values = np.asarray(values, dtype=np.float64)
    return np.maximum(values - np.median(values), 0.0)


def axis_weights(size_in: int, size_out: int, sparse: bool = False):
    """float64 (size_out, size_in): the resampling of one axis as a matrix (each row sums to 1); with
    ``sparse`` a SciPy CSR matrix holding only the at most size_in + 2 size_out weights that are not zero
    (a map of one row and 10^8 columns needs no dense 64 x 10^8 matrix).

    Shrinking (``size_out <= size_in``) averages areas: output pixel o covers input coordinates
    [o s, (o + 1) s), s = size_in / size_out, and weighs each input pixel [i, i + 1) by the length of their
    overlap over s (the mean of the axis is kept exactly). Enlarging interpolates linearly between pixel
    centres, edges held: the convention of :func:`gradcam.inputs.resample.zoom_to` (order 1, grid_mode)."""
    if size_in == 1:
        rows, columns, values = np.arange(size_out), np.zeros(size_out, int), np.ones(size_out)
    elif size_out <= size_in:
        # input pixel i overlaps output pixels (i size_out) // size_in and, at most, the next one
        scale = size_in / size_out
        pixels = np.repeat(np.arange(size_in), 2)
        rows = np.minimum((pixels * size_out) // size_in + np.tile([0, 1], size_in), size_out - 1)
        low = rows * scale
        values = np.clip(np.minimum(low + scale, pixels + 1) - np.maximum(low, pixels), 0, None) / scale
        values[1::2] *= rows[1::2] != rows[::2]  # the last output pixel: counted once
        columns = pixels
    else:
        centres = np.clip((np.arange(size_out) + 0.5) * size_in / size_out - 0.5, 0, size_in - 1)
        left = np.minimum(np.floor(centres).astype(int), size_in - 2)
        rows = np.repeat(np.arange(size_out), 2)
        columns = np.stack([left, left + 1], axis=1).ravel()
        values = np.stack([1 - (centres - left), centres - left], axis=1).ravel()
    from scipy.sparse import csr_matrix

    weights = csr_matrix((values, (rows, columns)), shape=(size_out, size_in))  # duplicates summed
    return weights if sparse else weights.toarray()


def resample(values: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A 2-D map float (H, W) as float64 ``shape``, each axis by :func:`axis_weights` (area-averaged when
    shrinking, linear when enlarging); yours is not changed."""
    values = np.asarray(values, dtype=np.float64)
    if values.shape == tuple(shape):
        return values.copy()
    rows = axis_weights(values.shape[0], shape[0], sparse=True)
    columns = axis_weights(values.shape[1], shape[1], sparse=True)
    if shape[0] * values.shape[1] <= values.shape[0] * shape[1]:  # the smaller intermediate first
        return np.asarray((columns @ np.asarray(rows @ values).T).T)
    return np.asarray(rows @ np.asarray(columns @ values.T).T)


def band_weights(size: int, border: float) -> np.ndarray:
    """float64 (size,): the share of each pixel [i, i + 1) of an axis of ``size`` pixels that lies within
    ``border`` x size of either end."""
    width, pixels = border * size, np.arange(size, dtype=np.float64)
    near = np.clip(np.minimum(pixels + 1, width) - pixels, 0, 1)
    far = np.clip(pixels + 1 - np.maximum(pixels, size - width), 0, 1)
    return np.minimum(near + far, 1.0)


def border_share(values: np.ndarray, border: float) -> float | None:
    """The share of a map's mass (float (H, W), non-negative) within ``border`` x side of any edge: each
    pixel counts with the share of its area inside the band (a pixel as a unit square), so a flat map
    gives 1 - (1 - 2 border)^2 at any size (0.36 for 0.1). None when the map's mass is zero."""
    values = np.asarray(values, dtype=np.float64)
    total = float(values.sum())
    if not total > 0:
        return None
    rows, cols = band_weights(values.shape[0], border), band_weights(values.shape[1], border)
    interior = float((1 - rows) @ values @ (1 - cols))  # the band's complement is a rectangle: a product
    return min(max(1 - interior / total, 0.0), 1.0)


def pearson(a: np.ndarray, b: np.ndarray) -> float | None:
    """Pearson correlation of two maps of one shape, float64; None when either is constant."""
    a = np.ravel(np.asarray(a, dtype=np.float64))
    b = np.ravel(np.asarray(b, dtype=np.float64))
    a, b = a - a.mean(), b - b.mean()
    scale = math.sqrt(float(a @ a) * float(b @ b))
    if not scale > 0:
        return None
    return max(-1.0, min(1.0, float(a @ b) / scale))


def spearman(a: np.ndarray, b: np.ndarray) -> float | None:
    """Spearman rank correlation of two maps of one shape: the Pearson correlation of their ranks (ties
    given their mean rank); None when either map is constant."""
    from scipy.stats import rankdata

    return pearson(rankdata(np.ravel(a)), rankdata(np.ravel(b)))


def top_region(values: np.ndarray, share: float) -> np.ndarray:
    """bool (H, W): the map's top ``share`` -- every pixel at least as high as the k-th highest,
    k = ceil(share x pixels) (ties at the cut included), zero pixels never."""
    flat = np.ravel(values)
    count = max(1, math.ceil(share * flat.size))
    cut = np.partition(flat, flat.size - count)[flat.size - count]
    return (values >= cut) & (values > 0)


def iou(a: np.ndarray, b: np.ndarray) -> float | None:
    """Intersection over union of two bool masks of one shape; None when both are empty."""
    union = int(np.count_nonzero(a | b))
    return int(np.count_nonzero(a & b)) / union if union else None
