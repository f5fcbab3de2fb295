"""The compiled path: :func:`~gradcam.inputs.resample.zoom_to` of a 2-D float32 map, bit for bit, in one loop
that numba compiles (``nogil``: render threads run it side by side) and that can also colour and blend the
values over a photo (:mod:`gradcam.outputs.fused`); loaded lazily, in the background.

What makes it exact is replaying ``scipy.ndimage.zoom``'s own float64 arithmetic (order 1, ``grid_mode=True``,
``mode="nearest"``, SciPy 1.6+): output row k maps to the source coordinate ``c = (k + 0.5) * zoom - 0.5``
with ``zoom = n_in / n_out``; the coordinate is *not* clamped, the two source indices ``floor(c)`` and
``floor(c) + 1`` are; the weights are ``w0 = 1 - (c - floor(c))`` and ``w1 = 1 - w0``; and a pixel is the
float64 sum, in SciPy's order, of ``(v * wy) * wx`` over the four neighbours, rounded once to float32.
Clamping the coordinate instead is off by an ulp at some edge pixels (167 in 20 maps zoomed to 640x480).

numba is optional: without it (or with ``GRADCAM_NO_JIT=1``) every caller takes the SciPy path, which gives
the same numbers. Importing this module imports neither numba nor SciPy.
"""
from __future__ import annotations

import importlib.util
import os
import threading

import numpy as np


def available() -> bool:
    """Whether the compiled path can be used here: numba installed and not switched off
    (``GRADCAM_NO_JIT=1``, or numba's own ``NUMBA_DISABLE_JIT=1``, under which it would run as slow Python)."""
    if any(os.environ.get(name, "") not in ("", "0") for name in ("GRADCAM_NO_JIT", "NUMBA_DISABLE_JIT")):
        return False
    try:
        return importlib.util.find_spec("numba") is not None
    except (ImportError, ValueError):
        return False


class LazyKernel:
    """A plain Python loop compiled by numba (``nogil``, ``cache=True``, one explicit signature) when
    :func:`load` runs; ``compiled`` stays None until then, and for good where numba fails.

    ``arguments``: one entry per argument: "bool", or (dtype name, ndim) of a C-contiguous array the loop
    only reads (typed read-only: read-only and writable arrays both pass), or (dtype name, ndim, "out") of
    one it writes."""

    def __init__(self, function, arguments: tuple):
        self.function, self.arguments = function, arguments
        self.compiled = None
        self.error: str | None = None

    def compile(self) -> None:
        """Compile (or load numba's cache of) the loop; on any failure remember why and stay on SciPy."""
        if self.compiled is not None or self.error is not None:
            return
        try:
            import numba
            from numba import types

            signature = types.void(*(types.boolean if spec == "bool" else
                                     types.Array(getattr(types, spec[0]), spec[1], "C", readonly=len(spec) == 2)
                                     for spec in self.arguments))
            try:
                self.compiled = numba.njit(signature, nogil=True, cache=True)(self.function)
            except RuntimeError:  # no folder to cache in (the package's and the user's read-only): compile
                self.compiled = numba.njit(signature, nogil=True)(self.function)
        except Exception as exc:  # no wheel, a broken llvmlite...
            self.error = f"{type(exc).__name__}: {exc}"


_LOCK = threading.Lock()
_LOADER: threading.Thread | None = None


def load(wait: bool) -> bool:
    """Compile :data:`KERNEL` (once per process) in a background daemon thread, so that nothing waits for
    numba's import (about 0.3-0.5 s) and the kernel's load from numba's cache (0.3 s; the first time a compile,
    1-2 s); ``wait`` blocks until it is done. Returns whether the kernel is ready now. Does nothing where
    :func:`available` is False."""
    global _LOADER
    if not available():
        return False
    with _LOCK:
        if _LOADER is None:
            _LOADER = threading.Thread(target=KERNEL.compile, name="gradcam-jit", daemon=True)
            _LOADER.start()
        loader = _LOADER
    if wait:
        loader.join()
    return KERNEL.compiled is not None


def wait_loaded(timeout: float) -> bool:
    """Wait at most ``timeout`` seconds for a load in progress (none started: no wait); whether the kernel
    is ready now."""
    with _LOCK:
        loader = _LOADER
    if loader is not None and KERNEL.compiled is None and timeout > 0:
        loader.join(timeout)
    return KERNEL.compiled is not None


def scipy_sizes_agree(in_shape: tuple[int, ...], out_shape: tuple[int, ...]) -> bool:
    """Whether ``scipy.ndimage.zoom`` gives exactly ``out_shape`` for the factors ``zoom_to`` asks (it
    rounds ``n_in * (n_out / n_in)``); where it would not, ``zoom_to`` crops or pads and the caller takes
    its path (never seen for maps up to 64 cells and photos up to 20,000 pixels)."""
    return all(int(round(n_in * (n_out / n_in))) == n_out for n_in, n_out in zip(in_shape, out_shape))


def axis_weights(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """For each of ``n_out`` output positions along one axis: the two source indices (int64, clamped
    to [0, n_in - 1]) and their float64 weights, as ``scipy.ndimage.zoom`` computes them (see the module's
    docstring)."""
    zoom = np.float64(n_in) / np.float64(n_out)
    coordinate = (np.arange(n_out, dtype=np.float64) + 0.5) * zoom - 0.5
    start = np.floor(coordinate)
    first_weight = 1.0 - (coordinate - start)
    second_weight = 1.0 - first_weight
    first = np.clip(start.astype(np.int64), 0, n_in - 1)
    second = np.clip(start.astype(np.int64) + 1, 0, n_in - 1)
    return first, second, first_weight, second_weight


def weight_tables(in_shape: tuple[int, int], out_shape: tuple[int, int]) -> tuple[np.ndarray, ...]:
    """:func:`axis_weights` of the rows then the columns: eight arrays, the kernels' arguments."""
    return (*axis_weights(int(in_shape[0]), int(out_shape[0])), *axis_weights(int(in_shape[1]), int(out_shape[1])))


def _loop(source, row0, row1, row_w0, row_w1, col0, col1, col_w0, col_w1, photo, blend, out, heatmap,
          keep_heatmap, colour):  # pragma: no cover - compiled by numba
    """The one loop of the compiled path, row by row. Each value v is the float32 of the float64 sum, in
    SciPy's order, of (v * wy) * wx over the four neighbours (``v * wy`` is the same product for every
    column: taken once per source cell and row), clipped to [0, 1] in float32 as ``upsample`` clips;
    ``keep_heatmap``: heatmap[i, j] = v. ``colour``: out[i, j, ch] = blend[ch, index * 256 + photo[i, j, ch]]
    with index = min(floor(v * 256), 255), matplotlib's colour of v. A row's values go to a small buffer
    first (no branch in the loop over its pixels)."""
    width = source.shape[1]
    upper = np.empty(width, np.float64)
    lower = np.empty(width, np.float64)
    values = np.empty(col0.shape[0], np.float32)
    one, zero, scale = np.float32(1.0), np.float32(0.0), np.float32(256.0)
    for i in range(row0.shape[0]):
        a, b, wa, wb = row0[i], row1[i], row_w0[i], row_w1[i]
        for x in range(width):
            upper[x] = np.float64(source[a, x]) * wa
            lower[x] = np.float64(source[b, x]) * wb
        for j in range(col0.shape[0]):
            c, d, wc, wd = col0[j], col1[j], col_w0[j], col_w1[j]
            total = 0.0
            total += upper[c] * wc
            total += upper[d] * wd
            total += lower[c] * wc
            total += lower[d] * wd
            values[j] = min(max(np.float32(total), zero), one)
        if keep_heatmap:
            heatmap[i, :] = values
        if colour:
            for j in range(col0.shape[0]):
                base = min(int(values[j] * scale), 255) * 256
                out[i, j, 0] = blend[0, base + photo[i, j, 0]]
                out[i, j, 1] = blend[1, base + photo[i, j, 1]]
                out[i, j, 2] = blend[2, base + photo[i, j, 2]]


#: the eight weight tables' argument types (:func:`weight_tables`)
TABLES = (("int64", 1),) * 2 + (("float64", 1),) * 2 + (("int64", 1),) * 2 + (("float64", 1),) * 2
#: the compiled loop: (source, *tables, photo, blend, out, heatmap, keep_heatmap, colour)
KERNEL = LazyKernel(_loop, (("float32", 2), *TABLES, ("uint8", 3), ("uint8", 2), ("uint8", 3, "out"),
                            ("float32", 2, "out"), "bool", "bool"))
#: what the loop is given for the photo, the blend table and the overlay when it only upsamples
_NO_PHOTO, _NO_BLEND, _NO_OUT = np.zeros((1, 1, 3), np.uint8), np.zeros((3, 1), np.uint8), np.zeros((1, 1, 3), np.uint8)


def upsample2d(array: np.ndarray, shape: tuple[int, int]) -> np.ndarray | None:
    """``zoom_to(array, shape)`` of a float32 (h, w) map, clipped to [0, 1] (``upsample``): float32 (H, W),
    bit for bit, through the compiled loop; None when it is not loaded (yet), or for a map with NaN or
    infinity or sizes that do not suit it: the caller then takes SciPy's path. Never starts a load."""
    kernel = KERNEL.compiled
    if (kernel is None or array.dtype != np.float32 or array.ndim != 2 or 0 in array.shape or 0 in shape
            or not scipy_sizes_agree(array.shape, shape) or not np.isfinite(array).all()):
        return None
    heatmap = np.empty((int(shape[0]), int(shape[1])), np.float32)
    kernel(np.ascontiguousarray(array), *weight_tables(array.shape, heatmap.shape), _NO_PHOTO, _NO_BLEND, _NO_OUT,
           heatmap, True, False)
    return heatmap
