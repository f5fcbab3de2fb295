"""The write stage's records and the model stage's batch, without a model: finished writes become manifest lines
in submission order, those ready together in one append (one fsync), none before its write finished; the batch
of model inputs is np.stack's, in memory kept from step to step."""
from __future__ import annotations

import collections
import json
import os
import threading
from concurrent.futures import Future
from pathlib import Path

import numpy as np
import pytest

from gradcam.inputs.discovery import InputImage
from gradcam.outputs.manifest import ManifestWriter, read_records
from gradcam.runs import write
from gradcam.runs.decode import Decoded
from gradcam.runs.records import RunRecords
from gradcam.runs.status import Summary
from gradcam.runs.step import ModelStage


def _stage(tmp_path: Path, seen: list | None = None) -> write.WriteStage:
    """A WriteStage with no pool and no explainer: only its records side (pending -> manifest)."""
    stage = write.WriteStage.__new__(write.WriteStage)
    manifest = ManifestWriter(tmp_path)
    stage.records = RunRecords(manifest, Summary(total=0), seen.append if seen is not None else None, "run-1",
                               {"alpha": 0.4}, {"layer": "conv", "method": "gradcam", "model": "m", "request": None})
    stage.pending = collections.deque()
    return stage


def _queue(stage: write.WriteStage, name: str, done: bool = True) -> Future:
    """Queue the writes of input ``name``: finished (a result) when ``done``, else running."""
    future = Future()
    if done:
        future.set_result((False, {f"{name}.png": {"size": 1, "mtime_ns": 2}}))
    stage.pending.append((InputImage(Path(name), name), future,
                          {"layer": "conv", "rank": 1, "overlay": f"{name}.png", "heatmap": None}, 0))
    return future


def _count_fsyncs(monkeypatch) -> list[int]:
    synced: list[int] = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real(fd))[1])
    return synced


def test_writes_finished_together_are_recorded_in_one_append_in_order(tmp_path, monkeypatch):
    seen: list[dict] = []
    stage = _stage(tmp_path, seen)
    for name in ("a", "b", "c", "d"):
        _queue(stage, name)
    synced = _count_fsyncs(monkeypatch)
    stage.finish(1)
    assert len(synced) == 1  # one append for a, b and c; d stays pending
    assert [Path(r["input"]).name for r in seen] == ["a", "b", "c"] and len(stage.pending) == 1
    stage.finish(0)
    stage.records.manifest.close()
    assert len(synced) == 2
    text = (tmp_path / "manifest.jsonl").read_text()
    assert text.endswith("\n") and [json.loads(line)["input"] for line in text.splitlines()] == ["a", "b", "c", "d"]
    assert [r["seq"] for r in read_records(tmp_path / "manifest.jsonl")] == [1, 2, 3, 4]
    assert stage.records.summary.explained == 4


def test_a_write_still_running_does_not_hold_back_the_records_ready_before_it(tmp_path, monkeypatch):
    """Past GATHER_SECONDS, what is ready is appended, then the stage waits for the write still running; its
    record comes only once it finished."""
    monkeypatch.setattr(write, "GATHER_SECONDS", 0.05)
    stage = _stage(tmp_path)
    _queue(stage, "a")
    running = _queue(stage, "b", done=False)
    finishing = threading.Thread(target=stage.finish, args=(0,))
    finishing.start()
    manifest = tmp_path / "manifest.jsonl"
    for _ in range(200):  # up to 10 s: a's record is appended while b is still being written
        finishing.join(0.05)
        if manifest.stat().st_size:
            break
    assert [r["input"] for r in read_records(manifest)] == ["a"] and finishing.is_alive()
    running.set_result((True, {"b.png": {"size": 1, "mtime_ns": 2}}))
    finishing.join(10)
    assert not finishing.is_alive()
    records = read_records(manifest)
    assert [(r["input"], r["zero_heatmap"]) for r in records] == [("a", False), ("b", True)]


def test_a_failed_write_is_an_error_record_in_its_place_in_the_same_append(tmp_path, monkeypatch):
    stage = _stage(tmp_path)
    _queue(stage, "a")
    _queue(stage, "b", done=False).set_exception(OSError(28, "No space left on device"))
    _queue(stage, "c")
    synced = _count_fsyncs(monkeypatch)
    stage.finish(0)
    records = read_records(tmp_path / "manifest.jsonl")
    assert len(synced) == 1 and [(r["input"], r["status"]) for r in records] == [("a", "ok"), ("b", "error"),
                                                                                  ("c", "ok")]
    assert "No space left" in records[1]["error"] and records[1]["touched"] == ["b.png"]


def test_an_interrupt_while_gathering_keeps_the_records_of_finished_writes(tmp_path):
    stage = _stage(tmp_path)
    _queue(stage, "a")
    _queue(stage, "b", done=False).set_exception(KeyboardInterrupt())  # Ctrl-C while waiting for b
    _queue(stage, "c")
    with pytest.raises(KeyboardInterrupt):
        stage.finish(0)
    assert [r["input"] for r in read_records(tmp_path / "manifest.jsonl")] == ["a"]
    stage.record_finished()  # what an interrupted run does next: c, whose write finished, is recorded once
    assert [r["input"] for r in read_records(tmp_path / "manifest.jsonl")] == ["a", "c"]


def test_a_kill_in_the_middle_of_a_batched_append_leaves_whole_lines(tmp_path, monkeypatch):
    """A writer killed part way through one append of several records: the lines it finished read back,
    the cut one is left out, and the next writer's records stand on their own lines."""
    writer = ManifestWriter(tmp_path)
    writer.write({"input": "first", "status": "ok"})
    real_write = os.write

    def killed(fd, data):
        data = bytes(data)
        real_write(fd, data[: data.index(b"\n") + 10])  # the first line, and the second cut short
        raise SystemExit  # dies: nothing truncates the manifest back

    monkeypatch.setattr(os, "write", killed)
    with pytest.raises(SystemExit):
        writer.write_many([{"input": name, "status": "ok"} for name in ("a", "b", "c")])
    monkeypatch.setattr(os, "write", real_write)
    assert [r["input"] for r in read_records(tmp_path / "manifest.jsonl")] == ["first", "a"]
    ManifestWriter(tmp_path).write({"input": "next", "status": "ok"})
    assert [r["input"] for r in read_records(tmp_path / "manifest.jsonl")] == ["first", "a", "next"]


def test_emit_many_counts_and_passes_on_each_record_after_one_append(tmp_path, monkeypatch):
    seen: list[dict] = []
    records = _stage(tmp_path, seen).records
    synced = _count_fsyncs(monkeypatch)
    batch = [records.error_record(InputImage(Path(name), name), "bad", 1) for name in ("x", "y")]
    records.emit_many(batch)
    records.emit_many([])
    assert len(synced) == 1 and seen == batch and records.summary.failed == 2
    assert [r["seq"] for r in batch] == [1, 2]


def _decoded(value: float, shape=(4, 5, 3)) -> Decoded:
    model_input = np.full(shape, value, np.float32)
    return Decoded(InputImage(Path(f"{value}.jpg"), f"{value}.jpg"), np.zeros((2, 2, 3), np.uint8), model_input)


def test_the_batch_is_np_stack_in_memory_kept_from_step_to_step():
    stage = ModelStage(None, None, None)
    first = [_decoded(v) for v in (1, 2, 3)]
    inputs = [entry.model_input.copy() for entry in first]
    batch = stage.stacked(first)
    assert np.array_equal(batch, np.stack(inputs)) and batch.dtype == np.float32
    assert all(np.array_equal(entry.model_input, kept) for entry, kept in zip(first, inputs))  # inputs untouched
    again = stage.stacked([_decoded(v) for v in (4, 5, 6)])
    assert np.shares_memory(batch, again) and np.array_equal(again[:, 0, 0, 0], [4, 5, 6])
    last = stage.stacked([_decoded(7)])  # the last, partial batch: the same memory's start
    assert last.shape == (1, 4, 5, 3) and np.shares_memory(last, again) and np.all(last == 7)
    bigger = stage.stacked([_decoded(v) for v in range(5)])  # more inputs than before: new memory
    assert bigger.shape == (5, 4, 5, 3) and np.array_equal(bigger[:, 0, 0, 0], np.arange(5))
    other = stage.stacked([_decoded(1, (2, 2, 3)), _decoded(2, (2, 2, 3))])  # another input shape
    assert np.array_equal(other, np.stack([np.full((2, 2, 3), v, np.float32) for v in (1, 2)]))
    mixed = stage.stacked([_decoded(1), Decoded(None, None, np.full((4, 5, 3), 2.5, np.float64))])
    assert mixed.dtype == np.float64 and np.array_equal(mixed[:, 0, 0, 0], [1.0, 2.5])  # np.stack's dtype
    many = stage.stacked([_decoded(v, (1, 1, 3)) for v in range(70)])  # a big batch
    assert np.array_equal(many[:, 0, 0, 0], np.arange(70))


def test_inputs_of_unequal_shapes_fail_as_np_stack_does():
    stage = ModelStage(None, None, None)
    stage.stacked([_decoded(1)])
    with pytest.raises(ValueError, match="same shape"):
        stage.stacked([_decoded(1), _decoded(2, (3, 5, 3))])
