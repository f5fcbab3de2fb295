"""The folder run on a Ray cluster with Ray Data: one explainer per actor, outputs written by the
actors into the shared output folder, the manifest and the gallery by the driver.

Ray is an optional extra (``pip install ".[ray]"`` from a checkout); nothing here imports it until a run.
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import OutputError, UsageError
from ..inputs.discovery import InputImage
from ..outputs.manifest import ManifestWriter, end_record, manifest_name, read_trusted, request_files, start_record
from ..outputs.paths import prepare_output_dir, select_shard
from .pipeline import RunOptions, Summary, new_run_id, write_gallery_safely


#: model batches per actor call
CALL_BATCHES = 8


def import_ray():
    """Ray, or a UsageError that says how to install it."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise UsageError('--ray needs Ray: pip install "ray[data]"') from None
    return ray


class ExplainWorker:
    """A Ray actor: builds one Explainer when it starts, then explains batches of inputs.

    ``__call__`` takes a batch {"path": [...], "relative": [...]} and returns {"record": [JSON lines]}:
    the records the local folder run would write, outputs already written to the shared folder.
    """

    def __init__(self, loader: dict, explainer_options: dict, run_options: dict, scorer=None):
        from ..explainers.explainer import Explainer
        from ..models.loading import load_classifier

        self.explainer = Explainer(load_classifier(**loader), **explainer_options)
        self.options = RunOptions(**{**run_options, "output_dir": Path(run_options["output_dir"]),
                                     "write_manifest": False, "shard": None})
        # what earlier runs made, read once per actor (not once per call: a folder of millions of records)
        self.previous = {} if self.options.overwrite else read_trusted(self.options.output_dir)
        self.scorer = scorer

    def __call__(self, batch: dict) -> dict:
        from .pipeline import run

        items = [InputImage(Path(str(path)), str(relative)) for path, relative in zip(batch["path"], batch["relative"])]
        records: list[dict] = []
        run(self.explainer, items, self.options, on_record=records.append, previous=self.previous, scorer=self.scorer)
        return {"record": np.array([json.dumps(record, ensure_ascii=False) for record in records], dtype=object)}


def actor_cpus(ray, workers: int) -> int:
    """CPUs each actor asks for: its share of the cluster's, at most one node's. Ray sets an actor's
    OMP_NUM_THREADS to this number, so with the default of 1 TensorFlow's CPU kernels would run on
    one thread."""
    per_node = [node["Resources"].get("CPU", 0) for node in ray.nodes() if node.get("Alive")]
    total = ray.cluster_resources().get("CPU", 1)
    return max(1, int(min(max(per_node, default=1), total // workers)))


def run_on_ray(items: list[InputImage], options: RunOptions, loader: dict, explainer_options: dict,
               address: str | None = None, workers: int | None = None,
               on_record: Callable[[dict], None] | None = None, verbose: bool = False, scorer=None) -> Summary:
    """Explain ``items`` on Ray: a Dataset of the input paths, ``map_batches`` over a pool of
    :class:`ExplainWorker` actors (one GPU each when the cluster has GPUs), records written here.

    Args:
        loader: keyword arguments of :func:`~gradcam.loading.load_classifier` for the actors.
        explainer_options: keyword arguments of the Explainer (``layer``, ``method``, ``top_k``...).
        address: a Ray cluster's address; None: ``RAY_ADDRESS``, else a local Ray started for the run.
        workers: actors; default: one per GPU in the cluster, else 1.
    """
    ray = import_ray()
    if not verbose:  # Ray Data reports every step at INFO level, with progress bars
        logging.getLogger("ray").setLevel(logging.WARNING)
        ray.data.DataContext.get_current().enable_progress_bars = False
    prepare_output_dir(options.output_dir)
    address = address or os.environ.get("RAY_ADDRESS")
    started_here = not ray.is_initialized()
    if started_here:
        kwargs = {"address": address} if address else {}
        ray.init(ignore_reinit_error=True, include_dashboard=False, log_to_driver=verbose,
                 logging_level=logging.INFO if verbose else logging.WARNING, **kwargs)
    try:
        gpus = int(ray.cluster_resources().get("GPU", 0))
        workers = workers or max(1, gpus)
        cpus = actor_cpus(ray, workers)
        todo = select_shard(items, options.shard)
        # Each actor call gets several model batches, so that decoding and rendering overlap the model
        # inside the call as in a local run (a call drains its pools when it ends).
        per_call = max(1, options.batch_size) * CALL_BATCHES
        blocks = max(workers, -(-len(todo) // per_call))
        dataset = ray.data.from_items([{"path": str(item.path), "relative": item.relative} for item in todo],
                                      override_num_blocks=max(1, min(len(todo), blocks)))
        run_options = {key: value for key, value in asdict(options).items() if key != "workers"}
        run_options["output_dir"] = str(Path(options.output_dir).resolve())
        results = dataset.map_batches(
            ExplainWorker, fn_constructor_kwargs={"loader": loader, "explainer_options": dict(explainer_options), "scorer": scorer,
                                                  "run_options": run_options},
            batch_size=per_call, batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=workers), num_gpus=1 if gpus else 0, num_cpus=cpus)
        from .._version import __version__

        summary = Summary(total=len(todo))
        run_id = new_run_id()  # one id for the run: the driver stamps every actor's records with it
        manifest = ManifestWriter(options.output_dir, manifest_name(options.shard))
        try:
            manifest.write(start_record(run_id, len(todo), options.shard, __version__, request_files(options.request)))
            for batch in results.iter_batches(batch_size=None, batch_format="numpy"):
                records = [dict(json.loads(str(line)), run=run_id) for line in batch["record"]]
                manifest.write_many(records)
                for record in records:
                    summary.count(record)
                    if on_record is not None:
                        on_record(record)
            manifest.write(end_record(run_id, summary.explained, summary.skipped, summary.failed))
        except KeyboardInterrupt:
            summary.interrupted = True
        except OutputError as exc:
            summary.stopped = str(exc)
        finally:
            manifest.close()
            write_gallery_safely(options.output_dir, summary)
        return summary
    finally:
        if started_here:
            ray.shutdown()
