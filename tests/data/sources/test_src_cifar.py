"""CIFAR-10 python batches: splits, class names, pixels, and refusal of unsafe pickles."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
from cifar_folder import NAMES, write_cifar_folder

from medsight.data.dataset import Task
from medsight.data.refs import resolve
from medsight.data.sources.cifar import from_cifar10
from medsight.errors import InvalidDataset, UnreadableImage

PER_BATCH = 4


@pytest.fixture
def cifar_folder(tmp_path: Path) -> tuple[Path, dict[str, dict[bytes, object]]]:
    return write_cifar_folder(tmp_path, PER_BATCH)


def test_train_and_test_splits_with_class_names(cifar_folder) -> None:
    folder, batches = cifar_folder
    ds = from_cifar10(folder)
    assert ds.task is Task.MULTICLASS and ds.classes == NAMES
    assert ds.split_counts() == {"train": 5 * PER_BATCH, "test": PER_BATCH}
    assert [r.label for r in ds.records[:PER_BATCH]] == batches["data_batch_1"][b"labels"]
    assert ds.records[-1].ref == f"cifar:{folder.resolve()}#test_batch/{PER_BATCH - 1}"


def test_pixels_are_channels_first_rgb(cifar_folder) -> None:
    folder, batches = cifar_folder
    ds = from_cifar10(folder)
    i = next(k for k, r in enumerate(ds.records) if r.meta == {"batch": "data_batch_3", "index": 2})
    image = ds.image(i)
    assert image.pixels.shape == (3, 32, 32) and image.photometric == "RGB"
    raw = np.asarray(batches["data_batch_3"][b"data"])[2]
    np.testing.assert_array_equal(image.pixels, raw.reshape(3, 32, 32).astype(np.float32))


def test_validation_taken_from_the_end_of_train(cifar_folder) -> None:
    folder, _ = cifar_folder
    ds = from_cifar10(folder, val_from_train=3)
    assert ds.split_counts() == {"train": 17, "val": 3, "test": PER_BATCH}
    val = [r for r in ds.records if r.split == "val"]
    assert [r.meta["batch"] for r in val] == ["data_batch_5"] * 3
    with pytest.raises(InvalidDataset, match="val_from_train"):
        from_cifar10(folder, val_from_train=20)


def test_missing_batches_are_named(cifar_folder) -> None:
    folder, _ = cifar_folder
    (folder / "data_batch_4").unlink()
    with pytest.raises(InvalidDataset, match=r"missing \['data_batch_4'\]"):
        from_cifar10(folder)


class _Evil:
    def __reduce__(self):  # noqa: ANN204 - builds a pickle that would call os.getcwd
        return (os.getcwd, ())


def test_pickle_that_would_run_code_is_refused(cifar_folder) -> None:
    folder, _ = cifar_folder
    with open(folder / "test_batch", "wb") as fh:
        pickle.dump({b"labels": [0], b"data": _Evil()}, fh)
    with pytest.raises(InvalidDataset, match="refusing to load posix.getcwd|refusing to load"):
        from_cifar10(folder)


def test_reference_to_missing_image_is_unreadable(cifar_folder) -> None:
    folder, _ = cifar_folder
    with pytest.raises(UnreadableImage, match="holds only 4 images"):
        resolve(f"cifar:{folder.resolve()}#test_batch/7")
