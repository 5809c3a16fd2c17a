"""Read single images out of MedMNIST-style ``.npz`` archives, caching the decompressed arrays.

An ``.npz`` is a zip of ``.npy`` arrays (``train_images``, ``train_labels``, ...); compressed
members cannot be memory-mapped, so each array is decompressed once and kept in a small LRU
cache keyed by (path, modification time, size, key), read-only so callers cannot alter it.
Archives with too many members or a member declaring more than `MAX_INFLATED_BYTES` are refused
before anything is inflated (`medsight.io.limits.check_zip_members`).

Image arrays hold N images: ``(N, H, W)`` grey 2D, ``(N, H, W, 3)`` RGB 2D, ``(N, D, H, W)``
grey 3D (and ``(N, D, H, W, C)``), at any size (28, 64, 128, 224). `read_npz_image` returns one
of them as an `Image` with its native values (0-255 for MedMNIST) as float32.
"""

from __future__ import annotations

import functools
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from medsight.errors import UnreadableImage
from medsight.io.image import Image
from medsight.io.limits import check_zip_members

CACHE_ARRAYS = 16
"""How many decompressed arrays the LRU cache keeps (a 3D 64^3 split can be several 100 MB)."""


def npz_keys(path: str | Path) -> list[str]:
    """Names of the arrays stored in an ``.npz`` file, without decompressing them."""
    resolved, _ = _stat(path)
    try:
        with zipfile.ZipFile(resolved) as archive:
            check_zip_members(archive, str(path))
        with np.load(resolved, allow_pickle=False) as archive:
            return list(archive.files)
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        raise UnreadableImage(path, f"not a readable .npz archive: {exc}") from exc


def load_npz_arrays(path: str | Path, keys: Iterable[str] | None = None) -> dict[str, np.ndarray]:
    """All arrays (or just `keys`) of an ``.npz`` file as read-only arrays, served from a cache."""
    resolved, stamp = _stat(path)
    names = npz_keys(resolved) if keys is None else list(keys)
    return {key: _cached_array(resolved, stamp, key) for key in names}


def clear_npz_cache() -> None:
    """Forget every cached array (frees the memory they hold)."""
    _cached_array.cache_clear()


def read_npz_image(path: str | Path, key: str, index: int) -> Image:
    """Image number `index` of array `key` (``"train_images"``; ``"train"`` is accepted too).

    Grey 2D gives ``(1, H, W)``, RGB 2D ``(3, H, W)``, 3D ``(1, D, H, W)``. When a matching
    ``*_labels`` array exists, the label is kept in ``metadata["label"]`` (a list).
    """
    resolved, stamp = _stat(path)
    available = npz_keys(resolved)
    if key not in available and f"{key}_images" in available:
        key = f"{key}_images"
    if key not in available:
        raise UnreadableImage(path, f"no array {key!r} in the archive; it holds {available}")
    images = _cached_array(resolved, stamp, key)
    label = f"{path}::{key}[{index}]"
    if images.ndim < 3:
        raise UnreadableImage(label, f"array {key!r} of shape {images.shape} is not an image stack")
    if not 0 <= index < images.shape[0]:
        raise UnreadableImage(label, f"index {index} out of range: {key!r} holds {images.shape[0]}")
    pixels, photometric = _channels_first(images[index], label)
    metadata: dict[str, Any] = {"format": "npz", "npz_key": key, "npz_index": index}
    labels_key = key[: -len("_images")] + "_labels" if key.endswith("_images") else None
    if labels_key in available:
        labels = _cached_array(resolved, stamp, labels_key)
        if labels.shape[0] == images.shape[0]:
            metadata["label"] = np.atleast_1d(labels[index]).tolist()
    return Image(pixels=pixels, photometric=photometric, source=label, metadata=metadata)


def _channels_first(item: np.ndarray, label: str) -> tuple[np.ndarray, str]:
    """One stored image to channels-first float32, telling 2D colour from 3D grey by its shape."""
    if item.ndim == 2:
        return item[None].astype(np.float32), "MONOCHROME2"
    if item.ndim == 3 and item.shape[-1] == 3:
        return np.moveaxis(item, -1, 0).astype(np.float32), "RGB"
    if item.ndim == 3:
        return item[None].astype(np.float32), "MONOCHROME2"
    if item.ndim == 4 and item.shape[-1] in (1, 3):
        photometric = "RGB" if item.shape[-1] == 3 else "MONOCHROME2"
        return np.moveaxis(item, -1, 0).astype(np.float32), photometric
    raise UnreadableImage(label, f"cannot interpret an image of shape {item.shape}")


def _stat(path: str | Path) -> tuple[str, tuple[int, int]]:
    """Absolute path and (mtime_ns, size), so a rewritten file is not served from the cache."""
    p = Path(path)
    try:
        info = p.stat()
    except FileNotFoundError:
        raise UnreadableImage(path, "file not found") from None
    except OSError as exc:
        raise UnreadableImage(path, f"cannot access file: {exc}") from exc
    if not p.is_file():
        raise UnreadableImage(path, "not a regular file")
    return str(p.resolve()), (info.st_mtime_ns, info.st_size)


@functools.lru_cache(maxsize=CACHE_ARRAYS)
def _cached_array(path: str, stamp: tuple[int, int], key: str) -> np.ndarray:
    """Decompress one member of the archive (read-only); `stamp` only invalidates the cache."""
    try:
        with zipfile.ZipFile(path) as members:
            check_zip_members(members, path)
        with np.load(path, allow_pickle=False) as archive:
            if key not in archive.files:
                names = list(archive.files)
                raise UnreadableImage(path, f"no array {key!r} in the archive; it holds {names}")
            array = archive[key]
    except UnreadableImage:
        raise
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        raise UnreadableImage(path, f"cannot decompress array {key!r}: {exc}") from exc
    array.flags.writeable = False
    return array
