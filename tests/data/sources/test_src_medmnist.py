"""MedMNIST source: official splits, tasks and class names, lazy table, npz references."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import shared_path

from medsight.data.dataset import Task
from medsight.data.refs import resolve
from medsight.data.sources.medmnist import from_medmnist, parse_file_name
from medsight.data.sources.medmnist_info import INFO, lookup
from medsight.errors import InvalidDataset, UnreadableImage


def test_breastmnist_official_splits_classes_and_positive(breastmnist: Path) -> None:
    ds = from_medmnist(breastmnist)
    assert len(ds) == 780
    assert ds.split_counts() == {"train": 546, "val": 78, "test": 156}
    assert ds.task is Task.BINARY
    assert ds.classes == ["malignant", "normal, benign"]
    assert ds.positive_class == 0  # malignant is the class whose sensitivity matters
    assert ds.split("train").class_counts() == {"malignant": 147, "normal, benign": 399}
    assert ds.split("test").class_counts() == {"malignant": 42, "normal, benign": 114}
    assert all(r.patient_id is None for r in ds.records)
    assert {r.meta["modality"] for r in ds.records} == {"US"}  # what a bundle of it will expect


def test_breastmnist_build_decodes_only_label_arrays(
    breastmnist: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened: list[str] = []
    original = np.lib.npyio.NpzFile.__getitem__

    def spy(self: np.lib.npyio.NpzFile, key: str) -> np.ndarray:
        opened.append(key)
        return original(self, key)

    monkeypatch.setattr(np.lib.npyio.NpzFile, "__getitem__", spy)
    ds = from_medmnist(breastmnist)
    assert len(ds) == 780
    assert sorted(opened) == ["test_labels", "train_labels", "val_labels"]
    assert all(isinstance(r.ref, str) and r.ref.startswith("npz:") for r in ds.records)


def test_breastmnist_pixels_match_the_archive(breastmnist: Path) -> None:
    ds = from_medmnist(breastmnist)
    with np.load(breastmnist) as raw:
        expected = raw["val_images"][5].astype(np.float32)
    i = next(k for k, r in enumerate(ds.records) if r.split == "val" and r.meta["index"] == 5)
    assert ds.records[i].ref == f"npz:{breastmnist.resolve()}#val_images/5"
    image = ds.image(i)
    assert image.pixels.shape == (1, 28, 28)
    np.testing.assert_array_equal(image.pixels[0], expected)


def test_retinamnist_is_ordinal_with_five_grades() -> None:
    ds = from_medmnist(shared_path("medmnist", "retinamnist.npz"))
    assert ds.task is Task.ORDINAL
    assert ds.classes == ["0", "1", "2", "3", "4"]
    assert ds.split_counts() == {"train": 1080, "val": 120, "test": 400}
    assert list(ds.split("train").class_counts().values()) == [486, 128, 206, 194, 66]
    assert ds.image(0).pixels.shape == (3, 28, 28)


def test_adrenalmnist3d_gives_volumes() -> None:
    ds = from_medmnist(shared_path("medmnist", "adrenalmnist3d.npz"))
    assert ds.task is Task.BINARY and ds.classes == ["normal", "hyperplasia"]
    assert ds.positive_class == 1
    assert ds.split_counts() == {"train": 1188, "val": 98, "test": 298}
    test_index = next(k for k, r in enumerate(ds.records) if r.split == "test")
    volume = ds.image(test_index)
    assert volume.pixels.shape == (1, 28, 28, 28) and volume.is_volume


def test_size_is_read_from_the_name_and_header() -> None:
    ds = from_medmnist(shared_path("medmnist", "adrenalmnist3d_64.npz"))
    assert ds.name == "adrenalmnist3d_64"
    assert ds.records[0].meta["size"] == 64
    assert len(ds) == 1584


@pytest.mark.parametrize(
    ("file", "expected"),
    [
        ("breastmnist.npz", ("breastmnist", 28)),
        ("breastmnist_224.npz", ("breastmnist", 224)),
        ("/x/adrenalmnist3d_64.npz", ("adrenalmnist3d", 64)),
        ("ChestMNIST_128.npz", ("chestmnist", 128)),
    ],
)
def test_file_names_give_subset_and_size(file: str, expected: tuple[str, int]) -> None:
    assert parse_file_name(file) == expected


def test_catalogue_covers_every_subset() -> None:
    assert len(INFO) == 18
    assert lookup("chest").task is Task.MULTILABEL and len(lookup("chestmnist").labels) == 14
    assert lookup("adrenal3d").flag == "adrenalmnist3d"
    assert lookup("organmnist3d").sizes == (28, 64)
    assert lookup("pathmnist").sizes == (28, 64, 128, 224)
    assert all(len(info.modality) >= 2 for info in INFO.values())  # every subset has a code
    assert (lookup("breast").modality, lookup("retina").modality) == ("US", "OP")


def test_renamed_file_needs_a_name(breastmnist: Path, tmp_path: Path) -> None:
    renamed = tmp_path / "my_copy.npz"
    shutil.copyfile(breastmnist, renamed)
    with pytest.raises(InvalidDataset, match="pass name="):
        from_medmnist(renamed)
    assert from_medmnist(renamed, name="breastmnist").split_counts()["val"] == 78


def test_multilabel_subset_gives_flag_tuples(tmp_path: Path) -> None:
    path = tmp_path / "chestmnist.npz"
    labels = np.zeros((3, 14), np.uint8)
    labels[1, [0, 5]] = 1
    np.savez_compressed(path, train_images=np.zeros((3, 28, 28), np.uint8), train_labels=labels)
    ds = from_medmnist(path)
    assert ds.task is Task.MULTILABEL and ds.classes[5] == "nodule"
    assert ds.records[1].label == (1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0)
    assert ds.split_counts() == {"train": 3}


def test_labels_that_do_not_match_images_are_rejected(tmp_path: Path) -> None:
    path = tmp_path / "breastmnist.npz"
    np.savez(
        path, train_images=np.zeros((4, 28, 28), np.uint8), train_labels=np.zeros((3, 1), np.uint8)
    )
    with pytest.raises(InvalidDataset, match="train_labels has shape"):
        from_medmnist(path)


def test_out_of_range_label_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "breastmnist.npz"
    np.savez(
        path,
        train_images=np.zeros((2, 28, 28), np.uint8),
        train_labels=np.array([[0], [2]], np.uint8),
    )
    with pytest.raises(InvalidDataset, match="label 2"):
        from_medmnist(path)


def test_not_an_npz_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "breastmnist.npz"
    path.write_text("not a zip")
    with pytest.raises(InvalidDataset, match="not a readable npz"):
        from_medmnist(path)


def test_malformed_npz_reference_is_unreadable() -> None:
    with pytest.raises(UnreadableImage, match="npz:<file>#<array>/<index>"):
        resolve("npz:/somewhere/file.npz#train_images")
