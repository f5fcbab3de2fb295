"""Figures drawn with matplotlib (no pyplot): the photo/overlay panel, the faithfulness curves, and a
volume's montage of slices and its three central planes."""
from __future__ import annotations

import io

import numpy as np

from .colour import overlay


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
