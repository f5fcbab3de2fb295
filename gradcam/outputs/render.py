"""Writing a result's files: atomic PNG and .npy writes, and the overlay, panel, curves and volume
pictures of one result. The colours are :mod:`.colour`'s, the figures :mod:`.figures`'s (their public
names are importable from here too)."""
from __future__ import annotations

import io
import os
from functools import lru_cache
from pathlib import Path

import numpy as np

from . import fused
from . import png
from .colour import colorize, draw_outline, get_colormap, overlay
from .figures import (
    curves_figure,
    display_figure,
    figure_pixels,
    montage,
    panel,
    panel_figure,
    panel_title,
    planes_figure,
    volume_slices,
)

__all__ = [
    "DEFAULT_PNG_COMPRESSION", "FALLBACK_ZLIB_LEVEL", "colorize", "curves_figure", "display_figure", "draw_outline",
    "encode_png", "fast_png_encoder", "figure_pixels", "get_colormap", "montage", "overlay", "panel",
    "panel_figure", "panel_title", "planes_figure", "render_outputs", "render_volume_outputs", "save_npy",
    "save_png", "volume_slices", "write_atomic",
]


def _create_temporary(path: Path) -> tuple[int, str]:
    """(descriptor, name) of a new, empty file beside ``path`` named ``.NAME.RANDOM.part``, created exclusively
    (O_EXCL: never an existing file or a link) with mode 0o666, which the system lessens by the umask (or the
    folder's default ACL) as for any new file: no umask read, no chmod. FileExistsError after 100 names taken."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        name = os.path.join(path.parent, f".{path.name}.{os.urandom(6).hex()}.part")
        try:
            return os.open(name, flags, 0o666), name
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name beside {path}")


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, fsync it and rename it into place: a crash
    never leaves a truncated or empty file under the final name. The file's mode is 0o666 less the umask.
    The folder is made when it is missing (looked for only then: a folder run writes thousands of files
    into a few folders)."""
    path = Path(path)
    try:
        fd, tmp = _create_temporary(path)
    except FileNotFoundError:  # no such folder (yet); mkdir raises what stands in the way
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = _create_temporary(path)
    try:
        try:
            view = memoryview(data).cast("B")
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


#: ``--png-compression``: None is the fastest encoder installed (fpng, else zlib level 1 through Pillow);
#: a zlib level 0-9 always goes through Pillow. The pixels are the same either way.
DEFAULT_PNG_COMPRESSION = None

#: the zlib level of the Pillow path when no level is asked for and fpng is not installed
FALLBACK_ZLIB_LEVEL = 1


#: fpng's header holds 16-bit sides: images with a side of this many pixels or more go to another encoder
FPNG_SIDE_LIMIT = 65536


@lru_cache(maxsize=1)
def fast_png_encoder():
    """The ``fpng`` module (py-fpng-nb, MIT, a binding of Rich Geldreich's public-domain fpng encoder), or
    None where it is not installed or does not load: then PNGs are written through matplotlib/Pillow."""
    try:
        import fpng
    except Exception:  # not installed, no wheel for this platform, a broken build
        return None
    return fpng


def encode_png(image: np.ndarray, compress_level: int | None = DEFAULT_PNG_COMPRESSION) -> bytes:
    """A uint8 (H, W, 3) image as PNG bytes. With ``compress_level`` None: from
    :data:`~gradcam.outputs.png.GIL_FREE_FROM_PIXELS` pixels (100,000) on, a GIL-free encoder (other threads run
    meanwhile): :func:`~gradcam.outputs.png.encode_large`, the compiled Huffman-only one where the kernels are
    loaded (0.8 CPU-ms at 640x480 against fpng's 1.3-1.5, files 3-11 % smaller), else ISA-L's from 8 MP where
    python-isal is installed; otherwise fpng when installed; otherwise matplotlib's ``imsave`` through Pillow at
    zlib level ``compress_level`` (1 when None). Pillow decodes them all to the same pixels."""
    image = np.asarray(image)
    if compress_level is None and image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8:
        data = png.encode_large(image) if image.shape[0] * image.shape[1] >= png.GIL_FREE_FROM_PIXELS else None
        # fpng writes a side of 65,536 pixels or more modulo 65,536 in the header (a broken file, no error)
        encoder = fast_png_encoder() if data is None and max(image.shape[:2]) < FPNG_SIDE_LIMIT else None
        if encoder is not None:
            data = encoder.from_ndarray(np.ascontiguousarray(image))
        if data is not None:
            return data
    import matplotlib.image

    level = FALLBACK_ZLIB_LEVEL if compress_level is None else compress_level
    buffer = io.BytesIO()
    matplotlib.image.imsave(buffer, image, format="png", pil_kwargs={"compress_level": level})
    return buffer.getvalue()


def save_png(path: str | os.PathLike, image: np.ndarray, compress_level: int | None = DEFAULT_PNG_COMPRESSION) -> None:
    """Save a uint8 (H, W, 3) image as PNG (see :func:`encode_png`), atomically."""
    write_atomic(Path(path), encode_png(image, compress_level))


def save_npy(path: str | os.PathLike, heatmap: np.ndarray) -> None:
    """Save a heatmap as float32 .npy, atomically."""
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(heatmap, dtype=np.float32), allow_pickle=False)
    write_atomic(Path(path), buffer.getvalue())


def render_outputs(photo: np.ndarray, cam: np.ndarray, overlay_path: Path, npy_path: Path | None,
                   alpha: float, colormap: str, panel_title: str | None = None, curves: tuple | None = None,
                   compress_level: int | None = DEFAULT_PNG_COMPRESSION, region: np.ndarray | None = None) -> bool:
    """Normalise, upsample to the photo, write the overlay (or the side-by-side panel), the .npy,
    and with ``curves`` = (path, Faithfulness, title) the deletion/insertion plot; with ``region`` (bool
    (h, w), a segmentation model's explained region) its outline is drawn on the overlay.

    Returns True if the map is constant (drawn as zero everywhere).
    """
    # fused: upsampled, coloured and blended in one compiled pass into this thread's reused buffers
    image, big, is_zero = fused.render(photo, cam, alpha, colormap, npy_path is not None, scratch=True)
    if region is not None:
        image = draw_outline(image, region)
    if panel_title is not None:
        image = panel_figure(photo, image, panel_title)
    save_png(overlay_path, image, compress_level)
    if npy_path is not None:
        save_npy(npy_path, big)
    if curves is not None:
        curves_path, scores, title = curves
        save_png(curves_path, curves_figure(scores, title), compress_level)
    return is_zero


def render_volume_outputs(volume: np.ndarray, heatmap: np.ndarray, montage_path: Path, planes_path: Path,
                          title: str, alpha: float, colormap: str,
                          compress_level: int | None = DEFAULT_PNG_COMPRESSION) -> None:
    """A volume's pictures: the :func:`montage` of axial slices at ``montage_path`` and the
    :func:`planes_figure` of its three central planes, titled, at ``planes_path``.

    Args:
        volume: float32 (D, H, W[, C]), axial slices first; heatmap: float32 (D, H, W) in [0, 1].
    """
    save_png(montage_path, montage(volume, heatmap, alpha, colormap), compress_level)
    save_png(planes_path, figure_pixels(planes_figure(volume, heatmap, title, alpha, colormap)), compress_level)
