"""DICOM directory source: header-only scan, label joins, series grouping, non-DICOM files kept."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from conftest import shared_path

from medsight.data.dataset import Task
from medsight.data.refs import resolve
from medsight.data.sources.dicom_dir import from_dicom_dir
from medsight.errors import InvalidDataset, UnreadableImage


@pytest.fixture
def ct_dir() -> Path:
    return shared_path("ct_medical_images")


@pytest.fixture
def dicomdirtests() -> Path:
    return shared_path("dicom", "pydicom", "dicomdirtests")


def test_ct_contrast_labels_joined_by_file_name(ct_dir: Path) -> None:
    ds = from_dicom_dir(
        ct_dir / "dicom_dir",
        labels_csv=ct_dir / "overview.csv",
        path_column="dicom_name",
        label_column="Contrast",
    )
    assert len(ds) == 100
    assert ds.task is Task.BINARY and ds.classes == ["False", "True"]
    assert ds.positive_class == 1
    assert ds.class_counts() == {"False": 50, "True": 50}
    assert len(set(ds.patient_ids)) == 54
    for r in ds.records:  # the file names encode the label: ..._CONTRAST_1_CT.dcm
        assert r.label == int(Path(r.ref).name.split("_CONTRAST_")[1][0])
        assert r.meta["modality"] == "CT" and (r.meta["rows"], r.meta["cols"]) == (512, 512)
        assert r.study_id and r.meta["sop_uid"] and r.meta["series_uid"]


def test_labels_joined_by_patient_id(ct_dir: Path, tmp_path: Path) -> None:
    ds = from_dicom_dir(ct_dir / "dicom_dir")
    patients = sorted({p for p in ds.patient_ids if p})
    csv = tmp_path / "patients.csv"
    rows = [
        f"{p},{'luad' if p.startswith(('TCGA-17', 'TCGA-38', 'TCGA-50')) else 'lusc'}"
        for p in patients
    ]
    csv.write_text("PatientID,histology\n" + "\n".join(rows) + "\nTCGA-XX-NONE,lusc\n")
    joined = from_dicom_dir(
        ct_dir / "dicom_dir", labels_csv=csv, join_on="PatientID", label_column="histology"
    )
    assert joined.classes == ["luad", "lusc"]
    assert all(r.label is not None for r in joined.records)
    luad = {r.patient_id for r in joined.records if r.label == 0}
    assert luad and all(p.startswith(("TCGA-17", "TCGA-38", "TCGA-50")) for p in luad)


def test_unlabelled_scan_reads_headers_only(ct_dir: Path) -> None:
    ds = from_dicom_dir(ct_dir / "dicom_dir")
    assert len(ds) == 100 and ds.classes == []
    assert all(r.label is None for r in ds.records)
    image = ds.image(0)
    assert image.pixels.shape == (1, 512, 512)


def test_series_grouping_of_dicomdir_tree(dicomdirtests: Path) -> None:
    ds = from_dicom_dir(dicomdirtests, as_series=True)
    series = [r for r in ds.records if r.ref.startswith("series:")]
    others = [r for r in ds.records if r.ref.startswith("unreadable:")]
    assert len(series) == 13
    assert sum(r.meta["n_files"] for r in series) == 31
    assert sorted(Path(r.ref.split(":", 1)[1]).name for r in others) == [
        "DICOMDIR",
        "README.txt",
        "SHA256SUMS",
    ]
    assert {r.patient_id for r in series} == {"77654033", "98890234"}
    ct5 = next(r for r in series if r.meta["n_files"] == 5)
    assert ct5.ref == f"series:{dicomdirtests.resolve()}#{ct5.meta['series_uid']}"
    assert ct5.meta["files"] == sorted(ct5.meta["files"])
    assert all("/CT5N/" in f for f in ct5.meta["files"])
    assert ds.image(ds.records.index(ct5)).pixels.shape == (1, 5, 16, 16)
    # the table can lose meta (e.g. saved as CSV): the series is found again from the folder
    assert resolve(ct5.ref, {}).pixels.shape == (1, 5, 16, 16)


def test_non_dicom_files_become_named_unreadable_records(dicomdirtests: Path) -> None:
    ds = from_dicom_dir(dicomdirtests)
    assert len(ds) == 31 + 3
    readme = next(i for i, r in enumerate(ds.records) if r.ref.endswith("README.txt"))
    assert "not a DICOM file" in ds.records[readme].meta["reason"]
    with pytest.raises(UnreadableImage, match=r"README\.txt: not a DICOM file"):
        ds.image(readme)
    dicomdir = next(i for i, r in enumerate(ds.records) if r.ref.endswith("DICOMDIR"))
    with pytest.raises(UnreadableImage, match="media index"):
        ds.image(dicomdir)


def test_series_with_conflicting_labels_is_rejected(dicomdirtests: Path, tmp_path: Path) -> None:
    csv = tmp_path / "labels.csv"
    csv.write_text("path,label\n98892001/CT5N/2062,a\n98892001/CT5N/2392,b\n")
    with pytest.raises(InvalidDataset, match="different labels"):
        from_dicom_dir(dicomdirtests, labels_csv=csv, as_series=True)
    by_file = from_dicom_dir(dicomdirtests, labels_csv=csv)
    assert by_file.class_counts() == {"a": 1, "b": 1}


def test_duplicate_key_with_two_labels_is_rejected(ct_dir: Path, tmp_path: Path) -> None:
    csv = tmp_path / "labels.csv"
    name = "ID_0000_AGE_0060_CONTRAST_1_CT.dcm"
    csv.write_text(f"path,label\n{name},1\n{name},0\n")
    with pytest.raises(InvalidDataset, match="row 2.*appears again"):
        from_dicom_dir(ct_dir / "dicom_dir", labels_csv=csv)


def test_missing_label_column_and_bad_join_key(ct_dir: Path) -> None:
    with pytest.raises(InvalidDataset, match=r"lacks column\(s\) \['path'\]"):
        from_dicom_dir(
            ct_dir / "dicom_dir", labels_csv=ct_dir / "overview.csv", label_column="Contrast"
        )
    with pytest.raises(InvalidDataset, match="join_on must be one of"):
        from_dicom_dir(ct_dir / "dicom_dir", join_on="AccessionNumber")


def test_folder_without_dicom_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(InvalidDataset, match="no files found"):
        from_dicom_dir(tmp_path)
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(InvalidDataset, match="no DICOM images.*notes.txt"):
        from_dicom_dir(tmp_path)


def test_truncated_header_is_reported_not_dropped(ct_dir: Path, tmp_path: Path) -> None:
    src = ct_dir / "dicom_dir" / "ID_0000_AGE_0060_CONTRAST_1_CT.dcm"
    shutil.copyfile(src, tmp_path / "good.dcm")
    (tmp_path / "cut.dcm").write_bytes(src.read_bytes()[:300])
    ds = from_dicom_dir(tmp_path)
    refs = {Path(r.ref.removeprefix("unreadable:")).name: r for r in ds.records}
    assert set(refs) == {"good.dcm", "cut.dcm"}
    assert refs["cut.dcm"].ref.startswith("unreadable:")
    assert refs["good.dcm"].patient_id == "TCGA-17-Z034"
