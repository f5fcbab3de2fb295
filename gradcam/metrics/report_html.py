"""What the atlas and the comparison of runs share in their reports: the HTML page (the gallery's plain
style, no JavaScript), links to a folder's overlays from where the report lies, maps embedded as PNG, and
JSON and HTML written atomically."""
from __future__ import annotations

import base64
import html
import json
import os
from pathlib import Path
from urllib.parse import quote

import numpy as np

from ..errors import OutputError
from ..outputs.colour import colorize
from ..outputs.render import encode_png, write_atomic
from .saved_maps import inside

STYLE = """body{font-family:system-ui,sans-serif;margin:1.5em;background:#fafafa;color:#222}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(220px,1fr));gap:12px}
.pair{display:grid;grid-template-columns:1fr 1fr;gap:6px}
figure{margin:0;background:#fff;border:1px solid #ddd;border-radius:6px;padding:6px}
figure img{width:100%;height:180px;object-fit:contain;background:#eee}
figcaption{font-size:12px;overflow-wrap:anywhere}
table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ddd;padding:3px 6px;text-align:left}
.missing{display:flex;align-items:center;justify-content:center;height:180px;background:#eee;color:#777}
section{margin-bottom:2em}"""


def page(title: str, body: str) -> str:
    """A whole HTML page: ``title`` (text, escaped here) over ``body`` (HTML)."""
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>\n{STYLE}\n</style></head><body>\n<h1>{html.escape(title)}</h1>\n{body}\n</body></html>\n")


def link(output_dir: Path, relative, base: Path | None) -> str | None:
    """The URL of ``output_dir / relative`` from the folder ``base`` (a relative link; the current folder
    when None), quoted byte for byte; None when ``relative`` names no path inside ``output_dir``."""
    path = inside(output_dir, relative)
    if path is None:
        return None
    try:
        target = os.path.relpath(path, Path(base or os.getcwd()).resolve())
    except ValueError:  # another drive (Windows)
        return path.as_uri()
    return quote(os.fsencode(Path(target).as_posix()))


def figure(href: str | None, caption: str) -> str:
    """A figure: the image at ``href`` (a placeholder when None) linked to itself, under ``caption`` (text)."""
    image = (f'<a href="{href}"><img src="{href}" alt="" loading="lazy"></a>' if href
             else '<div class="missing">no overlay</div>')
    return f"<figure>{image}<figcaption>{html.escape(caption)}</figcaption></figure>"


def map_image(values: np.ndarray, caption: str, colormap: str = "jet") -> str:
    """A figure holding a map float (h, w) drawn scaled to its own maximum, embedded as a PNG (data URL)."""
    values = np.asarray(values, dtype=np.float64)
    peak = float(values.max()) if values.size else 0.0
    pixels = colorize(values / peak if peak > 0 else values, colormap)
    data = base64.b64encode(encode_png(np.ascontiguousarray(pixels))).decode("ascii")
    return (f'<figure><img src="data:image/png;base64,{data}" alt="" style="image-rendering:auto">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def table(header: list[str], rows: list[list]) -> str:
    """An HTML table of text cells (escaped here)."""
    head = "".join(f"<th>{html.escape(str(cell))}</th>" for cell in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(cell))}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def json_bytes(data: dict) -> bytes:
    """``data`` as UTF-8 JSON; a file name that is not valid UTF-8 (a lone surrogate) is written as an escape."""
    try:
        return (json.dumps(data, ensure_ascii=False, indent=1) + "\n").encode("utf-8")
    except UnicodeEncodeError:
        return (json.dumps(data, ensure_ascii=True, indent=1) + "\n").encode("ascii")


def write_report(dest: Path, html_name: str, html_text: str, json_name: str, data: dict) -> tuple[Path, Path]:
    """Write ``html_text`` and ``data`` (as JSON) into the folder ``dest`` (made if missing), each
    atomically; returns (HTML path, JSON path).

    Raises:
        OutputError: one line, when a file cannot be written."""
    dest = Path(dest)
    html_path, json_path = dest / html_name, dest / json_name
    for path, content in ((json_path, json_bytes(data)), (html_path, html_text.encode("utf-8", errors="replace"))):
        try:
            write_atomic(path, content)
        except OSError as exc:  # a read-only folder, a folder under the name, a full disk
            raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None
    return html_path, json_path


def class_label(class_index: int | None, class_name: str | None) -> str:
    """'3 cat', 'cat', '3' or '?'."""
    parts = [str(part) for part in (class_index, class_name) if part is not None]
    return " ".join(parts) or "?"


def percent(value: float | None) -> str:
    """'41%', or '-' for None."""
    return "-" if value is None else f"{value:.0%}"


def signed(value: float | None) -> str:
    """'+0.853', or '-' for None."""
    return "-" if value is None else f"{value:+.3f}"
