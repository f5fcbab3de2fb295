"""Colouring and overlaying heatmaps with matplotlib; atomic PNG and .npy writes."""
from __future__ import annotations

import io
import os
import tempfile
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..errors import UsageError
from ..explainers.heatmap import heatmap_at
from ..names import did_you_mean


def get_colormap(name: str):
    """Return the matplotlib colormap called ``name``.

    Raises:
        UsageError: no such colormap.
    """
    import matplotlib

    try:
        return matplotlib.colormaps[name]
    except KeyError:
        hint = did_you_mean(name, matplotlib.colormaps)
        raise UsageError(f"unknown colormap {name!r}{hint}") from None


@lru_cache(maxsize=32)
def _lookup_table(colormap: str) -> np.ndarray:
    """The colormap's N colours as uint8 (N, 3), exactly as matplotlib maps them."""
    cmap = get_colormap(colormap)
    return cmap(np.arange(cmap.N), bytes=True)[:, :3].copy()


def colorize(heatmap: np.ndarray, colormap: str = "jet") -> np.ndarray:
    """Map a heatmap (H, W) in [0, 1] to colours: uint8 (H, W, 3).

    Same colours as calling the matplotlib colormap (index = floor(value * N),
    1.0 -> the last colour), through a cached lookup table: several times faster.
    """
    table = _lookup_table(colormap)
    return np.take(table, _colour_index(heatmap, len(table)), axis=0)


def _colour_index(heatmap: np.ndarray, size: int) -> np.ndarray:
    """Colour-table index of each value in [0, 1]: floor(value * size), 1.0 -> the last colour."""
    values = np.asarray(heatmap, dtype=np.float32)
    if not np.isfinite(values).all():
        values = np.nan_to_num(values, nan=0.0, posinf=1.0, neginf=0.0)
    return np.clip(values * size, 0, size - 1).astype(np.uint8 if size <= 256 else np.uint16)


def overlay(photo: np.ndarray, heatmap: np.ndarray, alpha: float = 0.4, colormap: str = "jet") -> np.ndarray:
    """Blend the coloured heatmap over the photo.

    Args:
        photo: uint8 (H, W, 3).
        heatmap: float (H, W) in [0, 1], same H and W as the photo.
        alpha: opacity of the heatmap, 0 (photo only) to 1 (heatmap only).

    Returns:
        uint8 (H, W, 3): ``(1 - alpha) * photo + alpha * colour``, rounded.
    """
    if photo.shape[:2] != heatmap.shape:
        raise ValueError(f"photo {photo.shape[:2]} and heatmap {heatmap.shape} differ in size")
    # one pass over uint8 data: out = table[c, p] per channel, where the table holds, for every colour
    # index c and photo value p, the float32 result rint((1 - alpha) * p + alpha * colour[c]) clipped:
    # the same float32 operations as the formula, done once per (c, p) instead of once per pixel
    height, width = heatmap.shape
    table = _blend_table(colormap, float(alpha))  # (3, N * 256) uint8
    colours = table.shape[1] // 256
    index_type = np.uint16 if colours <= 256 else np.uint32  # c * 256 + p < 65536 for 256 colours
    out = np.empty(photo.shape, np.uint8)
    rows = max(1, _BLOCK_PIXELS // max(1, width))
    for top in range(0, height, rows):
        base = _colour_index(heatmap[top : top + rows], colours).astype(index_type) << 8
        for channel in range(3):
            index = base + photo[top : top + rows, :, channel]
            out[top : top + rows, :, channel] = np.take(table[channel], index, mode="clip")
    return out


@lru_cache(maxsize=32)
def _blend_table(colormap: str, alpha: float) -> np.ndarray:
    """uint8 (3, N * 256): entry [ch, c * 256 + p] is rint((1 - alpha) * p + alpha * colour[c, ch]),
    clipped to 0-255, computed in float32 exactly as the formula is for each pixel."""
    photo_part = np.arange(256, dtype=np.float32) * np.float32(1.0 - alpha)  # (256,)
    values = photo_part[None, :, None] + _scaled_table(colormap, alpha)[:, None, :]  # (N, 256, 3) float32
    np.rint(values, out=values)
    np.clip(values, 0, 255, out=values)
    return np.ascontiguousarray(values.astype(np.uint8).reshape(-1, 3).T)


_BLOCK_PIXELS = 1 << 20


@lru_cache(maxsize=32)
def _scaled_table(colormap: str, alpha: float) -> np.ndarray:
    """alpha x the colormap's colours, float32 (N, 3)."""
    return np.float32(alpha) * _lookup_table(colormap).astype(np.float32)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, fsync it and rename it into place: a crash
    never leaves a truncated or empty file under the final name."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
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
    """A uint8 (H, W, 3) image as PNG bytes. With ``compress_level`` None, fpng when installed (about 25x
    as fast as zlib level 1 at 640x480, files about as small); otherwise matplotlib's ``imsave`` through
    Pillow at zlib level ``compress_level`` (1 when None). Pillow decodes both to the same pixels."""
    image = np.asarray(image)
    encoder = fast_png_encoder() if compress_level is None else None
    if encoder is not None and image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8:
        return encoder.from_ndarray(np.ascontiguousarray(image))
    import matplotlib.image

    level = FALLBACK_ZLIB_LEVEL if compress_level is None else compress_level
    buffer = io.BytesIO()
    matplotlib.image.imsave(buffer, image, format="png", pil_kwargs={"compress_level": level})
    return buffer.getvalue()


def save_png(path: str | os.PathLike, image: np.ndarray, compress_level: int | None = DEFAULT_PNG_COMPRESSION) -> None:
    """Save a uint8 (H, W, 3) image as PNG (see :func:`encode_png`), atomically."""
    write_atomic(Path(path), encode_png(image, compress_level))


_DISPLAY_FIGURE: list = []


def display_figure(**kwargs):
    """A matplotlib Figure (no pyplot) that Jupyter shows as a PNG picture even without
    ``%matplotlib inline``: it has a ``_repr_png_``."""
    if not _DISPLAY_FIGURE:
        from matplotlib.figure import Figure

        class DisplayFigure(Figure):
            """A Figure with a ``_repr_png_`` drawn by the Agg canvas."""

            def _repr_png_(self) -> bytes:
                from matplotlib.backends.backend_agg import FigureCanvasAgg

                buffer = io.BytesIO()
                FigureCanvasAgg(self).print_png(buffer)
                return buffer.getvalue()

        _DISPLAY_FIGURE.append(DisplayFigure)
    return _DISPLAY_FIGURE[0](**kwargs)


def panel(photo: np.ndarray, overlay_image: np.ndarray, title: str):
    """The photo and its overlay side by side under a title: a matplotlib Figure (no pyplot, shown
    as a picture in Jupyter), about 1000 pixels wide at its 100 dpi."""
    height, width = photo.shape[:2]
    panel_width = 5.0
    panel_height = min(max(panel_width * height / width, 1.0), 10.0)
    figure = display_figure(figsize=(2 * panel_width, panel_height + 0.8), dpi=100)
    for position, (image, label) in enumerate(((photo, "photo"), (overlay_image, "heatmap"))):
        axes = figure.add_subplot(1, 2, position + 1)
        axes.imshow(image, interpolation="antialiased")
        axes.set_title(label, fontsize=11)
        axes.axis("off")
    figure.suptitle(title, fontsize=13)
    figure.tight_layout()
    return figure


def panel_figure(photo: np.ndarray, overlay_image: np.ndarray, title: str) -> np.ndarray:
    """:func:`panel` drawn to pixels: uint8 (H', W', 3)."""
    return figure_pixels(panel(photo, overlay_image, title))


def figure_pixels(figure) -> np.ndarray:
    """Lay out and draw a matplotlib Figure (no pyplot, thread-safe Agg canvas): uint8 (H, W, 3)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(figure)
    figure.tight_layout()
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[:, :, :3].copy()


def save_npy(path: str | os.PathLike, heatmap: np.ndarray) -> None:
    """Save a heatmap as float32 .npy, atomically."""
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(heatmap, dtype=np.float32), allow_pickle=False)
    write_atomic(Path(path), buffer.getvalue())


def curves_figure(result, title: str) -> np.ndarray:
    """The deletion and insertion curves of a :class:`~gradcam.faithfulness.Faithfulness` as a uint8
    (H, W, 3) matplotlib figure."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6.4, 4.0), dpi=100)
    axes = figure.add_subplot(1, 1, 1)
    x = np.linspace(0, 1, len(result.deletion_curve))
    axes.plot(x, result.deletion_curve, label=f"deletion (AUC {result.deletion_auc:.3f}, lower is better)")
    axes.plot(x, result.insertion_curve, label=f"insertion (AUC {result.insertion_auc:.3f}, higher is better)")
    axes.set_xlabel("fraction of pixels removed / revealed, most important first")
    axes.set_ylabel("class probability")
    axes.set_ylim(-0.02, 1.02)
    axes.legend(fontsize=8)
    axes.set_title(title, fontsize=10)
    return figure_pixels(figure)


def draw_outline(image: np.ndarray, region: np.ndarray, colour=(255, 255, 255)) -> np.ndarray:
    """``image`` uint8 (H, W, 3) with the outline of ``region`` (bool (h, w) on a coarser grid, cell i
    covering rows [i H / h, (i + 1) H / h)) drawn in ``colour``: the region's pixels with a neighbour
    outside it (or on the image's edge). A new array; an empty region draws nothing."""
    height, width = image.shape[:2]
    rows = np.minimum(np.arange(height) * region.shape[0] // height, region.shape[0] - 1)
    cols = np.minimum(np.arange(width) * region.shape[1] // width, region.shape[1] - 1)
    inside = np.asarray(region, bool)[rows[:, None], cols[None, :]]
    padded = np.pad(inside, 1, constant_values=False)
    interior = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    out = image.copy()
    out[inside & ~interior] = colour
    return out


def render_outputs(photo: np.ndarray, cam: np.ndarray, overlay_path: Path, npy_path: Path | None,
                   alpha: float, colormap: str, panel_title: str | None = None, curves: tuple | None = None,
                   compress_level: int | None = DEFAULT_PNG_COMPRESSION, region: np.ndarray | None = None) -> bool:
    """Normalise, upsample to the photo, write the overlay (or the side-by-side panel), the .npy,
    and with ``curves`` = (path, Faithfulness, title) the deletion/insertion plot; with ``region`` (bool
    (h, w), a segmentation model's explained region) its outline is drawn on the overlay.

    Returns True if the map is constant (drawn as zero everywhere).
    """
    big, is_zero = heatmap_at(cam, photo.shape[:2])
    image = overlay(photo, big, alpha, colormap)
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


def panel_title(values: dict) -> str:
    """'tabby (53.2%) · layer block5_conv4 · gradcam' for a record's values."""
    name = values["class_name"] if values.get("class_name") is not None else f"class {values['class_index']}"
    return f"{name} ({values['probability']:.1%}) · layer {values['layer']} · {values['method']}"


def _grey(volume: np.ndarray) -> np.ndarray:
    """A volume's first channel scaled min-max to uint8 (D, H, W)."""
    values = np.asarray(volume, np.float32)
    values = values[..., 0] if values.ndim == 4 else values
    low, high = float(values.min()), float(values.max())
    scaled = (values - low) / (high - low) if high > low else np.zeros_like(values)
    return np.rint(scaled * 255).astype(np.uint8)


def volume_slices(depth: int, count: int = 8) -> list[int]:
    """The axial slices a montage shows: ``count`` evenly spaced through the ``depth``."""
    return sorted(set(np.linspace(0, depth - 1, min(count, depth)).round().astype(int).tolist()))


def montage(volume: np.ndarray, heatmap: np.ndarray, alpha: float = 0.4, colormap: str = "jet",
            count: int = 8) -> np.ndarray:
    """Axial slices of a volume (D, H, W[, C]) with the 3-D heatmap (D, H, W) laid over each, side by side
    with 2-pixel gaps: uint8 (H, n W + 2 (n - 1), 3)."""
    grey = _grey(volume)
    tiles = []
    for z in volume_slices(heatmap.shape[0], count):
        photo = np.repeat(grey[z][..., None], 3, axis=2)
        tiles.append(overlay(photo, heatmap[z], alpha, colormap))
        tiles.append(np.zeros((photo.shape[0], 2, 3), np.uint8))
    return np.concatenate(tiles[:-1], axis=1)


def planes_figure(volume: np.ndarray, heatmap: np.ndarray, title: str, alpha: float = 0.4, colormap: str = "jet"):
    """The three central planes (axial, coronal, sagittal) of a volume with its heatmap: a Figure (shown
    as a picture in Jupyter)."""
    grey = _grey(volume)
    depth, height, width = heatmap.shape
    planes = (("axial", grey[depth // 2], heatmap[depth // 2]), ("coronal", grey[:, height // 2], heatmap[:, height // 2]),
              ("sagittal", grey[:, :, width // 2], heatmap[:, :, width // 2]))
    figure = display_figure(figsize=(12, 4.6), dpi=100)
    for position, (label, plane, heat) in enumerate(planes):
        axes = figure.add_subplot(1, 3, position + 1)
        axes.imshow(overlay(np.repeat(plane[..., None], 3, axis=2), heat, alpha, colormap))
        axes.set_title(label, fontsize=11)
        axes.axis("off")
    figure.suptitle(title, fontsize=13)
    figure.tight_layout()
    return figure


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
