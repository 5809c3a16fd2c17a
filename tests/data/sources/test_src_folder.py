"""Class-per-folder trees: classes, splits, hidden files, filters and clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage

from medsight.data.dataset import Task
from medsight.data.sources.folder import from_class_folders
from medsight.errors import InvalidDataset, UnreadableImage


def _png(path: Path, value: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    PILImage.fromarray(np.full((8, 10), value, np.uint8)).save(path)
    return path


def test_classes_from_folders_in_natural_order(tmp_path: Path) -> None:
    _png(tmp_path / "class10" / "a.png")
    _png(tmp_path / "class2" / "b.png")
    _png(tmp_path / "class2" / "deeper" / "c.png", 7)
    _png(tmp_path / "class1" / "d.png")
    (tmp_path / "class1" / ".DS_Store").write_bytes(b"\0")
    _png(tmp_path / ".cache" / "x.png")  # hidden folder: not a class
    _png(tmp_path / "class1" / ".thumbs" / "y.png")  # hidden folder inside a class
    ds = from_class_folders(tmp_path)
    assert ds.task is Task.MULTICLASS and ds.classes == ["class1", "class2", "class10"]
    assert [r.meta["relpath"] for r in ds.records] == [
        "class1/d.png",
        "class2/b.png",
        "class2/deeper/c.png",
        "class10/a.png",
    ]
    assert [r.label for r in ds.records] == [0, 1, 1, 2]
    assert set(ds.splits) == {None}
    assert ds.image(2).pixels.shape == (1, 8, 10) and ds.image(2).pixels.max() == 7


def test_split_folders_are_kept(tmp_path: Path) -> None:
    for split in ("train", "val", "test"):
        _png(tmp_path / split / "NORMAL" / f"{split}1.png")
        _png(tmp_path / split / "PNEUMONIA" / f"{split}2.png")
    _png(tmp_path / "train" / "PNEUMONIA" / "extra.png")
    ds = from_class_folders(tmp_path, task="binary")
    assert ds.classes == ["NORMAL", "PNEUMONIA"]
    assert ds.split_counts() == {"test": 2, "train": 3, "val": 2}
    assert ds.positive_class == 1


def test_binary_positive_is_the_abnormal_class(tmp_path: Path) -> None:
    _png(tmp_path / "abnormal" / "a.png")
    _png(tmp_path / "normal" / "b.png")
    assert from_class_folders(tmp_path, task="binary").positive_class == 0
    assert from_class_folders(tmp_path, task="binary", positive="normal").positive_class == 1
    with pytest.raises(InvalidDataset, match="positive class 'tumour'"):
        from_class_folders(tmp_path, task="binary", positive="tumour")


def test_unreadable_files_are_kept_for_the_quality_check(tmp_path: Path) -> None:
    _png(tmp_path / "a" / "ok.png")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "broken.png").write_bytes(b"not an image")
    ds = from_class_folders(tmp_path)
    assert len(ds) == 2
    with pytest.raises(UnreadableImage, match="broken.png"):
        ds.image(1)


def test_extension_filter(tmp_path: Path) -> None:
    _png(tmp_path / "a" / "one.PNG")
    (tmp_path / "a" / "notes.txt").write_text("x")
    (tmp_path / "b" / "scan.nii.gz").parent.mkdir()
    (tmp_path / "b" / "scan.nii.gz").write_bytes(b"")
    ds = from_class_folders(tmp_path, extensions=["png", ".nii.gz"])
    assert sorted(r.meta["relpath"] for r in ds.records) == ["a/one.PNG", "b/scan.nii.gz"]


def test_empty_and_missing_folders_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(InvalidDataset, match="no class folders"):
        from_class_folders(tmp_path)
    (tmp_path / "cats").mkdir()
    with pytest.raises(InvalidDataset, match="no image files"):
        from_class_folders(tmp_path)
    with pytest.raises(InvalidDataset, match="does not exist"):
        from_class_folders(tmp_path / "nope")


def test_task_must_fit_the_classes(tmp_path: Path) -> None:
    for c in ("a", "b", "c"):
        _png(tmp_path / c / "x.png")
    with pytest.raises(InvalidDataset, match="exactly 2 classes, found 3"):
        from_class_folders(tmp_path, task="binary")
    with pytest.raises(InvalidDataset, match="one label per image"):
        from_class_folders(tmp_path, task="multilabel")
    with pytest.raises(InvalidDataset, match="unknown task"):
        from_class_folders(tmp_path, task="regression")


def test_files_outside_class_folders_are_reported(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _png(tmp_path / "a" / "x.png")
    _png(tmp_path / "b" / "y.png")
    (tmp_path / "labels_readme.txt").write_text("which folder is which")
    with caplog.at_level("WARNING", logger="medsight.data.sources.folder"):
        ds = from_class_folders(tmp_path)
    assert len(ds) == 2
    assert "1 file(s)" in caplog.text and "labels_readme.txt" in caplog.text
