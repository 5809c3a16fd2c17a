"""Training images decoded again for every batch (in the DataLoader's worker processes), for
sets that even a disk cache should not hold.

`scan_for_streaming` makes one bounded-memory pass through the one preprocessing path
(`medsight.models.inputs.iter_arrays`) to learn what a cache would know without keeping a pixel:
which records are readable (the row index), the encoding cached rows would have, the sample shape
and the per-channel mean/std. The `ImageCache` it returns reads its rows from a `StreamedRows`
source that decodes, preprocesses and encodes the asked records the same way, so with the same
seeded `BatchOrder` the batches are the cached loader's, value for value. With ``num_workers`` > 0
the trainer's DataLoader runs that decoding in its worker processes.
"""

from __future__ import annotations

import numpy as np
import torch

from medsight.data.dataset import Dataset
from medsight.errors import InvalidConfig, InvalidDataset
from medsight.models.inputs import iter_arrays, load_arrays
from medsight.train.data import (
    ImageCache,
    ImageTransform,
    LoadProgress,
    chunk_mode,
    decode,
    encode,
    widen,
)


class StreamedRows:
    """Cache rows decoded on demand (a `RowSource`): row i is record ``positions[i]``."""

    nbytes = 0

    def __init__(self, dataset: Dataset, positions: np.ndarray, preprocess: ImageTransform | None,
                 mode: str, sample_shape: tuple[int, ...], workers: int = 1):
        # no LRU of decoded images: each DataLoader worker would grow its own copy
        self.dataset = Dataset(dataset.records, dataset.task, dataset.classes, dataset.name,
                               dataset.positive_class, cache_size=0)
        self.positions = np.asarray(positions, dtype=np.int64)
        self.preprocess = preprocess
        self.mode = mode
        self.shape = (len(self.positions), *sample_shape)
        self.workers = workers

    def __getitem__(self, rows: torch.Tensor) -> torch.Tensor:
        rows_np = np.asarray(rows, dtype=np.int64).reshape(-1)
        batch = self.dataset.subset(self.positions[rows_np], name=self.dataset.name)
        loaded = load_arrays(batch, self.preprocess, workers=self.workers, require_readable=False)
        if loaded.errors:
            ref, why = loaded.errors[0]
            raise InvalidDataset(f"{ref} was readable when the training set was scanned but is "
                                 f"not now ({why}); was it changed during training?")
        if tuple(loaded.x.shape[1:]) != self.shape[1:]:
            raise InvalidDataset(f"{batch.records[0].ref}: images are {loaded.x.shape[1:]} after "
                                 f"preprocessing, {self.shape[1:]} when the set was scanned")
        return torch.from_numpy(encode(loaded.x, self.mode))


def scan_for_streaming(
    dataset: Dataset,
    preprocess: ImageTransform | None = None,
    dtype: str = "auto",
    chunk_size: int = 512,
    workers: int = 1,
    progress: LoadProgress | None = None,
) -> ImageCache:
    """An `ImageCache` of `dataset` whose rows are decoded per batch (see module docstring).

    The statistics are those of the encoded values, as `ImageCache.channel_stats` computes them;
    when a later chunk widens the encoding (e.g. uint8 then float16), earlier chunks count with
    the values of their own encoding.
    """
    index: list[np.ndarray] = []
    errors: list[tuple[str, str]] = []
    mode: str | None = None
    shape: tuple[int, ...] | None = None
    total = sq = None
    count = 0
    for chunk in iter_arrays(dataset, preprocess, chunk_size, workers, progress):
        errors.extend(chunk.errors)
        if len(chunk.x) == 0:
            continue
        if shape is None:
            shape = tuple(int(s) for s in chunk.x.shape[1:])
        elif tuple(chunk.x.shape[1:]) != shape:
            raise InvalidConfig(
                f"{dataset.name}: images differ in shape after preprocessing ({shape} and "
                f"{tuple(chunk.x.shape[1:])}); add a resize step to the preprocess chain"
            )
        this = chunk_mode(dtype, chunk.x)
        mode = this if mode is None else widen(mode, this)
        x = decode(encode(chunk.x, this), this).astype(np.float64)
        x = x.swapaxes(0, 1).reshape(shape[0], -1)
        total = x.sum(1) if total is None else total + x.sum(1)
        sq = (x * x).sum(1) if sq is None else sq + (x * x).sum(1)
        count += x.shape[1]
        index.append(chunk.indices[chunk.ok])
    assert mode is not None and shape is not None and total is not None and sq is not None
    mean = total / count
    std = np.sqrt(np.maximum(sq / count - mean**2, 0.0))
    positions = np.concatenate(index)
    rows = StreamedRows(dataset, positions, preprocess, mode, shape, workers)
    return ImageCache(rows, mode, positions, errors, len(dataset), len(dataset), (mean, std))
