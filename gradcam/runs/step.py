"""The model stage of a folder run: one compiled step per batch, on the main thread; when a batch's step
fails, each of its inputs alone, so that only those that still fail get an error record."""
from __future__ import annotations

from typing import Iterator

import numpy as np

from ..errors import first_line
from .decode import Decoded
from .options import RunOptions
from .records import RunRecords

#: one map to write: (input, map (h, w) float32, class index, probability, rank from 1, segmentation region
#: (h, w) or None), the arguments of :meth:`gradcam.runs.write.WriteStage.submit`
Map = tuple[Decoded, np.ndarray, int, float, int, np.ndarray | None]


class ModelStage:
    """Explains batches of decoded inputs with ``explainer.explain_batch``."""

    def __init__(self, explainer, options: RunOptions, records: RunRecords):
        self.explainer = explainer
        self.options = options
        self.records = records
        self._inputs: np.ndarray | None = None  # the batch's model inputs, stacked into the same memory each step

    def stacked(self, pending: list[Decoded]) -> np.ndarray:
        """The model inputs of ``pending`` as one array (B, *input shape), as ``np.stack`` makes it, but in memory
        kept from step to step: a fresh batch of 8 photos at 224 x 224 is 4.8 MB of new pages every step (their
        page faults cost more CPU than the copy). The array is only valid until the next call."""
        arrays = [entry.model_input for entry in pending]
        shape, dtype = (len(arrays), *arrays[0].shape), np.result_type(*{array.dtype for array in arrays})
        kept = self._inputs
        if kept is None or kept.shape[1:] != shape[1:] or kept.dtype != dtype or len(kept) < len(arrays):
            if any(array.shape != shape[1:] for array in arrays):
                return np.stack(arrays)  # inputs of unequal shapes: np.stack's own error
            kept = self._inputs = np.empty(shape, dtype)
        return np.stack(arrays, out=kept[: len(arrays)])

    def explain(self, pending: list[Decoded]) -> Iterator[list[Map]]:
        """The maps of each step that succeeds, input by input and rank by rank (``options.top_k`` an
        input). Lazy: the caller writes one step's maps before the next step (a failed batch's inputs
        one by one) runs."""
        regions = np.stack([entry.region for entry in pending]) if pending[0].region is not None else None
        try:
            result = self.explainer.explain_batch(self.stacked(pending), self.options.class_index, regions)
        except Exception as exc:
            if len(pending) == 1:
                self.records.error(pending[0].item, f"cannot explain: {first_line(exc)}")
                return
            for entry in pending:
                yield from self.explain([entry])
            return
        probability = result.ranked_probability
        yield [(entry, result.ranked_cams[i, k], int(result.ranked_class_index[i, k]), float(probability[i, k]),
                k + 1, result.regions[i, k] if result.regions is not None else None)
               for i, entry in enumerate(pending) for k in range(self.options.top_k)]
