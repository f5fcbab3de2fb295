"""OUTPUT/index.html: a self-contained gallery of every result in an output folder.

Built from the manifests alone (every shard's): no network, no JavaScript framework (a few
lines of plain JavaScript sort and filter the grid).
"""
from __future__ import annotations

import html
import os
from collections import Counter
from pathlib import Path
from urllib.parse import quote

from .manifest import latest_records
from ..names import BASELINE_NAMES, GALLERY_NAME, METRICS
from .render import write_atomic
from .wellformed import record_scores


def _caption(record: dict, shared_names: frozenset = frozenset()) -> str:
    """'cat.jpg · tabby (53.2%) · block5_conv4 · gradcam'; an input whose file name another input
    shares is named by its output path instead (``a/cat.jpg``, ``b/cat.jpg``)."""
    name = Path(record.get("input") or "?").name
    if name in shared_names and record.get("overlay"):
        name = _output_name(record)
    if record.get("class_name") is None and record.get("class_index") is None:
        return f"{name} (result from an earlier run)"
    probability = record.get("probability")
    p = f"{probability:.1%}" if isinstance(probability, (int, float)) else "?"
    rank = f" · top {record['rank']}" if (record.get("rank") or 1) > 1 else ""
    method = f" · {record['method']}" if record.get("method") else ""
    return f"{name} · {_class_label(record)} ({p}){rank} · {record.get('layer')}{method}"


def _output_name(record: dict) -> str:
    """The input's path inside the output folder: its overlay's path without the output suffix."""
    overlay = str(record["overlay"])
    for suffix in (f".top{record.get('rank')}.png", ".png"):
        if overlay.endswith(suffix):
            return overlay[: -len(suffix)]
    return overlay


def _class_label(record: dict) -> str:
    """The class name, else the class index (0 included), else ''."""
    for key in ("class_name", "class_index"):
        if record.get(key) is not None:
            return str(record[key])
    return ""


#: pages other commands write into an output folder, linked from the gallery when they are there
LINKED_PAGES = (("atlas.html", "atlas: where the model looks, class by class"),
                ("compare.html", "comparison with another run"))


def _scores_table(records: list[dict]) -> str:
    """The folder means of every score the records carry (``gradcam evaluate``), the map's beside its
    baselines'; '' when no record has a score."""
    columns = [("map", ""), *((name, f"{name}:") for name in BASELINE_NAMES)]
    scores = [record_scores(r) for r in records if (r.get("rank") or 1) == 1]
    rows = []
    for metric in METRICS:
        cells = []
        for _, prefix in columns:
            values = [found[prefix + metric.key] for found in scores if prefix + metric.key in found]
            cells.append(f"{sum(values) / len(values):.3f}" if values else "")
        if any(cells):
            better = "higher" if metric.higher_is_better else "lower"
            rows.append(f"<tr><td>{metric.key} ({better} is better)</td>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    if not rows:
        return ""
    head = "".join(f"<th>{name}</th>" for name, _ in columns)
    return f'<h2>Score means</h2><table id="scores"><tr><th>metric</th>{head}</tr>{"".join(rows)}</table>'


def render_gallery(records: list[dict], linked: tuple[tuple[str, str], ...] = ()) -> str:
    """HTML text of the gallery for manifest records, with links to the ``linked`` pages (name, title)."""
    shown = [r for r in records if r.get("status") in ("ok", "skipped") and r.get("overlay")]
    failed = [r for r in records if r.get("status") == "error"]
    shown.sort(key=lambda r: (r.get("input") or "", r.get("rank") or 1))
    classes = sorted({_class_label(r) for r in shown} - {""})
    names = Counter(Path(r.get("input") or "?").name for r in shown if (r.get("rank") or 1) == 1)
    shared = frozenset(name for name, count in names.items() if count > 1)
    cards = []
    for r in shown:
        href = quote(os.fsencode(r["overlay"]))  # a name that is not UTF-8: its bytes
        label = _class_label(r)
        probability = r.get("probability") if isinstance(r.get("probability"), (int, float)) else -1
        cards.append(
            f'<figure data-class="{html.escape(label)}" data-p="{probability}" data-name="{html.escape(r["input"])}">'
            f'<a href="{href}"><img src="{href}" alt="{html.escape(label)}" loading="lazy" '
            f'onload="this.dataset.state=\'loaded\'" onerror="this.dataset.state=\'broken\'"></a>'
            f"<figcaption>{html.escape(_caption(r, shared))}</figcaption></figure>"
        )
    failures = "".join(f"<li><code>{html.escape(r.get('input') or '?')}</code>: {html.escape(r.get('error') or '')}</li>"
                       for r in failed)
    options = "".join(f'<option value="{html.escape(c)}">{html.escape(c)}</option>' for c in classes)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>gradcam results</title>
<style>
body{{font-family:system-ui,sans-serif;margin:1.5em;background:#fafafa;color:#222}}
#grid{{display:grid;grid-template-columns:repeat(auto-fill,minmax(220px,1fr));gap:12px}}
figure{{margin:0;background:#fff;border:1px solid #ddd;border-radius:6px;padding:6px}}
figure img{{width:100%;height:180px;object-fit:contain;background:#eee}}
figcaption{{font-size:12px;overflow-wrap:anywhere}}
img[data-state=broken]{{outline:3px solid #c00}}
</style></head><body>
<h1>gradcam results</h1>
<p>{len(shown)} heatmap(s), {len(failed)} failed input(s).
<label>Class <select id="cls"><option value="">all</option>{options}</select></label>
<label>Sort <select id="sort"><option value="name">by name</option><option value="p">by probability</option></select></label></p>
{_links(linked)}{_scores_table(shown)}
<div id="grid">{''.join(cards)}</div>
<h2>Failed inputs</h2><ul id="failed">{failures or '<li>none</li>'}</ul>
<script>
const grid=document.getElementById('grid'),cls=document.getElementById('cls'),sort=document.getElementById('sort');
function update(){{const items=[...grid.children];
items.forEach(f=>{{f.style.display=(!cls.value||f.dataset.class===cls.value)?'':'none'}});
items.sort((a,b)=>sort.value==='p'?b.dataset.p-a.dataset.p:a.dataset.name.localeCompare(b.dataset.name));
items.forEach(f=>grid.appendChild(f));}}
cls.onchange=update;sort.onchange=update;
</script></body></html>
"""


def _links(linked: tuple[tuple[str, str], ...]) -> str:
    return "".join(f'<p><a href="{quote(name)}">{html.escape(title)}</a></p>' for name, title in linked)


def write_gallery(output_dir: Path) -> Path:
    """Write OUTPUT/index.html from every manifest in OUTPUT (all shards), atomically; returns its path."""
    output_dir = Path(output_dir)
    path = output_dir / GALLERY_NAME
    records = latest_records(output_dir)
    linked = tuple((name, title) for name, title in LINKED_PAGES if (output_dir / name).is_file())
    linked += tuple((f"{folder.name}/compare.html", f"comparison: {folder.name}")
                    for folder in sorted(output_dir.glob("compare-with-*")) if (folder / "compare.html").is_file())
    write_atomic(path, render_gallery(records, linked).encode("utf-8", errors="replace"))
    return path
