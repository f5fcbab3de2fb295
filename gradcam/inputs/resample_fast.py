"""The compiled path: :func:`~gradcam.inputs.resample.zoom_to` of a 2-D float32 map, bit for bit, in one loop
that numba compiles to a C function (called through ctypes, which releases the GIL: render threads run it side
by side) and that can also colour and blend the values over a photo (:mod:`gradcam.outputs.fused`); loaded
lazily, in the background, from its cached machine code (:mod:`.kernel_cache`) where it was compiled before.

What makes it exact is replaying ``scipy.ndimage.zoom``'s own float64 arithmetic (order 1, ``grid_mode=True``,
``mode="nearest"``, SciPy 1.6+): output row k maps to the source coordinate ``c = (k + 0.5) * zoom - 0.5``
with ``zoom = n_in / n_out``; the coordinate is *not* clamped, the two source indices ``floor(c)`` and
``floor(c) + 1`` are; the weights are ``w0 = 1 - (c - floor(c))`` and ``w1 = 1 - w0``; and a pixel is the
float64 sum, in SciPy's order, of ``(v * wy) * wx`` over the four neighbours, rounded once to float32.
Clamping the coordinate instead is off by an ulp at some edge pixels (167 in 20 maps zoomed to 640x480).

numba is optional: without it (or with ``GRADCAM_NO_JIT=1``) every caller takes the SciPy path, which gives
the same numbers. Importing this module imports neither numba nor SciPy; loading the cached kernel imports
llvmlite (numba's own dependency), not numba.
"""
from __future__ import annotations

import importlib.util
import os
import threading
import types
from functools import lru_cache

import numpy as np

#: numba.carray inside :func:`_kernel`, given to it when numba compiles it
carray = None


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
    """:func:`_kernel`, a loop of C pointers and sizes, compiled by numba (``numba.cfunc``) when :func:`load`
    runs; ``compiled`` stays None until then, and for good where loading fails. ``compiled(source, *tables,
    photo, blend, out, heatmap, keep_heatmap, colour)`` checks its arrays and calls the machine code through
    ctypes, which releases the GIL. The machine code is cached (:mod:`.kernel_cache`): a later process loads it
    with llvmlite alone (~0.08 s of CPU), without importing numba (its import and the cached kernel's load
    through numba's own cache took ~0.7-0.9 s). ``origin``: "cache", "compiled" or "compiled, not cached"."""

    def __init__(self, function, signature: tuple, caller=None):
        self.function, self.signature = function, signature
        self.caller = caller  # wraps the ctypes function (checks its arrays): _caller where None
        self.compiled = None
        self.error: str | None = None
        self.origin: str | None = None
        self._keep = None  # what keeps the machine code alive (the cfunc, or llvmlite's engine)

    def compile(self) -> None:
        """Load the cached machine code, else compile (and cache) it; on any failure remember why and stay on
        SciPy."""
        if self.compiled is not None or self.error is not None:
            return
        from . import kernel_cache

        try:
            key = kernel_cache.key(self.function)
            loaded = kernel_cache.load(key)
            if loaded is not None:
                self._keep, address = loaded
                self.origin = "cache"
            else:
                import numba

                function = types.FunctionType(self.function.__code__, dict(self.function.__globals__,
                                              carray=numba.carray), self.function.__name__)
                compiled = numba.cfunc(kernel_cache.numba_signature(self.signature))(function)
                self._keep, address = compiled, compiled.address
                saved = kernel_cache.save(key, compiled)
                self.origin = "compiled" if saved else "compiled, not cached"
            self.compiled = (self.caller or _caller)(kernel_cache.ctypes_function(self.signature, address))
        except Exception as exc:  # no wheel, a broken llvmlite...
            self.error = f"{type(exc).__name__}: {exc}"


def _pointer(array: np.ndarray, dtype, ndim: int) -> int:
    """The address of a C-contiguous ``dtype`` array of ``ndim`` dimensions (ValueError otherwise)."""
    if array.dtype != dtype or array.ndim != ndim or not array.flags.c_contiguous:
        raise ValueError(f"the kernel takes a C-contiguous {np.dtype(dtype)} array of {ndim} dimensions")
    return array.ctypes.data


def _within(size: int, *indices: np.ndarray) -> bool:
    """Whether every index is in [0, size)."""
    return all(not len(index) or (index.min() >= 0 and index.max() < size) for index in indices)


def _caller(function):
    """``compiled(source, *tables, photo, blend, out, heatmap, keep_heatmap, colour)`` over the C function:
    every array's dtype, layout and shape checked (the machine code checks no index), then one call."""

    def compiled(source, row0, row1, row_w0, row_w1, col0, col1, col_w0, col_w1, photo, blend, out, heatmap,
                 keep_heatmap, colour) -> None:
        (height, width), rows, columns = source.shape, len(row0), len(col0)
        tables = [_pointer(row0, np.int64, 1), _pointer(row1, np.int64, 1), _pointer(row_w0, np.float64, 1),
                  _pointer(row_w1, np.float64, 1), _pointer(col0, np.int64, 1), _pointer(col1, np.int64, 1),
                  _pointer(col_w0, np.float64, 1), _pointer(col_w1, np.float64, 1)]
        if not (height and width and len(row1) == len(row_w0) == len(row_w1) == rows
                and len(col1) == len(col_w0) == len(col_w1) == columns
                and _within(height, row0, row1) and _within(width, col0, col1)
                and (not keep_heatmap or heatmap.shape == (rows, columns))
                and (not colour or (photo.shape == out.shape == (rows, columns, 3) and blend.shape[0] == 3
                                    and blend.shape[1] >= 256 and blend.shape[1] % 256 == 0))):
            raise ValueError("the kernel's arrays do not agree in shape")
        scratch, ends = np.empty(2 * width + columns, np.float64), np.empty(max(columns, 1), np.int64)
        function(_pointer(source, np.float32, 2), height, width, *tables[:4], rows, *tables[4:], columns,
                 _pointer(photo, np.uint8, 3), _pointer(blend, np.uint8, 2), blend.shape[1] // 256,
                 _pointer(out, np.uint8, 3), _pointer(heatmap, np.float32, 2), scratch.ctypes.data, ends.ctypes.data,
                 int(bool(keep_heatmap)), int(bool(colour)))

    return compiled


_LOCK = threading.Lock()
_LOADER: threading.Thread | None = None
#: other compiled kernels that the loader of :data:`KERNEL` loads after it (:mod:`.resize_fast` adds its own)
ALSO_LOADED: list[LazyKernel] = []


def _load_all() -> None:
    KERNEL.compile()
    for kernel in list(ALSO_LOADED):
        kernel.compile()


def load(wait: bool) -> bool:
    """Load :data:`KERNEL`, then those of :data:`ALSO_LOADED`, once per process, in a background daemon thread,
    so that nothing waits for it (the cached machine code: ~0.1 s; the first time numba's import and a compile,
    2-6 s); ``wait`` blocks until it is done. Returns whether the kernel is ready now. Does nothing where :func:`available` is False."""
    global _LOADER
    if not available():
        return False
    with _LOCK:
        if _LOADER is None:
            _LOADER = threading.Thread(target=_load_all, name="gradcam-jit", daemon=True)
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
    """:func:`axis_weights` of the rows then the columns: eight arrays, the kernels' arguments (read-only, and
    shared: the last few pairs of sizes are remembered, as a folder's photos mostly share theirs)."""
    return _weight_tables(int(in_shape[0]), int(in_shape[1]), int(out_shape[0]), int(out_shape[1]))


@lru_cache(maxsize=16)
def _weight_tables(in_rows: int, in_columns: int, out_rows: int, out_columns: int) -> tuple[np.ndarray, ...]:
    tables = (*axis_weights(in_rows, out_rows), *axis_weights(in_columns, out_columns))
    for table in tables:
        table.flags.writeable = False
    return tables


def _kernel(source_p, height, width, row0_p, row1_p, row_w0_p, row_w1_p, rows, col0_p, col1_p, col_w0_p,
            col_w1_p, columns, photo_p, blend_p, colours, out_p, heatmap_p, scratch_p, ends_p, keep_heatmap,
            colour):  # pragma: no cover - compiled by numba
    """The one loop of the compiled path, row by row, over C arrays (pointers and sizes). Each value v is the
    float32 of the float64 sum, in SciPy's order, of (v * wy) * wx over the four neighbours (``v * wy`` is the
    same product for every column: taken once per source cell and row; the output columns that share their two
    source columns form a run whose four products are taken once), clipped to [0, 1] in float32 as ``upsample``
    clips; ``keep_heatmap``: heatmap[i, j] = v. ``colour``: out[i, j, ch] = blend[ch, index * 256 + photo[i, j,
    ch]] with index = min(floor(v * 256), 255), matplotlib's colour of v. ``scratch``: float64 (2 width +
    columns); ``ends``: int64 (columns)."""
    source = carray(source_p, (height, width))
    row0, row1 = carray(row0_p, rows), carray(row1_p, rows)
    row_w0, row_w1 = carray(row_w0_p, rows), carray(row_w1_p, rows)
    col0, col1 = carray(col0_p, columns), carray(col1_p, columns)
    col_w0, col_w1 = carray(col_w0_p, columns), carray(col_w1_p, columns)
    scratch, ends = carray(scratch_p, 2 * width + columns), carray(ends_p, columns)
    upper, lower, values = scratch[:width], scratch[width : 2 * width], scratch[2 * width :]
    runs = 0
    for j in range(1, columns + 1):
        if j == columns or col0[j] != col0[j - 1] or col1[j] != col1[j - 1]:
            ends[runs] = j
            runs += 1
    one, zero, scale = np.float32(1.0), np.float32(0.0), np.float32(256.0)
    for i in range(rows):
        a, b, wa, wb = row0[i], row1[i], row_w0[i], row_w1[i]
        for x in range(width):
            upper[x] = np.float64(source[a, x]) * wa
            lower[x] = np.float64(source[b, x]) * wb
        start = 0
        for r in range(runs):
            stop = ends[r]
            uc, ud, lc, ld = upper[col0[start]], upper[col1[start]], lower[col0[start]], lower[col1[start]]
            for j in range(start, stop):
                wc, wd = col_w0[j], col_w1[j]
                total = 0.0
                total += uc * wc
                total += ud * wd
                total += lc * wc
                total += ld * wd
                values[j] = min(max(np.float32(total), zero), one)  # a float32 value, held exactly in float64
            start = stop
        if keep_heatmap:
            heatmap = carray(heatmap_p, (rows, columns))
            for j in range(columns):
                heatmap[i, j] = np.float32(values[j])
        if colour:
            photo, out = carray(photo_p, (rows, columns, 3)), carray(out_p, (rows, columns, 3))
            blend = carray(blend_p, (3, colours * 256))
            for j in range(columns):
                base = min(int(np.float32(values[j]) * scale), 255) * 256
                out[i, j, 0] = blend[0, base + photo[i, j, 0]]
                out[i, j, 1] = blend[1, base + photo[i, j, 1]]
                out[i, j, 2] = blend[2, base + photo[i, j, 2]]


#: :func:`_kernel`'s C signature: "f32*" a pointer to float32 values, "i64" an int64, "i32" an int32...
SIGNATURE = ("f32*", "i64", "i64", "i64*", "i64*", "f64*", "f64*", "i64", "i64*", "i64*", "f64*", "f64*", "i64",
             "u8*", "u8*", "i64", "u8*", "f32*", "f64*", "i64*", "i32", "i32")
#: the compiled loop: compiled(source, *tables, photo, blend, out, heatmap, keep_heatmap, colour)
KERNEL = LazyKernel(_kernel, SIGNATURE)
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
