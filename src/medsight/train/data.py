"""Medsight Datasets as torch data: a compact image cache, targets and batch loaders.

Images are decoded and preprocessed once (through `medsight.models.inputs.load_arrays`, the one
preprocessing path) in chunks, and kept as uint8 when that is lossless (8-bit sources such as
MedMNIST, PNG, JPEG, before or after /255 scaling) or as float16 otherwise: a quarter or a half
of float32, so an epoch never decodes a file again and peak memory is the cache plus one chunk.
Unreadable images are skipped and reported by `ImageCache.errors`, never silently dropped.
`cache_images` picks where the rows live: in memory (the default), in a memory-mapped disk cache
reused across runs (`medsight.train.disk_cache`), or nowhere: decoded again for every batch
(`medsight.train.streaming`), for sets that even the disk should not hold.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler
from torch.utils.data import Dataset as TorchDataset

from medsight.data.dataset import Dataset, Task
from medsight.errors import InvalidConfig, InvalidDataset
from medsight.io.image import Image
from medsight.models.inputs import iter_arrays

CACHE_DTYPES = ("auto", "uint8", "float16", "float32")
CACHE_MODES = ("memory", "disk", "stream")
ImageTransform = Callable[[Image], Image]
LoadProgress = Callable[[int, int], None]

_FLOAT16_MAX = 65504.0


class RowSource(Protocol):
    """Encoded cache rows that are not one in-memory tensor (several disk segments, or images
    decoded on demand): ``shape`` is (rows, *sample shape), ``source[rows]`` a tensor of them."""

    shape: tuple[int, ...]

    def __getitem__(self, rows: torch.Tensor) -> torch.Tensor: ...


class ImageCache:
    """Preprocessed images of a dataset in a compact tensor (see module docstring).

    ``index[i]`` is the dataset position of cached row i (unreadable records have no row);
    ``errors`` lists ``(ref, reason)`` of the skipped ones. `batch(rows)` returns float32.
    ``data`` is a tensor (in memory, or over a memory-mapped file) or a `RowSource`;
    ``decoded`` counts the records decoded to build the cache (0: all reused from disk);
    ``stats`` (mean, std per channel) is given when the builder already computed them;
    ``holds`` keeps what the rows need alive with them (a disk pool's in-use lock).
    """

    def __init__(self, data: torch.Tensor | RowSource, mode: str, index: np.ndarray,
                 errors: list[tuple[str, str]] | None = None, n_records: int | None = None,
                 decoded: int | None = None,
                 stats: tuple[np.ndarray, np.ndarray] | None = None):
        self.data = data
        self.mode = mode  # "uint8" (integers 0..255), "unit8" (k/255), "float16", "float32"
        self.index = np.asarray(index, dtype=np.int64)
        self.errors = list(errors or [])
        self.n_records = len(self.index) if n_records is None else int(n_records)
        self.decoded = decoded
        self.stats = stats
        self.holds: tuple[Any, ...] = ()

    # -- construction ------------------------------------------------------------------------
    @classmethod
    def build(
        cls,
        dataset: Dataset,
        preprocess: ImageTransform | None = None,
        dtype: str = "auto",
        chunk_size: int = 512,
        workers: int = 1,
        progress: LoadProgress | None = None,
    ) -> ImageCache:
        """Decode, preprocess and store every readable image of `dataset`."""
        if dtype not in CACHE_DTYPES:
            raise InvalidConfig(f"cache dtype {dtype!r} is not one of {list(CACHE_DTYPES)}")
        parts: list[np.ndarray] = []
        index: list[np.ndarray] = []
        errors: list[tuple[str, str]] = []
        mode: str | None = None
        for chunk in iter_arrays(dataset, preprocess, chunk_size, workers, progress):
            errors.extend(chunk.errors)
            if len(chunk.x) == 0:
                continue
            this = chunk_mode(dtype, chunk.x)
            if mode is None:
                mode = this
            elif this != mode:
                wider = _widen(mode, this)
                parts = [_encode(_decode_np(p, mode), wider) for p in parts]
                mode = wider
            parts.append(_encode(chunk.x, mode))
            index.append(chunk.indices[chunk.ok])
        assert mode is not None  # iter_arrays raised when nothing was readable
        data = torch.from_numpy(np.concatenate(parts) if len(parts) > 1 else parts[0])
        return cls(data, mode, np.concatenate(index), errors, len(dataset), len(dataset))

    @classmethod
    def from_array(cls, x: np.ndarray, dtype: str = "auto") -> ImageCache:
        """A cache over an already preprocessed float array (N, C, ...)."""
        x = np.asarray(x, dtype=np.float32)
        mode = _best_mode(x) if dtype == "auto" else _fixed_mode(dtype, x)
        return cls(torch.from_numpy(_encode(x, mode)), mode, np.arange(len(x)))

    # -- access ------------------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self.data.shape[0])

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.data.shape[1:])

    @property
    def channels(self) -> int:
        return self.sample_shape[0]

    @property
    def spatial_dims(self) -> int:
        return len(self.sample_shape) - 1

    @property
    def nbytes(self) -> int:
        """Bytes of the encoded rows (in memory, or mapped from disk); 0 when streamed."""
        if isinstance(self.data, torch.Tensor):
            return int(self.data.element_size() * self.data.nelement())
        return int(getattr(self.data, "nbytes", 0))

    def tensor(self) -> torch.Tensor:
        """Every encoded row as one tensor (read into memory unless it already is a tensor)."""
        if isinstance(self.data, torch.Tensor):
            return self.data
        return self.data[torch.arange(len(self))]

    def batch(self, rows: torch.Tensor | np.ndarray | list[int]) -> torch.Tensor:
        """Float32 images of the given cache rows."""
        rows_t = torch.as_tensor(np.asarray(rows, dtype=np.int64))
        return _decode(self.data[rows_t], self.mode)

    def subset(self, rows: np.ndarray) -> ImageCache:
        """A cache holding only the given rows (same encoding)."""
        rows = np.asarray(rows, dtype=np.int64)
        return ImageCache(self.data[torch.as_tensor(rows)], self.mode, self.index[rows])

    def concat(self, other: ImageCache) -> ImageCache:
        """Rows of `self` then `other` (index positions kept as they are)."""
        if self.sample_shape != other.sample_shape:
            raise InvalidDataset(
                f"cannot join images of shape {self.sample_shape} and {other.sample_shape}: "
                "use the same preprocess (resize) for both"
            )
        mode = self.mode if self.mode == other.mode else _widen(self.mode, other.mode)
        a = self.tensor() if self.mode == mode else torch.from_numpy(
            _encode(_decode_np(self.tensor().numpy(), self.mode), mode))
        b = other.tensor() if other.mode == mode else torch.from_numpy(
            _encode(_decode_np(other.tensor().numpy(), other.mode), mode))
        return ImageCache(torch.cat([a, b]), mode, np.concatenate([self.index, other.index]))

    def channel_stats(self, chunk: int = 1024) -> tuple[np.ndarray, np.ndarray]:
        """Per-channel mean and standard deviation over all cached pixels (float64)."""
        if self.stats is not None:
            return self.stats
        c = self.channels
        total = np.zeros(c)
        sq = np.zeros(c)
        count = 0
        for start in range(0, len(self), chunk):
            x = self.batch(np.arange(start, min(start + chunk, len(self)))).double()
            x = x.transpose(0, 1).reshape(c, -1)
            total += x.sum(1).numpy()
            sq += (x * x).sum(1).numpy()
            count += x.shape[1]
        mean = total / max(count, 1)
        var = np.maximum(sq / max(count, 1) - mean**2, 0.0)
        return mean, np.sqrt(var)


def cache_images(
    dataset: Dataset,
    preprocess: ImageTransform | None = None,
    dtype: str = "auto",
    cache: str = "memory",
    cache_dir: str | Path | None = None,
    chunk_size: int = 512,
    workers: int = 1,
    progress: LoadProgress | None = None,
) -> ImageCache:
    """The `ImageCache` of `dataset` where `cache` says: ``"memory"`` (`ImageCache.build`),
    ``"disk"`` (memory-mapped files under `cache_dir`, reused by later runs and folds) or
    ``"stream"`` (one scan for readability and statistics; every batch decoded again)."""
    if cache == "memory":
        return ImageCache.build(dataset, preprocess, dtype, chunk_size, workers, progress)
    if cache == "disk":
        from medsight.train.disk_cache import build_disk_cache

        return build_disk_cache(dataset, preprocess, dtype, cache_dir, chunk_size, workers,
                                progress)
    if cache == "stream":
        from medsight.train.streaming import scan_for_streaming

        return scan_for_streaming(dataset, preprocess, dtype, chunk_size, workers, progress)
    raise InvalidConfig(f"cache {cache!r} is not one of {list(CACHE_MODES)}")


# -- encoding ---------------------------------------------------------------------------------
def chunk_mode(dtype: str, x: np.ndarray) -> str:
    """The encoding a chunk of preprocessed pixels needs under the `dtype` setting."""
    if dtype not in CACHE_DTYPES:
        raise InvalidConfig(f"cache dtype {dtype!r} is not one of {list(CACHE_DTYPES)}")
    return _best_mode(x) if dtype == "auto" else _fixed_mode(dtype, x)


def encode(x: np.ndarray, mode: str) -> np.ndarray:
    """Float pixels in a cache encoding (`decode` inverts it)."""
    return _encode(x, mode)


def decode(data: np.ndarray, mode: str) -> np.ndarray:
    """Float32 pixels of encoded cache rows."""
    return _decode_np(data, mode)


def widen(a: str, b: str) -> str:
    """The narrowest encoding holding values of both encodings."""
    return _widen(a, b)


def _best_mode(x: np.ndarray) -> str:
    """The smallest lossless encoding of `x`, float16 when none is (float32 if out of range)."""
    if x.size and np.isfinite(x).all():
        lo, hi = float(x.min()), float(x.max())
        if lo >= 0 and hi <= 255 and np.array_equal(_decode_np(_encode(x, "uint8"), "uint8"), x):
            return "uint8"
        if lo >= 0 and hi <= 1 and np.array_equal(_decode_np(_encode(x, "unit8"), "unit8"), x):
            return "unit8"
    return "float16" if _fits_float16(x) else "float32"


def _fixed_mode(dtype: str, x: np.ndarray) -> str:
    if dtype == "uint8":
        best = _best_mode(x)
        if best not in ("uint8", "unit8"):
            raise InvalidConfig(
                "cache dtype 'uint8' asked for, but the preprocessed pixels are not 8-bit values "
                f"(range {float(x.min()):g}..{float(x.max()):g}); use 'auto' or 'float16'"
            )
        return best
    if dtype == "float16" and not _fits_float16(x):
        raise InvalidConfig(
            f"cache dtype 'float16' cannot hold pixel values up to {float(np.abs(x).max()):g}"
        )
    return dtype


def _fits_float16(x: np.ndarray) -> bool:
    return not x.size or float(np.abs(x).max()) < _FLOAT16_MAX


def _widen(a: str, b: str) -> str:
    order = ["uint8", "unit8", "float16", "float32"]
    if {a, b} == {"uint8", "unit8"}:
        return "float16"
    return order[max(order.index(a), order.index(b))]


def _encode(x: np.ndarray, mode: str) -> np.ndarray:
    if mode == "uint8":
        return np.clip(np.rint(x), 0, 255).astype(np.uint8)
    if mode == "unit8":
        return np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(x, dtype=np.float16 if mode == "float16" else np.float32)


def _decode_np(data: np.ndarray, mode: str) -> np.ndarray:
    return _decode(torch.from_numpy(np.asarray(data)), mode).numpy()


def _decode(data: torch.Tensor, mode: str) -> torch.Tensor:
    x = data.to(torch.float32)
    if mode == "unit8":
        x = x / 255.0
    return x


# -- targets ----------------------------------------------------------------------------------
def targets_tensor(dataset: Dataset, positions: np.ndarray) -> torch.Tensor:
    """Training targets of the records at `positions`: class indices (long) or label flags."""
    labels = dataset.labels[np.asarray(positions, dtype=np.int64)]
    if dataset.task is Task.MULTILABEL:
        return torch.as_tensor(labels, dtype=torch.float32)
    return torch.as_tensor(labels, dtype=torch.long)


# -- torch dataset and loader -----------------------------------------------------------------
class CachedImages(TorchDataset):
    """A torch Dataset over an `ImageCache`: item ``i`` (or a list of rows) -> (x, y, row).

    Indexing with a list returns a whole batch in one tensor operation, which is how
    `make_loader` uses it (no per-sample Python overhead for in-memory data).
    """

    def __init__(self, cache: ImageCache, targets: torch.Tensor | None = None):
        if targets is not None and len(targets) != len(cache):
            raise ValueError(f"{len(targets)} targets for {len(cache)} cached images")
        self.cache = cache
        self.targets = targets

    def __len__(self) -> int:
        return len(self.cache)

    def __getitem__(self, rows: int | list[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        single = isinstance(rows, (int, np.integer))
        idx = torch.as_tensor([rows] if single else list(rows), dtype=torch.long)
        x = self.cache.batch(idx)
        y = self.targets[idx] if self.targets is not None else torch.full((len(idx),), -1)
        if single:
            return x[0], y[0], idx[0]
        return x, y, idx


class BatchOrder(Sampler[list[int]]):
    """Row batches in a seeded random (or fixed) order; a last batch of one is dropped.

    BatchNorm cannot train on a batch of one sample, so a trailing singleton is skipped (that
    sample is seen in other epochs, since the order changes every epoch).
    """

    def __init__(self, n: int, batch_size: int, shuffle: bool, generator: torch.Generator | None):
        if batch_size < 1:
            raise InvalidConfig(f"batch_size must be >= 1, got {batch_size}")
        self.n = n
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.generator = generator

    def __iter__(self) -> Iterator[list[int]]:
        order = (
            torch.randperm(self.n, generator=self.generator) if self.shuffle
            else torch.arange(self.n)
        ).tolist()
        for start in range(0, self.n, self.batch_size):
            rows = order[start:start + self.batch_size]
            if self.shuffle and len(rows) == 1 and self.n > 1:
                continue
            yield rows

    def __len__(self) -> int:
        full, rest = divmod(self.n, self.batch_size)
        return full + (1 if rest > 1 or (rest == 1 and (self.n == 1 or not self.shuffle)) else 0)


def make_loader(
    data: CachedImages,
    batch_size: int,
    shuffle: bool,
    generator: torch.Generator | None = None,
    num_workers: int = 0,
    pin_memory: bool = False,
) -> DataLoader:
    """A DataLoader yielding whole batches from `data`; the order comes from `generator`.

    With ``num_workers > 0`` each worker's Python/NumPy seeds derive from torch's per-worker
    seed, itself drawn from `generator`, so runs stay repeatable.
    """
    return DataLoader(
        data,
        sampler=BatchOrder(len(data), batch_size, shuffle, generator),
        batch_size=None,
        num_workers=num_workers,
        pin_memory=pin_memory,
        generator=generator,
        worker_init_fn=_seed_worker if num_workers else None,
        persistent_workers=False,
    )


def _seed_worker(worker_id: int) -> None:
    import random

    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)
