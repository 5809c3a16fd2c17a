"""CIFAR-10 "python version" batch folders as a dataset (a non-medical benchmark for sanity runs).

The batches are pickles; they are loaded with an unpickler that only admits the numpy types the
format uses, so a tampered file cannot run code. Building the table has to unpickle each batch
to read its labels; pixels are then served per image from a small cache of decoded batches.
"""

from __future__ import annotations

import os
import pickle
from dataclasses import replace
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from medsight.data.dataset import Dataset, Record, Task
from medsight.data.refs import register_scheme
from medsight.errors import InvalidDataset, UnreadableImage
from medsight.io.image import Image

TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
META = "batches.meta"
_ALLOWED = {
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
}


class _NumpyOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a CIFAR batch")


def load_batch(path: str | os.PathLike[str]) -> dict[bytes, Any]:
    """Unpickle one CIFAR batch file (keys are bytes, e.g. ``b"data"``, ``b"labels"``)."""
    try:
        with open(path, "rb") as fh:
            batch = _NumpyOnlyUnpickler(fh, encoding="bytes").load()
    except (OSError, pickle.UnpicklingError, EOFError, ValueError, TypeError) as exc:
        raise InvalidDataset(f"cannot read CIFAR batch {path}: {exc}") from exc
    if not isinstance(batch, dict):
        raise InvalidDataset(f"CIFAR batch {path} is not a dict but {type(batch).__name__}")
    return batch


@lru_cache(maxsize=2)
def _batch_pixels(path: str, mtime_ns: int) -> np.ndarray:
    """(N, 3, 32, 32) uint8 pixels of a batch; cached, keyed on modification time."""
    data = np.asarray(load_batch(path).get(b"data"))
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise UnreadableImage(path, f"b'data' has shape {data.shape}, expected (N, 3072)")
    return data.reshape(-1, 3, 32, 32)


def from_cifar10(folder: str | os.PathLike[str], val_from_train: int = 0) -> Dataset:
    """Build CIFAR-10 from its python batches: data_batch_1..5 -> train, test_batch -> test.

    ``val_from_train=k`` moves the last k training images (of data_batch_5) to a ``val`` split.
    Refs are ``cifar:<folder>#<batch>/<i>``; images are (3, 32, 32) RGB.
    """
    base = Path(folder).expanduser().resolve()
    if not base.is_dir():
        raise InvalidDataset(f"CIFAR-10 folder {base} does not exist")
    missing = [n for n in (*TRAIN_BATCHES, TEST_BATCH, META) if not (base / n).is_file()]
    if missing:
        raise InvalidDataset(
            f"{base} is not a CIFAR-10 python folder: missing {missing} "
            "(expected data_batch_1..5, test_batch, batches.meta)"
        )
    meta = load_batch(base / META)
    names = [n.decode() if isinstance(n, bytes) else str(n) for n in meta.get(b"label_names", [])]
    if not names:
        raise InvalidDataset(f"{base / META} has no label_names")

    records: list[Record] = []
    for batch in (*TRAIN_BATCHES, TEST_BATCH):
        labels = _batch_labels(base / batch, len(names))
        split = "test" if batch == TEST_BATCH else "train"
        records.extend(
            Record(
                ref=f"cifar:{base}#{batch}/{i}",
                label=y,
                split=split,
                meta={"batch": batch, "index": i},
            )
            for i, y in enumerate(labels)
        )
    n_train = sum(r.split == "train" for r in records)
    if not 0 <= val_from_train < n_train:
        raise InvalidDataset(f"val_from_train={val_from_train} must be between 0 and {n_train - 1}")
    if val_from_train:
        cut = n_train - val_from_train
        records = [
            replace(r, split="val") if i >= cut and r.split == "train" else r
            for i, r in enumerate(records)
        ]
    return Dataset(records, Task.MULTICLASS, names, name="cifar10")


def _batch_labels(path: Path, n_classes: int) -> list[int]:
    batch = load_batch(path)
    labels = batch.get(b"labels")
    data = batch.get(b"data")
    if labels is None or data is None:
        raise InvalidDataset(f"CIFAR batch {path} lacks b'labels' or b'data'")
    labels = [int(y) for y in labels]
    if len(labels) != len(data):
        raise InvalidDataset(f"CIFAR batch {path}: {len(labels)} labels for {len(data)} images")
    bad = [y for y in labels if not 0 <= y < n_classes]
    if bad:
        raise InvalidDataset(f"CIFAR batch {path}: label {bad[0]} outside 0..{n_classes - 1}")
    return labels


def _resolve_cifar(rest: str, meta: dict[str, Any]) -> Image:
    folder, _, member = rest.rpartition("#")
    batch, _, index = member.rpartition("/")
    if not folder or batch not in (*TRAIN_BATCHES, TEST_BATCH) or not index.isdigit():
        raise UnreadableImage(f"cifar:{rest}", "expected cifar:<folder>#<batch>/<index>")
    path = Path(folder) / batch
    try:
        stamp = path.stat().st_mtime_ns
    except OSError as exc:
        raise UnreadableImage(f"cifar:{rest}", f"cannot open {path}: {exc}") from exc
    pixels = _batch_pixels(str(path), stamp)
    i = int(index)
    if i >= len(pixels):
        raise UnreadableImage(f"cifar:{rest}", f"{batch} holds only {len(pixels)} images")
    return Image(
        pixels=pixels[i],
        photometric="RGB",
        source=f"cifar:{rest}",
        metadata={"batch": batch, "index": i},
    )


register_scheme("cifar", _resolve_cifar)
