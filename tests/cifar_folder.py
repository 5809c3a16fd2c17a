"""Test helper: a tiny CIFAR-10 "python version" folder (pickled batches, as the real download)."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def write_batch(path: Path, seed: int, per_batch: int) -> dict[bytes, object]:
    """One batch file of `per_batch` random 32x32 RGB images; returns what it holds."""
    rng = np.random.default_rng(seed)
    batch = {
        b"batch_label": path.name.encode(),
        b"labels": [int(v) for v in rng.integers(0, 10, per_batch)],
        b"data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
        b"filenames": [f"img_{seed}_{i}.png".encode() for i in range(per_batch)],
    }
    with open(path, "wb") as fh:
        pickle.dump(batch, fh)
    return batch


def write_cifar_folder(root: Path, per_batch: int) -> tuple[Path, dict[str, dict[bytes, object]]]:
    """``root/cifar-10-batches-py`` with five train batches, a test batch and batches.meta."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir()
    batches = {f"data_batch_{i}": write_batch(folder / f"data_batch_{i}", i, per_batch)
               for i in range(1, 6)}
    batches["test_batch"] = write_batch(folder / "test_batch", 99, per_batch)
    with open(folder / "batches.meta", "wb") as fh:
        pickle.dump({b"label_names": [n.encode() for n in NAMES], b"num_vis": 3072}, fh)
    return folder, batches
