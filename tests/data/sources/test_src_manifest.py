"""CSV/Parquet manifests: path resolution, label encodings, task inference, clear errors."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from medsight.data.dataset import Task
from medsight.data.sources.manifest import from_manifest
from medsight.errors import InvalidDataset


def _files(folder: Path, names: list[str]) -> None:
    for n in names:
        (folder / n).parent.mkdir(parents=True, exist_ok=True)
        (folder / n).write_bytes(b"x")


def test_csv_with_names_patients_splits_and_extra_columns(tmp_path: Path) -> None:
    _files(tmp_path, ["img/a.png", "img/b.png", "img/c.png"])
    csv = tmp_path / "manifest.csv"
    csv.write_text(
        "path,label,patient_id,split,age,site\n"
        "img/a.png,benign,P1,train,61,north\n"
        "img/b.png,malignant,P1,train,61.5,north\n"
        "img/c.png,,P2,Test,,south\n"
    )
    ds = from_manifest(csv)
    assert ds.task is Task.BINARY and ds.classes == ["benign", "malignant"]
    assert ds.positive_class == 1  # "benign" reads as the negative class
    assert [r.label for r in ds.records] == [0, 1, None]
    assert ds.records[0].ref == str(tmp_path / "img" / "a.png")
    assert ds.patient_ids == ["P1", "P1", "P2"] and ds.splits == ["train", "train", "test"]
    assert ds.records[0].meta == {"manifest_row": 1, "age": 61, "site": "north"}
    assert ds.records[1].meta["age"] == 61.5 and ds.records[2].meta["age"] is None
    assert ds.records[0].study_id is None


def test_integer_labels_and_given_classes(tmp_path: Path) -> None:
    _files(tmp_path, ["a", "b", "c"])
    csv = tmp_path / "m.csv"
    csv.write_text("path,label\na,0\nb,2\nc,1\n")
    ds = from_manifest(csv)
    assert ds.task is Task.MULTICLASS and ds.classes == ["0", "1", "2"]
    named = from_manifest(csv, classes=["low", "mid", "high"], task="ordinal")
    assert named.task is Task.ORDINAL and [r.label for r in named.records] == [0, 2, 1]


def test_label_outside_given_classes_names_the_row(tmp_path: Path) -> None:
    _files(tmp_path, ["a", "b"])
    csv = tmp_path / "m.csv"
    csv.write_text("path,label\na,cat\nb,cow\n")
    with pytest.raises(InvalidDataset, match=r"m\.csv row 2: label 'cow' is not one of"):
        from_manifest(csv, classes=["cat", "dog"])


def test_multilabel_lists_and_flag_columns(tmp_path: Path) -> None:
    _files(tmp_path, ["a", "b", "c"])
    lists = tmp_path / "lists.csv"
    lists.write_text("path,label\na,effusion|mass\nb,mass\nc,\n")
    ds = from_manifest(lists)
    assert ds.task is Task.MULTILABEL and ds.classes == ["effusion", "mass"]
    assert [r.label for r in ds.records] == [(1, 1), (0, 1), None]
    flags = tmp_path / "flags.csv"
    flags.write_text("path,effusion,mass\na,1,1\nb,0,1\nc,0,0\n")
    ds2 = from_manifest(flags, label_columns=["effusion", "mass"])
    assert ds2.task is Task.MULTILABEL and [r.label for r in ds2.records] == [
        (1, 1),
        (0, 1),
        (0, 0),
    ]
    flags.write_text("path,effusion,mass\na,1,2\n")
    with pytest.raises(InvalidDataset, match="column 'mass' holds '2'"):
        from_manifest(flags, label_columns=["effusion", "mass"])


def test_missing_files_are_listed_with_rows(tmp_path: Path) -> None:
    _files(tmp_path, ["present.png"])
    rows = ["present.png,a"] + [f"gone{i}.png,b" for i in range(7)]
    csv = tmp_path / "m.csv"
    csv.write_text("path,label\n" + "\n".join(rows) + "\n")
    with pytest.raises(InvalidDataset) as err:
        from_manifest(csv)
    message = str(err.value)
    assert "names 7 missing file(s)" in message
    assert f"{tmp_path / 'gone0.png'} (row 2)" in message and "gone4.png (row 6)" in message
    assert "gone5.png" not in message and "and 2 more" in message


def test_parquet_and_root_option(tmp_path: Path) -> None:
    data = tmp_path / "data"
    _files(data, ["x.png", "y.png"])
    pq = tmp_path / "tables" / "m.parquet"
    pq.parent.mkdir()
    pd.DataFrame({"path": ["x.png", "y.png"], "label": [1, 0], "patient_id": [7, 8]}).to_parquet(pq)
    ds = from_manifest(pq, root=data)
    assert ds.classes == ["0", "1"] and [r.label for r in ds.records] == [1, 0]
    assert ds.patient_ids == ["7", "8"] and ds.records[0].ref == str(data / "x.png")


def test_registered_references_pass_through(tmp_path: Path) -> None:
    csv = tmp_path / "m.csv"
    csv.write_text("path,label\nphantom:seed=0;size=32;index=1,1\n")
    ds = from_manifest(csv, classes=["normal", "lesion"])
    assert ds.records[0].ref == "phantom:seed=0;size=32;index=1"
    assert ds.image(0).pixels.shape == (1, 32, 32)


def test_structural_errors(tmp_path: Path) -> None:
    csv = tmp_path / "m.csv"
    csv.write_text("file,label\na,1\n")
    with pytest.raises(InvalidDataset, match=r"lacks column\(s\) \['path'\]"):
        from_manifest(csv)
    csv.write_text("path,label\n")
    with pytest.raises(InvalidDataset, match="no rows"):
        from_manifest(csv)
    with pytest.raises(InvalidDataset, match="does not exist"):
        from_manifest(tmp_path / "nope.csv")
    with pytest.raises(InvalidDataset, match="unsupported format"):
        from_manifest(tmp_path / "m.xlsx")
    _files(tmp_path, ["a", "b", "c"])
    csv.write_text("path,label,split\na,x,train\nb,y,holdout\n")
    with pytest.raises(InvalidDataset, match="row 2: split 'holdout'"):
        from_manifest(csv)
    csv.write_text("path,label\na,x\nb,y\nc,z\n")
    with pytest.raises(InvalidDataset, match="exactly 2 classes"):
        from_manifest(csv, task="binary")
