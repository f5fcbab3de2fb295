"""The fused overlay render: a class activation map upsampled to the photo, coloured and blended over it in one
compiled pass (the numba loop of :mod:`gradcam.inputs.resample_fast`, run without the GIL) that writes the uint8 overlay
directly, with no photo-sized float array unless the heatmap itself is wanted (``--save-npy``). Bit for bit the
reference path (:func:`reference_render`: SciPy's zoom, the colormap lookup and the float32 blend of
:mod:`.colour`): the upsample replays SciPy's arithmetic, the colour index is matplotlib's ``floor(v * 256)``
(1.0 -> 255) and the blend is :func:`~gradcam.outputs.colour._blend_table`'s uint8 table, indexed the same way.

numba is loaded lazily: renders take the reference path until the process has rendered
:data:`WARM_AFTER_PIXELS` through it (a single-photo run never imports numba); the next render starts a
background thread that imports numba and loads (the first time: compiles and caches) the kernel, and
renders take the fused path once it is ready. A run that plans that many pixels starts the load at its start
(:func:`expect`), and its renders wait for it, at most :data:`LOAD_WAIT_SECONDS` from the load's start, rather
than draw through the reference path meanwhile. The outputs are the same either way; only the time differs.
"""
from __future__ import annotations

import threading
import time

import numpy as np

from ..explainers.heatmap import normalize, reference_upsample, upsample
from ..inputs import resample_fast, resize_fast  # noqa: F401 - resize_fast's kernel is loaded with the render's
from . import png_huffman  # noqa: F401 - so are the Huffman PNG encoder's
from .colour import _blend_table, _lookup_table, overlay

#: photo pixels a process renders through the reference path before the kernel is loaded in the background
#: (~80 photos of 640x480, two of 12 megapixels): loading its cached machine code costs ~0.1 s of CPU, but the
#: first load on a machine compiles it (numba, 2-6 s), which a run of a photo or two must not pay
WARM_AFTER_PIXELS = 24_000_000

#: how long the renders of a run that :func:`expect`\ s many pixels wait, from the start of the kernel's load,
#: for the kernel rather than draw through the reference path: loading it took about 1 s of CPU through numba's
#: own cache (0.1 s from gradcam's since; 0.5-2 s of wall time on a busy 2-core machine), and overlays drawn
#: meanwhile through SciPy cost 5-8x the fused path's CPU (47 of 192 photos of 640x480 in
#: benchmarks/throughput.py: +2-3 CPU-ms a photo). Where the kernel is not cached yet (the first run after installing: a 2-6 s compile) the renders
#: stop waiting at this deadline and take the reference path until it is compiled.
LOAD_WAIT_SECONDS = 3.0

_REFERENCE_PIXELS = [0]
_COUNT_LOCK = threading.Lock()
#: time.monotonic() until which renders wait for the kernel's load (set by :func:`expect`)
_WAIT_UNTIL = [0.0]


def available() -> bool:
    """Whether numba is installed and not switched off here (it may not be loaded yet)."""
    return resample_fast.available()


def prepare() -> bool:
    """Load the kernel now and wait for it (tests, benchmarks): True when the fused path is ready."""
    return resample_fast.load(wait=True)


def expect(pixels: int) -> None:
    """A run says how many photo pixels it plans to draw: from :data:`WARM_AFTER_PIXELS` on, the kernel's
    background load starts now, and renders wait for it (at most :data:`LOAD_WAIT_SECONDS` from now), so the
    run's first overlays already take the fused path. Never waits itself."""
    if pixels >= WARM_AFTER_PIXELS and resample_fast.KERNEL.compiled is None:
        if not resample_fast.load(wait=False):
            _WAIT_UNTIL[0] = max(_WAIT_UNTIL[0], time.monotonic() + LOAD_WAIT_SECONDS)


def _ready(pixels: int) -> bool:
    """Whether the fused kernel is compiled. If not, waits for a load that :func:`expect` started (until its
    deadline); else counts this render's ``pixels`` and starts the background load once the reference path
    has rendered :data:`WARM_AFTER_PIXELS` before it, without waiting."""
    if resample_fast.KERNEL.compiled is not None:
        return True
    remaining = _WAIT_UNTIL[0] - time.monotonic()
    if remaining > 0 and resample_fast.wait_loaded(remaining):
        return True
    with _COUNT_LOCK:
        before = _REFERENCE_PIXELS[0]
        _REFERENCE_PIXELS[0] += pixels
    if before >= WARM_AFTER_PIXELS:
        resample_fast.load(wait=False)
    return False


_BUFFERS = threading.local()


def _buffer(name: str, shape: tuple[int, ...], dtype) -> np.ndarray:
    """A per-thread scratch array of ``shape``, reused from call to call (a fresh 36 MB array at 12 MP
    costs page faults every time); it grows to the largest photo a thread has rendered and is freed with
    the thread. Valid until the thread's next call for the same ``name``."""
    size = int(np.prod(shape)) * np.dtype(dtype).itemsize
    held = getattr(_BUFFERS, name, None)
    if held is None or held.size < size:
        held = np.empty(size, np.uint8)
        setattr(_BUFFERS, name, held)
    return held[:size].view(dtype).reshape(shape)


def reference_render(photo: np.ndarray, cam: np.ndarray, alpha: float, colormap: str,
                     keep_heatmap: bool) -> tuple[np.ndarray, np.ndarray | None, bool]:
    """The overlay through SciPy and NumPy (:func:`~gradcam.explainers.heatmap.normalize`,
    :func:`~gradcam.explainers.heatmap.reference_upsample`, then :func:`~gradcam.outputs.colour.overlay`):
    (uint8 (H, W, 3), the float32 (H, W) heatmap or None, is_constant)."""
    small, constant = normalize(cam)
    big = reference_upsample(small, photo.shape[:2])
    return overlay(photo, big, alpha, colormap), (big if keep_heatmap else None), constant


def render(photo: np.ndarray, cam: np.ndarray, alpha: float, colormap: str, keep_heatmap: bool,
           scratch: bool = False) -> tuple[np.ndarray, np.ndarray | None, bool]:
    """The overlay of ``cam`` on ``photo``, as :func:`reference_render` returns it, bit for bit: through
    the fused kernel when it is loaded and applies (a 2-D map, a uint8 RGB photo, a 256-colour colormap),
    else through :func:`~gradcam.explainers.heatmap.upsample` and :func:`~gradcam.outputs.colour.overlay`.

    Args:
        photo: uint8 (H, W, 3); cam: float (h, w), a class activation map (not yet normalised).
        keep_heatmap: also return the float32 (H, W) heatmap (for the .npy).
        scratch: the arrays returned may be this thread's reused buffers, valid until its next render
            (:func:`~gradcam.outputs.render.render_outputs`, which writes them out at once).

    Raises:
        HeatmapError: the map has NaN or infinite values.
    """
    heatmap, constant = normalize(cam)  # float32 (h, w); NaN and infinity are refused here, as before
    if not (heatmap.ndim == 2 and heatmap.size and photo.ndim == 3 and photo.shape[2] == 3 and photo.dtype == np.uint8
            and len(_lookup_table(colormap)) == 256 and resample_fast.scipy_sizes_agree(heatmap.shape, photo.shape[:2])
            and _ready(photo.shape[0] * photo.shape[1])):
        big = upsample(heatmap, photo.shape[:2])  # the compiled zoom where it is loaded, else SciPy's
        return overlay(photo, big, alpha, colormap), (big if keep_heatmap else None), constant
    heatmap = np.ascontiguousarray(heatmap)
    shape = photo.shape[:2]
    make = _buffer if scratch else (lambda name, shape_, dtype: np.empty(shape_, dtype))
    out = make("overlay", photo.shape, np.uint8)
    big = make("heatmap", shape, np.float32) if keep_heatmap else np.empty((1, 1), np.float32)
    resample_fast.KERNEL.compiled(heatmap, *resample_fast.weight_tables(heatmap.shape, shape),
                                  np.ascontiguousarray(photo), _blend_table(colormap, float(alpha)), out, big,
                                  keep_heatmap, True)
    return out, (big if keep_heatmap else None), constant
