"""Dataset -> preprocessed array: the one place where images become model input for sklearn.

Every record is decoded lazily (``dataset.image(i)``), passed through the saved preprocessing
chain and stacked into a float32 ``(N, C, H, W)`` (or ``(N, C, D, H, W)``) array. Unreadable
images are named, counted and skipped with a logged warning, never dropped silently; images
whose shapes still differ after preprocessing are a configuration error (add a resize step).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from medsight.data.dataset import Dataset
from medsight.errors import InvalidConfig, InvalidDataset, UnreadableImage
from medsight.io.image import Image

log = logging.getLogger(__name__)

ImageTransform = Callable[[Image], Image]
Progress = Callable[[int, int], None]
_WARN_EACH = 10  # unreadable images logged one by one; the rest are summarised


@dataclass
class LoadedArrays:
    """Stacked pixels of the readable records and a report of the unreadable ones.

    ``x`` holds one row per *readable* record, in dataset order; ``ok[i]`` says whether record i
    is among them; ``errors`` lists ``(ref, reason)`` for each skipped record.
    """

    x: np.ndarray
    ok: np.ndarray
    errors: list[tuple[str, str]] = field(default_factory=list)

    @property
    def indices(self) -> np.ndarray:
        """Dataset indices of the rows of ``x``."""
        return np.flatnonzero(self.ok)

    @property
    def n_skipped(self) -> int:
        return len(self.errors)


def load_arrays(
    dataset: Dataset,
    preprocess: ImageTransform | None = None,
    progress: Progress | None = None,
    workers: int = 1,
    require_readable: bool = True,
) -> LoadedArrays:
    """Decode, preprocess and stack every image of `dataset` (see module docstring).

    `preprocess` is a `medsight.preprocess.Preprocess` (or any ``Image -> Image`` callable);
    `progress(done, total)` is called as records are processed; `workers` > 1 decodes in a
    thread pool (pixel decoders release the GIL for most of their work). When no image is
    readable it raises `InvalidDataset`, or with ``require_readable=False`` returns an empty ``x``.
    """
    n = len(dataset)
    ok = np.zeros(n, dtype=bool)
    errors: list[tuple[str, str]] = []
    if n == 0:
        return LoadedArrays(np.zeros((0,), dtype=np.float32), ok, errors)

    x: np.ndarray | None = None
    first: tuple[str, tuple[int, ...]] | None = None
    row = 0
    for i, result in _decoded(dataset, preprocess, workers):
        ref = dataset.records[i].ref
        if isinstance(result, UnreadableImage):
            errors.append((ref, result.reason))
            if len(errors) <= _WARN_EACH:
                log.warning("skipping unreadable image %s: %s", ref, result.reason)
        else:
            shape = tuple(int(s) for s in result.shape)
            if first is None:
                first = (ref, shape)
                x = np.empty((n, *shape), dtype=np.float32)
            elif shape != first[1]:
                raise InvalidConfig(
                    f"{dataset.name}: images differ in shape after preprocessing: {first[0]} is "
                    f"{first[1]} but {ref} is {shape} (channels first). Add a resize step to the "
                    "preprocess chain, e.g. {'resize': {'size': [64, 64]}}, so that every image "
                    "has the same shape."
                )
            assert x is not None
            x[row] = result
            ok[i] = True
            row += 1
        if progress is not None:
            progress(i + 1, n)

    if errors:
        log.warning(
            "%s: skipped %d of %d images as unreadable (first: %s: %s)",
            dataset.name, len(errors), n, errors[0][0], errors[0][1],
        )
    if x is None and not require_readable:
        return LoadedArrays(np.zeros((0,), dtype=np.float32), ok, errors)
    if x is None:
        raise InvalidDataset(
            f"{dataset.name}: none of its {n} images could be read; first error: "
            f"{errors[0][0]}: {errors[0][1]}"
        )
    return LoadedArrays(x[:row] if row < n else x, ok, errors)


def _decoded(
    dataset: Dataset, preprocess: ImageTransform | None, workers: int
) -> Iterator[tuple[int, np.ndarray | UnreadableImage]]:
    """(index, preprocessed pixels or the UnreadableImage error) in dataset order."""

    def one(i: int) -> np.ndarray | UnreadableImage:
        try:
            image = dataset.image(i)
        except UnreadableImage as exc:
            return exc
        if preprocess is not None:
            image = preprocess(image)
        return np.asarray(image.pixels, dtype=np.float32)

    n = len(dataset)
    if workers <= 1:
        for i in range(n):
            yield i, one(i)
        return
    chunk = workers * 8  # bounded number of decoded images in flight
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for start in range(0, n, chunk):
            idx = range(start, min(start + chunk, n))
            yield from zip(idx, pool.map(one, idx), strict=True)


@dataclass
class ArrayChunk:
    """Preprocessed pixels of one chunk of a dataset: ``x`` rows are ``indices[ok]``."""

    indices: np.ndarray
    x: np.ndarray
    ok: np.ndarray
    errors: list[tuple[str, str]] = field(default_factory=list)


def iter_arrays(
    dataset: Dataset,
    preprocess: ImageTransform | None,
    chunk_size: int = 512,
    workers: int = 1,
    progress: Progress | None = None,
    require_readable: bool = True,
) -> Iterator[ArrayChunk]:
    """Decode + preprocess `dataset` in chunks of `chunk_size` records (bounded memory).

    A chunk where no image is readable yields an empty ``x``; a dataset where none is readable
    raises `InvalidDataset` naming the first error (unless ``require_readable=False``).
    """
    n = len(dataset)
    errors: list[tuple[str, str]] = []
    any_ok = False
    for start in range(0, n, chunk_size):
        idx = np.arange(start, min(start + chunk_size, n))
        sub = dataset.subset(idx, name=dataset.name)
        loaded = load_arrays(sub, preprocess=preprocess, workers=workers, require_readable=False)
        any_ok = any_ok or bool(loaded.ok.any())
        errors.extend(loaded.errors)
        yield ArrayChunk(idx, loaded.x, np.asarray(loaded.ok, bool), list(loaded.errors))
        if progress is not None:
            progress(int(idx[-1]) + 1, n)
    if n and not any_ok and require_readable:
        raise InvalidDataset(
            f"{dataset.name}: none of its {n} images could be read; first error: "
            f"{errors[0][0]}: {errors[0][1]}"
        )


def predict_in_chunks(
    dataset: Dataset,
    preprocess: ImageTransform | None,
    predict: Callable[[np.ndarray], np.ndarray],
    width: int,
    chunk_size: int = 2048,
    workers: int = 1,
) -> np.ndarray:
    """(N, width) rows of ``predict(x)`` over `dataset`, decoded chunk by chunk (bounded memory).

    The one prediction loop of every estimator: rows of unreadable images are NaN, and a logged
    warning names them.
    """
    out = np.full((len(dataset), width), np.nan)
    errors: list[tuple[str, str]] = []
    for chunk in iter_arrays(dataset, preprocess, chunk_size, workers, require_readable=False):
        errors.extend(chunk.errors)
        if len(chunk.x):
            out[chunk.indices[chunk.ok]] = predict(chunk.x)
    if errors:
        log.warning("%s: %d of %d images were unreadable; their rows are NaN: %s",
                    dataset.name, len(errors), len(dataset),
                    "; ".join(f"{ref}: {why}" for ref, why in errors[:5]))
    return out
