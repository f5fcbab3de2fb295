"""The decode stage of a folder run: inputs read (Pillow, DICOM, NIfTI) in a thread pool ahead of the
model, each with its identity taken first, and its segmentation region on the model's output grid."""
from __future__ import annotations

import collections
import os
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..errors import ImageError, first_line
from ..explainers.heatmap import box_region, mask_region
from ..inputs.discovery import InputImage
from ..inputs.identity import DIGESTS
from ..inputs.images import image_size, load_for_model, photo_bytes
from ..inputs.volumes import load_volume_for_model
from .options import RunOptions
from .records import RunRecords


@dataclass
class Decoded:
    """An input ready for the model: the photo uint8 (H, W, 3) and the model input float32 (h, w, 3); for
    a volume, the volume float32 (D, H, W, C), the model input (d, h, w, C) and its NIfTI affine."""

    item: InputImage
    photo: np.ndarray
    model_input: np.ndarray
    affine: np.ndarray | None = None  # a NIfTI volume's voxel-to-millimetre affine (4, 4)
    region: np.ndarray | None = None  # segmentation: --region or --mask on the model's output grid, float32 (h, w)
    source: dict | None = None  # the input file's identity (gradcam.identity), taken before it was read


class DecodeStage:
    """Reads submitted inputs in its pool; :meth:`take` hands back the oldest, in submission order.
    ``pending``: (input, its read's Future, its estimated bytes) for each read not yet taken."""

    def __init__(self, explainer, options: RunOptions, mask: np.ndarray | None, records: RunRecords):
        self.explainer = explainer
        self.options = options
        self.mask = mask  # --mask, loaded (inputs.masks.load_mask), or None
        self.records = records
        self.pool = ThreadPoolExecutor(options.workers, thread_name_prefix="gradcam-decode")
        self.pending: collections.deque[tuple[InputImage, Future, int]] = collections.deque()

    def submit(self, item: InputImage) -> None:
        """Queue an input's read (a volume's when the model is 3-D)."""
        explainer, options = self.explainer, self.options
        if explainer.volumetric:
            future = self.pool.submit(_identify_and_read, load_volume_for_model, item.path,
                                      explainer.input_size, explainer.channels, options.max_pixels)
        else:
            future = self.pool.submit(_identify_and_read, load_for_model, item.path, explainer.input_size,
                                      options.max_pixels, options.max_size, options.window)
        self.pending.append((item, future, photo_bytes(item.path) if os.path.isfile(item.path) else 0))

    def take(self) -> Decoded | None:
        """The oldest pending input once read; None when it could not be read (its error is recorded)."""
        item, future, _ = self.pending.popleft()
        try:
            source, (photo, model_input, *affine) = future.result()
            region = self._region_of(item, photo)
        except ImageError as exc:
            self.records.error(item, str(exc))
            return None
        except MemoryError:
            self.records.error(item, "not enough memory to read this input")
            return None
        except Exception as exc:  # a reader's own error that no check foresaw: this input fails alone
            self.records.error(item, f"cannot read: {first_line(exc)}")
            return None
        return Decoded(item, photo, model_input, affine[0] if affine else None, region, source)

    def _region_of(self, item: InputImage, photo: np.ndarray) -> np.ndarray | None:
        """The --region box or --mask of a photo on the model's output grid; None without either. Both
        refer to the photo's own pixels (before --max-size)."""
        if self.options.region is None and self.mask is None:
            return None
        size = image_size(item.path)
        size = size[::-1] if size else photo.shape[:2]
        grid = self.explainer.output_size
        if self.options.region is not None:
            return box_region(self.options.region, size, grid)
        return mask_region(self.mask, size, grid)

    def cancel(self) -> None:
        """Cancel the reads not yet started (an interrupted run)."""
        for _, future, _ in self.pending:
            future.cancel()

    def close(self) -> None:
        """Stop the pool without waiting for reads in progress."""
        self.pool.shutdown(wait=False, cancel_futures=True)


def _identify_and_read(read: Callable, path, *args) -> tuple[dict | None, tuple]:
    """(the input's identity, taken first, ``read(path, *args)``): a file changed while it is read
    then matches no record, and is explained again by the next run. A pipe, device or socket is refused
    unopened (reading one could block the run for ever)."""
    source = DIGESTS.identity(path)  # None for anything but a regular file, which it never opens
    if source is None and not os.path.isfile(path):
        raise ImageError("not a regular file (a pipe, a device or a socket)")
    return source, read(path, *args)
