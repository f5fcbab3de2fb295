"""The folder run: decoding ahead of the model, rendering behind it, manifest and resume.

Stages, each bounded so memory does not grow with the folder:
decode pool (Pillow) -> batches -> one compiled step per batch (main thread)
-> render pool (zoom, colour, PNG/.npy writes) -> manifest line + progress.
"""
from __future__ import annotations

import collections
import json
import os
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from .errors import ImageError, OutputError
from .heatmap import normalize, upsample
from .images import DEFAULT_MAX_PIXELS, InputImage, load_image, resize_for_model
from .evaluate import curves_figure, faithfulness, input_heatmap
from .gallery import write_gallery
from .render import overlay, panel_figure, save_npy, save_png

MANIFEST_NAME = "manifest.jsonl"


@dataclass
class RunOptions:
    """Settings of one run (the CLI's options)."""

    output_dir: Path
    batch_size: int = 8
    alpha: float = 0.4
    colormap: str = "jet"
    save_npy: bool = False
    overwrite: bool = False
    class_index: int | None = None
    top_k: int = 1
    panel: bool = False
    evaluate: bool = False
    steps: int = 20
    plot: bool = False
    max_pixels: int = DEFAULT_MAX_PIXELS
    workers: int = field(default_factory=lambda: max(2, min(4, os.cpu_count() or 2)))


@dataclass
class Summary:
    """Counts of one run; ``interrupted`` when it was stopped early."""

    total: int
    explained: int = 0
    skipped: int = 0
    failed: int = 0
    interrupted: bool = False
    failures: list[tuple[str, str]] = field(default_factory=list)
    metrics: dict[str, list[float]] = field(default_factory=dict)

    def means(self) -> dict[str, float]:
        """Mean of each faithfulness score over the explained records."""
        return {key: float(np.mean(values)) for key, values in self.metrics.items() if values}

    @property
    def done(self) -> int:
        return self.explained + self.skipped + self.failed


def output_paths(item: InputImage, output_dir: Path, rank: int = 1, top_k: int = 1) -> tuple[Path, Path]:
    """(overlay PNG, heatmap .npy) paths of an input, always inside ``output_dir``.

    ``photo.jpg`` -> ``photo.jpg.png``; with ``top_k`` > 1, ``photo.jpg.top{rank}.png``.
    """
    root = Path(output_dir).resolve()
    suffix = f".top{rank}.png" if top_k > 1 else ".png"
    overlay_path = (root / f"{item.relative}{suffix}").resolve()
    if root not in overlay_path.parents:
        raise OutputError(f"output for {item.path} would leave the output folder")
    return overlay_path, overlay_path.with_suffix(".npy")


def prepare_output_dir(output_dir: Path) -> None:
    """Create the output folder and prove it is writable, before any model is loaded."""
    output_dir = Path(output_dir)
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        probe = output_dir / f".gradcam-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise OutputError(f"cannot write to output folder {output_dir}: {reason}") from None


def _record(item: InputImage, status: str, run_id: str, **values) -> dict:
    base = {
        "input": str(item.path), "status": status, "error": None, "class_index": None,
        "class_name": None, "probability": None, "layer": None, "method": None, "model": None,
        "overlay": None, "heatmap": None, "zero_heatmap": None, "rank": None, "run": run_id,
    }
    base.update(values)
    return base


def _decode(item: InputImage, size: tuple[int, int], max_pixels: int) -> tuple[np.ndarray, np.ndarray]:
    photo = load_image(item.path, max_pixels)
    return photo, resize_for_model(photo, size)


def render_outputs(photo: np.ndarray, cam: np.ndarray, overlay_path: Path, npy_path: Path | None,
                   alpha: float, colormap: str, panel_title: str | None = None, curves: tuple | None = None) -> bool:
    """Normalise, upsample to the photo, write the overlay (or the side-by-side panel), the .npy,
    and with ``curves`` = (path, Faithfulness, title) the deletion/insertion plot.

    Returns True if the map is zero everywhere.
    """
    heatmap, is_zero = normalize(cam)
    big = upsample(heatmap, photo.shape[:2])
    image = overlay(photo, big, alpha, colormap)
    if panel_title is not None:
        image = panel_figure(photo, image, panel_title)
    save_png(overlay_path, image)
    if npy_path is not None:
        save_npy(npy_path, big)
    if curves is not None:
        curves_path, scores, title = curves
        save_png(curves_path, curves_figure(scores, title))
    return is_zero


def panel_title(values: dict) -> str:
    """'tabby (53.2%) · layer block5_conv4 · gradcam' for a record's values."""
    name = values.get("class_name") or f"class {values['class_index']}"
    return f"{name} ({values['probability']:.1%}) · layer {values['layer']} · {values['method']}"


class _Manifest:
    """Appends one JSON line per record to OUTPUT/manifest.jsonl, flushed at once."""

    def __init__(self, output_dir: Path):
        self.output_dir = Path(output_dir).resolve()
        self._file = open(self.output_dir / MANIFEST_NAME, "a", encoding="utf-8")

    def relative(self, path: Path | None) -> str | None:
        return None if path is None else Path(path).relative_to(self.output_dir).as_posix()

    def write(self, record: dict) -> None:
        self._file.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def run(explainer, items: Iterable[InputImage], options: RunOptions,
        on_record: Callable[[dict], None] | None = None) -> Summary:
    """Explain every input, writing outputs and manifest lines as they finish.

    A KeyboardInterrupt stops the run cleanly: finished work is in the
    manifest and ``Summary.interrupted`` is set.
    """
    items = list(items)
    summary = Summary(total=len(items))
    run_id = datetime.now(timezone.utc).isoformat(timespec="seconds")
    prepare_output_dir(options.output_dir)
    manifest = _Manifest(options.output_dir)
    common = {"layer": explainer.layer_name, "method": explainer.method, "model": explainer.classifier.name}
    batch_size = max(1, options.batch_size)
    decode_pool = ThreadPoolExecutor(options.workers, thread_name_prefix="gradcam-decode")
    render_pool = ThreadPoolExecutor(options.workers, thread_name_prefix="gradcam-render")
    decoding: collections.deque = collections.deque()
    rendering: collections.deque = collections.deque()
    batch: list = []

    def emit(record: dict) -> None:
        """Write a record. The summary counts inputs: explained and skipped only at an input's
        first rank; every error counts."""
        status = record["status"]
        first = record["rank"] in (None, 1)
        if status == "ok":
            summary.explained += first
            for key in ("deletion_auc", "insertion_auc", "average_drop"):
                if record.get(key) is not None:
                    summary.metrics.setdefault(key, []).append(record[key])
        elif status == "skipped":
            summary.skipped += first
        else:
            summary.failed += 1
            summary.failures.append((record["input"], record["error"]))
        manifest.write(record)
        if on_record is not None:
            on_record(record)

    def finish_render(limit: int) -> None:
        while len(rendering) > limit:
            item, future, values = rendering.popleft()
            try:
                zero = future.result()
                emit(_record(item, "ok", run_id, zero_heatmap=zero, **values))
            except Exception as exc:  # disk full, permission denied...
                emit(_record(item, "error", run_id, error=f"cannot write output: {exc}", rank=values["rank"], **common))

    def explain(pending: list) -> None:
        resized = np.stack([entry[2] for entry in pending])
        result = explainer.explain_batch(resized, options.class_index)
        probability = result.ranked_probability
        for i, (item, photo, model_input) in enumerate(pending):
            for k in range(options.top_k):
                overlay_path, npy_path = output_paths(item, options.output_dir, k + 1, options.top_k)
                npy_path = npy_path if options.save_npy else None
                index = int(result.ranked_class_index[i, k])
                values = dict(common, class_index=index, class_name=explainer.class_name(index),
                              probability=float(probability[i, k]), rank=k + 1,
                              overlay=manifest.relative(overlay_path), heatmap=manifest.relative(npy_path))
                if options.evaluate:
                    scores = faithfulness(explainer.predict, model_input,
                                          input_heatmap(result.ranked_cams[i, k], explainer.input_size),
                                          index, options.steps, baseline="blur")
                    values.update(scores.as_record())
                curves = None
                if options.evaluate and options.plot:
                    curves_path = overlay_path.with_name(overlay_path.name[: -len(".png")] + ".curves.png")
                    values["curves"] = manifest.relative(curves_path)
                    curves = (curves_path, scores, panel_title(values))
                title = panel_title(values) if options.panel else None
                future = render_pool.submit(render_outputs, photo, result.ranked_cams[i, k], overlay_path,
                                            npy_path, options.alpha, options.colormap, title, curves)
                rendering.append((item, future, values))
            finish_render(2 * batch_size * options.top_k)

    def take_decoded(limit: int) -> None:
        while len(decoding) > limit:
            item, future = decoding.popleft()
            try:
                photo, resized = future.result()
            except ImageError as exc:
                emit(_record(item, "error", run_id, error=str(exc), **common))
                continue
            batch.append((item, photo, resized))
            if len(batch) == batch_size:
                explain(batch)
                batch.clear()

    try:
        for item in items:
            ranked = [output_paths(item, options.output_dir, k + 1, options.top_k) for k in range(options.top_k)]
            wanted = [path for overlay_path, npy_path in ranked
                      for path in [overlay_path] + ([npy_path] if options.save_npy else [])]
            if not options.overwrite and all(path.exists() for path in wanted):
                for k, (overlay_path, npy_path) in enumerate(ranked):
                    emit(_record(item, "skipped", run_id, overlay=manifest.relative(overlay_path), rank=k + 1,
                                 heatmap=manifest.relative(npy_path) if options.save_npy else None, **common))
                continue
            decoding.append((item, decode_pool.submit(_decode, item, explainer.input_size, options.max_pixels)))
            take_decoded(2 * batch_size)
        take_decoded(0)
        if batch:
            explain(batch)
            batch.clear()
        finish_render(0)
    except KeyboardInterrupt:
        summary.interrupted = True
        for _, future in decoding:
            future.cancel()
        for item, future, values in list(rendering):  # keep what already finished writing
            if future.done() and not future.cancelled() and future.exception() is None:
                emit(_record(item, "ok", run_id, zero_heatmap=future.result(), **values))
    finally:
        decode_pool.shutdown(wait=False, cancel_futures=True)
        render_pool.shutdown(wait=not summary.interrupted, cancel_futures=True)
        manifest.close()
        write_gallery(options.output_dir)
    return summary
