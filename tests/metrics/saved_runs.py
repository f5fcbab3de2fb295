"""Output folders written by the tests as a run with --save-npy would leave them: a manifest (or shards) of
rank-1 records, each with its map as ``NAME.npy`` and the identity of its input."""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from gradcam.outputs.manifest import ManifestWriter, manifest_name, new_record


def content_digest(content: str) -> str:
    """The SHA-256 a record carries for an input whose bytes are ``content`` (UTF-8)."""
    return hashlib.sha256(content.encode()).hexdigest()


def record_for(name: str, class_index: int | None = 0, class_name: str | None = None, content: str | None = None,
               heatmap: bool = True, **values) -> dict:
    """An "ok" rank-1 record of input ``photos/NAME`` whose overlay is ``NAME.png`` and map ``NAME.npy``;
    its source digest is that of ``content`` (default: the name), none when ``content`` is False."""
    source = None if content is False else {"path": f"/data/{name}", "size": 10,
                                              "sha256": content_digest(name if content is None else content)}
    return new_record(f"photos/{name}", "ok", "run-1", class_index=class_index, class_name=class_name,
                      probability=0.9, layer="conv", method="gradcam", overlay=f"{name}.png",
                      heatmap=f"{name}.npy" if heatmap else None, rank=1, source=source, **values)


def write_run(folder: Path, maps: dict[str, np.ndarray | None], records: list[dict] | None = None,
              shards: int | None = None, extra_lines: list[bytes] = ()) -> Path:
    """Write ``folder``: each map as NAME.npy (None: no file), the records (default: :func:`record_for`
    each name, class 0) to manifest.jsonl or, with ``shards``, spread over that many shard manifests,
    then ``extra_lines`` appended raw to the first manifest. Returns ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name, values in maps.items():
        if values is not None:
            np.save(folder / f"{name}.npy", np.asarray(values, dtype=np.float32), allow_pickle=False)
    records = records if records is not None else [record_for(name) for name in maps]
    names = [manifest_name(None)] if not shards else [manifest_name((i + 1, shards)) for i in range(shards)]
    for index, name in enumerate(names):
        writer = ManifestWriter(folder, name)
        writer.write_many(records[index:: len(names)])
        writer.close()
    if extra_lines:
        with open(folder / names[0], "ab") as handle:
            handle.write(b"".join(extra_lines))
    return folder


def blob(shape: tuple[int, int], row: int, col: int, value: float = 1.0) -> np.ndarray:
    """float32 zeros of ``shape`` with ``value`` at (row, col)."""
    values = np.zeros(shape, np.float32)
    values[row, col] = value
    return values
