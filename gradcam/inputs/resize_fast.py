"""Pillow's bilinear resize of a uint8 RGB photo (``Image.resize(size, Image.BILINEAR)``), bit for bit, in a loop
that numba compiles to a C function (cached and loaded like :mod:`.resample_fast`'s kernel, called through
ctypes, which releases the GIL). A folder run makes each model input (and each ``--max-size`` photo) with it:
a 640x480 photo to 224x224 in 1.0 ms of CPU where Pillow takes 2.3, 12 megapixels in 19 ms instead of 48
(``benchmarks/resize.py``, interleaved medians on a 2-core AMD EPYC).

What makes it exact is replaying Pillow's ``libImaging/Resample.c`` (Pillow 6 to 13): the filter's
coefficients computed in float64 as ``precompute_coeffs`` does (support 1 scaled by the reduction, the centre
``(x + 0.5) * scale``, the window ``[trunc(centre - support + 0.5), trunc(centre + support + 0.5))``, the
weights ``1 - |x + xmin - centre + 0.5| / filterscale`` normalised by their sum), turned into 22-bit fixed point
(``trunc(0.5 + k * 2**22)``), and each output value ``(2**21 + sum(pixel * k)) >> 22`` clipped to [0, 255]: an
integer sum, exact in any order. The two passes run in Pillow's order (horizontal first unless the height
shrinks by more than twice as many pixels as the width) with the 8-bit rounding between them.

Pillow itself is the check: :func:`resize` is used only once a comparison against Pillow on photos of several
shapes (:func:`agrees_with_pillow`) has passed in this process; otherwise, and while the kernel is not loaded
(a run of a photo or two never loads it), callers take Pillow's path. The pixels are the same either way.
"""
from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from .resample_fast import ALSO_LOADED, LazyKernel

#: Pillow's fixed-point precision for 8-bit images (``32 - 8 - 2``)
PRECISION_BITS = 22


#: tables of at most this many weights are remembered (a folder's photos mostly share their sizes); :func:`resize`
#: leaves a larger one (a photo thousands of times longer than its resize: 1 x 100,000,000 pixels to 224 takes
#: 200 million) to Pillow, whose C loop weighs it faster (1 x 30,000,000: 1.6 s, 7.4 s through NumPy's weights)
CACHED_WEIGHTS = 1 << 20
#: output positions are weighted this many weights at a time (the float64 temporaries' size; Pillow's own table
#: is as large as the whole int32 table, twice)
_CHUNK_WEIGHTS = 1 << 16


def coefficients(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pillow's bilinear coefficients for one axis: (bounds int64 (out_size, 2): the first source index and the
    number of taps of each output position; weights int32 (out_size, ksize) in 22-bit fixed point, zero past
    each position's taps). Read-only; small tables are shared from call to call."""
    in_size, out_size = int(in_size), int(out_size)
    return (_cached if weight_count(in_size, out_size) <= CACHED_WEIGHTS else _coefficients)(in_size, out_size)


def weight_count(in_size: int, out_size: int) -> int:
    """The size of :func:`coefficients`' weight table: out_size x ksize."""
    return out_size * (int(math.ceil(max(float(np.float32(in_size)) / out_size, 1.0))) * 2 + 1)


def _coefficients(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray]:
    scale = float(np.float32(in_size)) / out_size  # Pillow's box edges are C floats
    filterscale = max(scale, 1.0)
    support = 1.0 * filterscale
    ksize = int(math.ceil(support)) * 2 + 1
    centre = 0.0 + (np.arange(out_size, dtype=np.float64) + 0.5) * scale
    first = np.maximum(np.trunc(centre - support + 0.5).astype(np.int64), 0)
    last = np.minimum(np.trunc(centre + support + 0.5).astype(np.int64), in_size)
    taps = last - first
    fixed = np.empty((out_size, ksize), np.int32)
    step = max(1, _CHUNK_WEIGHTS // ksize)
    for start in range(0, out_size, step):
        rows = slice(start, start + step)
        fixed[rows] = _fixed_weights(first[rows], taps[rows], centre[rows], ksize, 1.0 / filterscale)
    bounds = np.stack([first, taps], axis=1)
    for table in (bounds, fixed):
        table.flags.writeable = False
    return bounds, fixed


_cached = lru_cache(maxsize=32)(_coefficients)


def _fixed_weights(first: np.ndarray, taps: np.ndarray, centre: np.ndarray, ksize: int, inverse: float) -> np.ndarray:
    """int32 (rows, ksize): the 22-bit weights of output positions whose windows start at ``first`` (int64
    (rows,)) with ``taps`` taps around ``centre`` (float64 (rows,)), as Pillow's ``precompute_coeffs`` and
    ``normalize_coeffs_8bpc`` make them."""
    offsets = np.arange(ksize, dtype=np.int64)
    position = ((offsets[None, :] + first[:, None]) - centre[:, None] + 0.5) * inverse
    weights = np.where(np.abs(position) < 1.0, 1.0 - np.abs(position), 0.0)
    weights[offsets[None, :] >= taps[:, None]] = 0.0
    # summed in Pillow's order: accumulate adds left to right (adding the zeros past the taps changes nothing)
    total = np.add.accumulate(weights, axis=1)[:, -1]
    weights = np.where(total[:, None] != 0.0, weights / np.where(total == 0.0, 1.0, total)[:, None], weights)
    scaled = weights * float(1 << PRECISION_BITS)
    return np.trunc(np.where(weights < 0, -0.5 + scaled, 0.5 + scaled)).astype(np.int32)


def horizontal_first(in_size: tuple[int, int], out_size: tuple[int, int]) -> bool:
    """Pillow's order of the passes for (height, width) sizes: horizontal first unless the height shrinks by
    more than twice as many pixels as the width."""
    (in_h, in_w), (out_h, out_w) = in_size, out_size
    return not (in_h - out_h > 0 and in_h - out_h > (in_w - out_w) * 2)


def _kernel(source_p, in_h, in_w, out_p, out_h, out_w, hbounds_p, hweights_p, hsize, vbounds_p, vweights_p, vsize,
            temp_p, sums_p, order):  # pragma: no cover - compiled by numba
    """Pillow's two passes over a uint8 (in_h, in_w, 3) photo into a uint8 (out_h, out_w, 3) one, over C pointers
    indexed flat (no negative-index wraparound, so LLVM vectorises). ``order``: 0 horizontal then vertical, 1
    vertical then horizontal, 2 horizontal only, 3 vertical only. ``temp``: the first pass's result (in_h x out_w
    or out_h x in_w pixels); ``sums``: int32 (3 max(in_w, out_w)). Sums of integers: any order of the terms gives
    Pillow's value, so the vertical pass runs along whole rows (SIMD) and the horizontal one two rows at a time."""
    half = np.int32(1 << 21)
    for step in range(3):
        if step == 1:  # horizontal: columns in_w -> out_w
            if order == 3:
                continue
            rows = out_h if order == 1 else in_h
            src = temp_p if order == 1 else source_p
            dst = temp_p if order == 0 else out_p
            width_in, width_out = in_w * 3, out_w * 3
            for y in range(0, rows, 2):  # two rows at a time share the weights' loads
                a = y * width_in
                b = min(y + 1, rows - 1) * width_in
                oa = y * width_out
                ob = min(y + 1, rows - 1) * width_out
                for x in range(out_w):
                    first, taps, weights = hbounds_p[2 * x] * 3, hbounds_p[2 * x + 1], x * hsize
                    s0 = half
                    s1 = half
                    s2 = half
                    n0 = half
                    n1 = half
                    n2 = half
                    for t in range(taps):
                        k = hweights_p[weights + t]
                        c = first + 3 * t
                        s0 += np.int32(src[a + c]) * k
                        s1 += np.int32(src[a + c + 1]) * k
                        s2 += np.int32(src[a + c + 2]) * k
                        n0 += np.int32(src[b + c]) * k
                        n1 += np.int32(src[b + c + 1]) * k
                        n2 += np.int32(src[b + c + 2]) * k
                    dst[oa + 3 * x] = min(max(s0 >> 22, 0), 255)
                    dst[oa + 3 * x + 1] = min(max(s1 >> 22, 0), 255)
                    dst[oa + 3 * x + 2] = min(max(s2 >> 22, 0), 255)
                    dst[ob + 3 * x] = min(max(n0 >> 22, 0), 255)
                    dst[ob + 3 * x + 1] = min(max(n1 >> 22, 0), 255)
                    dst[ob + 3 * x + 2] = min(max(n2 >> 22, 0), 255)
        else:  # vertical: rows in_h -> out_h, along whole rows
            if not ((step == 0 and (order == 1 or order == 3)) or (step == 2 and order == 0)):
                continue
            width = in_w * 3 if step == 0 else out_w * 3
            src = source_p if step == 0 else temp_p
            dst = out_p if (step == 2 or order == 3) else temp_p
            for y in range(out_h):
                first, taps = vbounds_p[2 * y], vbounds_p[2 * y + 1]
                for c in range(width):
                    sums_p[c] = half
                for t in range(taps):
                    k = vweights_p[y * vsize + t]
                    line = (first + t) * width
                    for c in range(width):
                        sums_p[c] += np.int32(src[line + c]) * k
                row = y * width
                for c in range(width):
                    dst[row + c] = min(max(sums_p[c] >> 22, 0), 255)


#: :func:`_kernel`'s C signature (see :mod:`.kernel_cache`)
SIGNATURE = ("u8*", "i64", "i64", "u8*", "i64", "i64", "i64*", "i32*", "i64", "i64*", "i32*", "i64", "u8*", "i32*", "i32")
KERNEL = LazyKernel(_kernel, SIGNATURE)


def _caller(function):
    """``compiled(photo, out)`` over the C function: shapes checked (the machine code checks no index),
    Pillow's coefficients and pass order looked up, then one call."""

    def compiled(photo: np.ndarray, out: np.ndarray) -> None:
        (in_h, in_w), (out_h, out_w) = photo.shape[:2], out.shape[:2]
        if not (photo.dtype == out.dtype == np.uint8 and photo.ndim == out.ndim == 3 and photo.shape[2] == out.shape[2]
                == 3 and photo.flags.c_contiguous and out.flags.c_contiguous and min(in_h, in_w, out_h, out_w) > 0):
            raise ValueError("the resize kernel takes C-contiguous uint8 (H, W, 3) arrays")
        need_h, need_v = in_w != out_w, in_h != out_h
        first = horizontal_first((in_h, in_w), (out_h, out_w))
        order = (0 if first else 1) if need_h and need_v else (2 if need_h else 3)
        hbounds, hweights = coefficients(in_w, out_w)
        vbounds, vweights = coefficients(in_h, out_h)
        temp = np.empty(in_h * out_w * 3 if order == 0 else (out_h * in_w * 3 if order == 1 else 1), np.uint8)
        sums = np.empty(max(in_w, out_w) * 3, np.int32)
        function(photo.ctypes.data, in_h, in_w, out.ctypes.data, out_h, out_w, hbounds.ctypes.data,
                 hweights.ctypes.data, hweights.shape[1], vbounds.ctypes.data, vweights.ctypes.data, vweights.shape[1],
                 temp.ctypes.data, sums.ctypes.data, order)

    return compiled


#: (photo (height, width), resized (height, width)) pairs :func:`agrees_with_pillow` checks: both orders of the
#: passes, each pass alone, enlarging, shrinking by more than 16 (wide filters), one pixel
CHECKED_SIZES = (((480, 640), (224, 224)), ((640, 90), (224, 224)), ((37, 53), (224, 224)), ((300, 400), (300, 224)),
                 ((300, 400), (100, 400)), ((1, 1), (3, 5)), ((300, 701), (9, 20)), ((5, 700), (224, 224)))


def agrees_with_pillow(compiled) -> bool:
    """Whether ``compiled`` gives Pillow's pixels, byte for byte, for random photos of :data:`CHECKED_SIZES`."""
    from PIL import Image

    rng = np.random.default_rng(20261202)
    for (in_h, in_w), (out_h, out_w) in CHECKED_SIZES:
        photo = rng.integers(0, 256, (in_h, in_w, 3), dtype=np.uint8)
        out = np.empty((out_h, out_w, 3), np.uint8)
        compiled(photo, out)
        if not np.array_equal(out, np.asarray(Image.fromarray(photo).resize((out_w, out_h), Image.BILINEAR))):
            return False
    return True


def _checked_caller(function):
    """:func:`_caller`, once it has given Pillow's pixels for every checked size (RuntimeError otherwise: the
    kernel then stays unloaded, and callers take Pillow's path)."""
    compiled = _caller(function)
    if not agrees_with_pillow(compiled):
        raise RuntimeError("the compiled resize does not give this Pillow's pixels")
    return compiled


KERNEL.caller = _checked_caller
ALSO_LOADED.append(KERNEL)  # loaded by resample_fast's loader, after the render's kernel


def resize(photo: np.ndarray, size: tuple[int, int]) -> np.ndarray | None:
    """``Image.fromarray(photo).resize((width, height), Image.BILINEAR)``'s pixels through the compiled loop.

    Args:
        photo: uint8 (H, W, 3), only read; size: (height, width), each at least 1.

    Returns:
        a new uint8 (height, width, 3) array, or None where the kernel is not loaded (yet) or the arrays are
        not of that kind, or the weight tables would hold more than :data:`CACHED_WEIGHTS`: the caller then
        resizes with Pillow. Never starts a load.
    """
    kernel = KERNEL.compiled
    if (kernel is None or not isinstance(photo, np.ndarray) or photo.dtype != np.uint8 or photo.ndim != 3
            or photo.shape[2] != 3 or 0 in photo.shape or min(size) < 1):
        return None  # not loaded, or what Pillow alone decides (and refuses with its own error)
    if weight_count(photo.shape[1], int(size[1])) + weight_count(photo.shape[0], int(size[0])) > CACHED_WEIGHTS:
        return None  # Pillow weighs a table this large faster
    out = np.empty((int(size[0]), int(size[1]), 3), np.uint8)
    if out.shape == photo.shape:
        out[...] = photo
        return out
    kernel(np.ascontiguousarray(photo), out)
    return out
