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
                compiled = self.numba_cfunc()
                self._keep, address = compiled, compiled.address
                saved = kernel_cache.save(key, compiled)
                self.origin = "compiled" if saved else "compiled, not cached"
            self.compiled = (self.caller or _caller)(kernel_cache.ctypes_function(self.signature, address))
        except Exception as exc:  # no wheel, a broken llvmlite...
            self.error = f"{type(exc).__name__}: {exc}"


    def numba_cfunc(self):
        """The kernel compiled by numba now. Its code calls numba's error helpers only where the kernel reports an
        exception, which none does (status 0 only, tested): it runs where numba is not loaded."""
        import numba

        from . import kernel_cache
        globals_ = dict(self.function.__globals__, carray=numba.carray)
        function = types.FunctionType(self.function.__code__, globals_, self.function.__name__)
        return numba.cfunc(kernel_cache.numba_signature(self.signature))(function)


#: addresses of the read-only views that :func:`weight_tables` hands out, by id (each held, so its id is not reused):
#: a view's memory cannot move (no resize, no new data), and ``array.ctypes.data`` costs ~3 us a call
_ADDRESSES: dict[int, tuple[np.ndarray, int]] = {}
_SCRATCH = threading.local()
_F32, _F64, _I64, _U8 = (np.dtype(kind) for kind in (np.float32, np.float64, np.int64, np.uint8))


def _pointer(array: np.ndarray, dtype, ndim: int) -> int:
    """The address of a C-contiguous ``dtype`` array of ``ndim`` dimensions (ValueError otherwise)."""
    flags = array.flags
    if array.dtype != dtype or array.ndim != ndim or not flags.c_contiguous:
        raise ValueError(f"the kernel takes a C-contiguous {np.dtype(dtype)} array of {ndim} dimensions")
    if flags.writeable or flags.owndata or ndim != 1 or array.nbytes > 65536:
        return array.ctypes.data
    held = _ADDRESSES.get(id(array))
    if held is None or held[0] is not array:
        if len(_ADDRESSES) >= 256:
            _ADDRESSES.clear()
        held = _ADDRESSES[id(array)] = (array, array.ctypes.data)
    return held[1]


def _scratch(width: int, columns: int) -> tuple:
    """This thread's scratch arrays for :func:`_kernel`, reused (grown where too small): (width, columns, the arrays,
    their addresses): products float64 (2 width), ends int64 (columns + 2; [0]: status), values float32, index int32."""
    held = getattr(_SCRATCH, "held", None)
    if held is None or held[0] < width or held[1] < columns:
        width, columns = max(width, held[0] if held else 1), max(columns, held[1] if held else 1)
        arrays = (np.empty(2 * width, np.float64), np.empty(columns + 2, np.int64), np.empty(columns, np.float32),
                  np.empty(columns, np.int32))
        held = _SCRATCH.held = (width, columns, arrays, *(array.ctypes.data for array in arrays))
    return held


def _caller(function):
    """``compiled(source, *tables, photo, blend, out, heatmap, keep_heatmap, colour)``: arrays checked (a photo
    not 4-byte aligned copied), then one call that checks each table index before use (ValueError, nothing written)."""

    def compiled(source, row0, row1, row_w0, row_w1, col0, col1, col_w0, col_w1, photo, blend, out, heatmap,
                 keep_heatmap, colour) -> None:
        (height, width), rows, columns = source.shape, len(row0), len(col0)
        tables = [_pointer(row0, _I64, 1), _pointer(row1, _I64, 1), _pointer(row_w0, _F64, 1),
                  _pointer(row_w1, _F64, 1), _pointer(col0, _I64, 1), _pointer(col1, _I64, 1),
                  _pointer(col_w0, _F64, 1), _pointer(col_w1, _F64, 1)]
        if not (height and width and len(row1) == len(row_w0) == len(row_w1) == rows
                and len(col1) == len(col_w0) == len(col_w1) == columns
                and (not keep_heatmap or heatmap.shape == (rows, columns))
                and (not colour or (photo.shape == out.shape == (rows, columns, 3) and blend.shape == (3, 65536)))):
            raise ValueError("the kernel's arrays do not agree in shape")
        scratch = _scratch(width, columns)
        photo_address = _pointer(photo, _U8, 3)
        if colour and photo_address % 4:  # the kernel reads the photo as 4-byte words: from an aligned copy
            photo_address = _pointer(photo := photo.copy(), _U8, 3)
        function(_pointer(source, _F32, 2), height, width, *tables[:4], rows, *tables[4:], columns,
                 photo_address, photo_address, _pointer(blend, _U8, 2), _pointer(out, _U8, 3),
                 _pointer(heatmap, _F32, 2), *scratch[3:], int(bool(keep_heatmap)), int(bool(colour)))
        if scratch[2][1][0]:
            raise ValueError("the kernel's index tables point outside the map")

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
    """Load :data:`KERNEL`, then :data:`ALSO_LOADED`, once per process, in a background daemon thread (cached:
    ~0.1 s; else numba's import and a compile, 2-6 s); ``wait`` blocks until done. Whether the kernel is ready
    now; nothing where :func:`available` is False."""
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
    """Wait at most ``timeout`` s for a load in progress (none started: no wait); whether it is ready."""
    with _LOCK:
        loader = _LOADER
    if loader is not None and KERNEL.compiled is None and timeout > 0:
        loader.join(timeout)
    return KERNEL.compiled is not None


def scipy_sizes_agree(in_shape: tuple[int, ...], out_shape: tuple[int, ...]) -> bool:
    """Whether ``scipy.ndimage.zoom`` gives exactly ``out_shape`` for ``zoom_to``'s factors (it rounds
    ``n_in * (n_out / n_in)``); else ``zoom_to`` crops or pads and the caller takes its path (never seen)."""
    return all(int(round(n_in * (n_out / n_in))) == n_out for n_in, n_out in zip(in_shape, out_shape))


def axis_weights(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """For each of ``n_out`` output positions along one axis: the two source indices (int64, clamped
    to [0, n_in - 1]) and their float64 weights, as ``scipy.ndimage.zoom`` computes them (see the module's
    docstring)."""
    zoom = np.float64(n_in) / np.float64(n_out)
    coordinate = (np.arange(n_out, dtype=np.float64) + 0.5) * zoom - 0.5
    start = np.floor(coordinate)
    first_weight = 1.0 - (coordinate - start)
    index = start.astype(np.int64)
    return np.clip(index, 0, n_in - 1), np.clip(index + 1, 0, n_in - 1), first_weight, 1.0 - first_weight


def weight_tables(in_shape: tuple[int, int], out_shape: tuple[int, int]) -> tuple[np.ndarray, ...]:
    """:func:`axis_weights` of the rows then the columns: the kernels' eight arrays (read-only, shared: the last
    few pairs of sizes are remembered)."""
    return _weight_tables(int(in_shape[0]), int(in_shape[1]), int(out_shape[0]), int(out_shape[1]))


@lru_cache(maxsize=16)
def _weight_tables(in_rows: int, in_columns: int, out_rows: int, out_columns: int) -> tuple[np.ndarray, ...]:
    tables = tuple(table.view() for table in (*axis_weights(in_rows, out_rows), *axis_weights(in_columns, out_columns)))
    for table in tables:  # views: their memory cannot move, so the kernel's caller remembers their addresses
        table.flags.writeable = False
    return tables


def _kernel(source_p, height, width, row0_p, row1_p, row_w0_p, row_w1_p, rows, col0_p, col1_p, col_w0_p,
            col_w1_p, columns, photo_p, words_p, blend_p, out_p, heatmap_p, products_p, ends_p, values_p, index_p,
            keep_heatmap, colour):  # pragma: no cover - compiled by numba
    """The one loop of the compiled path, over C pointers indexed flat (no wraparound: LLVM vectorises the values'
    loop); any table index outside the map: ends[0] = 1, nothing written, else 0. Value v: the float32 of the
    float64 sum, in SciPy's order, of (v * wy) * wx over the four neighbours (the products once per run of columns
    that share their source columns), clipped to [0, 1], into heatmap[i, j] (``keep_heatmap``) or values[j].
    ``colour``: index[j] = min(floor(v * 256), 255) * 256 (matplotlib's colour), then out[i, j, ch] = blend[ch,
    index[j] + photo[i, j, ch]] (blend uint8 (3, 65536)), four pixels from a flat multiple of 4 read as three
    uint32 ``words`` (the photo, 4-byte aligned; ~7% faster at 640x480 than byte loads). Scratch: :func:`_scratch`."""
    for i in range(max(rows, columns)):
        if ((i < rows and not (0 <= row0_p[i] < height and 0 <= row1_p[i] < height))
                or (i < columns and not (0 <= col0_p[i] < width and 0 <= col1_p[i] < width))):
            ends_p[0] = 1
            return
    ends_p[0], runs = 0, 1
    for j in range(1, columns + 1):
        if j == columns or col0_p[j] != col0_p[j - 1] or col1_p[j] != col1_p[j - 1]:
            ends_p[runs] = j  # runs end at ends[1:runs]
            runs += 1
    one, zero, scale, plane, plane2 = np.float32(1.0), np.float32(0.0), np.float32(256.0), 65536, 131072
    for i in range(rows):
        a, b, wa, wb = row0_p[i] * width, row1_p[i] * width, row_w0_p[i], row_w1_p[i]
        for x in range(width):
            products_p[x] = np.float64(source_p[a + x]) * wa
            products_p[width + x] = np.float64(source_p[b + x]) * wb
        row = i * columns
        values, at = (heatmap_p, row) if keep_heatmap else (values_p, 0)
        for r in range(1, runs):  # run r: the columns ends[r - 1] to ends[r] (ends[0] is 0 here)
            start, stop = ends_p[r - 1], ends_p[r]
            c, d = col0_p[start], col1_p[start]
            uc, ud, lc, ld = products_p[c], products_p[d], products_p[width + c], products_p[width + d]
            for j in range(start, stop):
                wc, wd = col_w0_p[j], col_w1_p[j]
                total = 0.0 + uc * wc + ud * wd + lc * wc + ld * wd  # left to right, as SciPy adds them
                values[at + j] = min(max(np.float32(total), zero), one)
        if colour:
            for j in range(columns):
                index_p[j] = min(max(np.int32(values[at + j] * scale), np.int32(0)), np.int32(255)) * np.int32(256)
            head = min(columns, (-row) % 4)  # row + j a multiple of 4 for j = head, head + 4... < tail
            tail = columns - (columns - head) % 4
            for t in range(head + columns - tail):  # the pixels before the first group and after the last
                j = t if t < head else tail + t - head
                base, p = index_p[j], (row + j) * 3
                out_p[p] = blend_p[base + photo_p[p]]
                out_p[p + 1] = blend_p[plane + base + photo_p[p + 1]]
                out_p[p + 2] = blend_p[plane2 + base + photo_p[p + 2]]  # blend: (3, 256 * 256)
            for j in range(head, tail, 4):  # pixels j..j+3: bytes p..p+11, the words q..q+2, read first
                p, q = (row + j) * 3, (row + j) // 4 * 3
                w0, w1, w2 = np.int64(words_p[q]), np.int64(words_p[q + 1]), np.int64(words_p[q + 2])
                b0, b1, b2, b3 = index_p[j], index_p[j + 1], index_p[j + 2], index_p[j + 3]
                out_p[p], out_p[p + 1] = blend_p[b0 + (w0 & 255)], blend_p[plane + b0 + (w0 >> 8 & 255)]
                out_p[p + 2], out_p[p + 3] = blend_p[plane2 + b0 + (w0 >> 16 & 255)], blend_p[b1 + (w0 >> 24)]
                out_p[p + 4], out_p[p + 5] = blend_p[plane + b1 + (w1 & 255)], blend_p[plane2 + b1 + (w1 >> 8 & 255)]
                out_p[p + 6], out_p[p + 7] = blend_p[b2 + (w1 >> 16 & 255)], blend_p[plane + b2 + (w1 >> 24)]
                out_p[p + 8], out_p[p + 9] = blend_p[plane2 + b2 + (w2 & 255)], blend_p[b3 + (w2 >> 8 & 255)]
                out_p[p + 10], out_p[p + 11] = blend_p[plane + b3 + (w2 >> 16 & 255)], blend_p[plane2 + b3 + (w2 >> 24)]


#: :func:`_kernel`'s C signature: "f32*" a pointer to float32 values, "i64" an int64, "i32" an int32...
SIGNATURE = ("f32*", "i64", "i64", "i64*", "i64*", "f64*", "f64*", "i64", "i64*", "i64*", "f64*", "f64*", "i64",
             "u8*", "u32*", "u8*", "u8*", "f32*", "f64*", "i64*", "f32*", "i32*", "i32", "i32")
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
