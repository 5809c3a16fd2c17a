"""DICOM de-identification: Basic Profile actions, consistent pseudonyms/UIDs/dates, safety."""

from __future__ import annotations

import csv
import hashlib
import re
import shutil
from datetime import date
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset as DicomDataset
from pydicom.sequence import Sequence
from pydicom.uid import UID

from medsight.data.deid import BASIC_PROFILE, BASIC_PROFILE_TAGS, Pseudonymizer, deidentify
from medsight.errors import InvalidConfig, InvalidDataset

SECRET = "test-secret"
UID_RE = re.compile(r"^2\.25\.[1-9][0-9]*$")
PSEUDONYM_RE = re.compile(r"^ANON-[0-9A-F]{16}$")


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _day(text: str) -> date:
    return date(int(text[:4]), int(text[4:6]), int(text[6:8]))


def _identifying_strings(ds: DicomDataset) -> list[str]:
    """Original values that must not survive anywhere in the output (MR_small names its
    institution after the manufacturer, which is kept: such values are left out)."""
    kept = {str(ds.get("Manufacturer", "") or "").strip()}
    out = []
    for kw in (
        "PatientName",
        "PatientID",
        "InstitutionName",
        "StationName",
        "StudyInstanceUID",
        "SeriesInstanceUID",
        "SOPInstanceUID",
        "FrameOfReferenceUID",
        "DeviceSerialNumber",
    ):
        value = str(ds.get(kw, "") or "").strip()
        if len(value) >= 4 and value.strip("-0") != "" and not any(value in k for k in kept):
            out.append(value)
    return out


@pytest.fixture
def small_tree(tmp_path) -> Path:
    """pydicom's CT_small and MR_small plus a text file, in a little folder tree."""
    src = tmp_path / "in"
    (src / "ct").mkdir(parents=True)
    (src / "mr").mkdir()
    shutil.copy(get_testdata_file("CT_small.dcm"), src / "ct" / "a.dcm")
    shutil.copy(get_testdata_file("MR_small.dcm"), src / "mr" / "b.dcm")
    (src / "notes.txt").write_text("not an image")
    return src


def test_profile_table_covers_the_common_attributes_with_their_actions():
    expected = {
        "PatientName": "Z",
        "PatientID": "Z",
        "PatientBirthDate": "Z",
        "PatientSex": "Z",
        "PatientAge": "X",
        "OtherPatientIDs": "X",
        "OtherPatientNames": "X",
        "PatientAddress": "X",
        "PatientTelephoneNumbers": "X",
        "ReferringPhysicianName": "Z",
        "InstitutionName": "X/Z/D",
        "InstitutionAddress": "X",
        "StationName": "X/Z/D",
        "OperatorsName": "X/Z/D",
        "PerformingPhysicianName": "X",
        "AccessionNumber": "Z",
        "StudyID": "Z",
        "StudyInstanceUID": "U",
        "SeriesInstanceUID": "U",
        "SOPInstanceUID": "U",
        "FrameOfReferenceUID": "U",
        "MediaStorageSOPInstanceUID": "U",
        "ReferencedSOPInstanceUID": "U",
        "StudyDate": "Z",
        "SeriesDate": "X/D",
        "AcquisitionDate": "X/Z",
        "ContentDate": "Z/D",
        "DeviceSerialNumber": "X/Z/D",
    }
    for keyword, action in expected.items():
        assert BASIC_PROFILE[keyword] == action, keyword
    assert len(BASIC_PROFILE_TAGS) == len(BASIC_PROFILE) > 250


@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small.dcm"])
def test_pydicom_files_lose_identifiers_keep_pixels(tmp_path, name):
    src = Path(get_testdata_file(name))
    before = _sha(src)
    original = pydicom.dcmread(src)
    out = tmp_path / "out.dcm"
    summary = deidentify(src, out, secret=SECRET)
    assert summary.written == [(str(src), str(out))] and not summary.failed
    assert _sha(src) == before  # the input is never touched
    ds = pydicom.dcmread(out)

    for tag, code in BASIC_PROFILE_TAGS.items():
        if tag not in original or tag in (0x00100010, 0x00100020):
            continue
        elem, orig = ds.get(tag), original[tag]
        keyword = orig.keyword
        if code == "X":
            assert elem is None, f"{keyword} must be removed"
        elif code == "U" and orig.VR == "UI":
            assert str(elem.value) != str(orig.value) and UID_RE.match(str(elem.value)), keyword
        elif orig.VR in ("DA", "DT") and orig.value and keyword != "PatientBirthDate":
            assert elem.value != orig.value, f"{keyword} must be shifted"
        elif orig.VR not in ("TM", "SQ") and orig.value not in (None, ""):
            assert elem.value != orig.value, f"{keyword} must be emptied or replaced"
    assert PSEUDONYM_RE.match(str(ds.PatientID)) and str(ds.PatientName) == str(ds.PatientID)
    assert ds.PatientBirthDate == "" and ds.get("PatientAge") is None
    assert ds.get("OtherPatientIDsSequence") is None
    assert not [e for e in ds.iterall() if e.tag.is_private]
    assert ds.PatientIdentityRemoved == "YES" and "Basic Profile" in ds.DeidentificationMethod
    assert [i.CodeValue for i in ds.DeidentificationMethodCodeSequence] == ["113100", "113107"]
    assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    assert UID(ds.SOPInstanceUID).is_valid and len(ds.SOPInstanceUID) <= 64
    assert ds.SOPClassUID == original.SOPClassUID  # well-known UIDs are kept
    assert np.array_equal(ds.pixel_array, original.pixel_array)

    raw = out.read_bytes()
    for value in _identifying_strings(original):
        assert value.encode() not in raw, f"original value {value!r} survived"


def test_folder_mirrored_non_dicom_reported_and_not_copied(small_tree, tmp_path):
    hashes = {p: _sha(p) for p in small_tree.rglob("*") if p.is_file()}
    out = tmp_path / "out"
    summary = deidentify(small_tree, out, secret=SECRET)
    assert sorted(Path(o).relative_to(out).as_posix() for _, o in summary.written) == [
        "ct/a.dcm",
        "mr/b.dcm",
    ]
    ((skipped, reason),) = summary.skipped
    assert skipped.endswith("notes.txt") and "not a DICOM file" in reason
    assert not (out / "notes.txt").exists()
    assert {p: _sha(p) for p in hashes} == hashes
    assert summary.n_patients == 2 and not summary.secret_generated
    assert summary.mapping_file is None and not list(out.rglob("*.csv"))
    assert summary.to_dict()["n_written"] == 2


def test_corrupt_and_truncated_files_fail_with_reasons_and_leave_no_output(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    raw = Path(get_testdata_file("CT_small.dcm")).read_bytes()
    (src / "good.dcm").write_bytes(raw)
    (src / "cut.dcm").write_bytes(raw[:1500])  # header cut before the image attributes
    (src / "noise.dcm").write_bytes(b"\0" * 128 + b"DICM" + np.random.default_rng(0).bytes(300))
    out = tmp_path / "out"
    summary = deidentify(src, out, secret=SECRET)
    assert [Path(i).name for i, _ in summary.written] == ["good.dcm"]
    reasons = {Path(p).name: r for p, r in summary.failed}
    assert "truncated" in reasons["cut.dcm"]
    assert "not a complete DICOM instance" in reasons["noise.dcm"]
    assert sorted(p.name for p in out.iterdir()) == ["good.dcm"]
    with pytest.raises(InvalidDataset, match="truncated"):
        deidentify(src / "cut.dcm", tmp_path / "single.dcm", secret=SECRET)
    assert not (tmp_path / "single.dcm").exists()


def test_unsafe_destinations_are_refused(small_tree, tmp_path):
    with pytest.raises(InvalidConfig, match="outside the input"):
        deidentify(small_tree, small_tree / "anon", secret=SECRET)
    with pytest.raises(InvalidConfig, match="outside the input"):
        deidentify(small_tree, small_tree, secret=SECRET)
    with pytest.raises(InvalidConfig, match="outside the input"):
        deidentify(small_tree / "ct", small_tree.parent, secret=SECRET)
    out = tmp_path / "out"
    with pytest.raises(InvalidConfig, match="mapping file"):
        deidentify(small_tree, out, secret=SECRET, mapping_file=out / "map.csv")
    deidentify(small_tree, out, secret=SECRET)
    with pytest.raises(InvalidConfig, match="not empty"):
        deidentify(small_tree, out, secret=SECRET)
    assert len(deidentify(small_tree, out, secret=SECRET, overwrite=True).written) == 2
    with pytest.raises(InvalidDataset, match="not a DICOM file"):
        deidentify(small_tree / "notes.txt", tmp_path / "x.dcm", secret=SECRET)
    with pytest.raises(InvalidDataset, match="does not exist"):
        deidentify(tmp_path / "nope", tmp_path / "y", secret=SECRET)


def test_sequences_reference_the_remapped_uids(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    first = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    first.save_as(src / "1.dcm")
    second = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    second.SOPInstanceUID = second.file_meta.MediaStorageSOPInstanceUID = "1.2.3.4.5.6.7"
    ref = DicomDataset()
    ref.ReferencedSOPClassUID = first.SOPClassUID
    ref.ReferencedSOPInstanceUID = first.SOPInstanceUID
    ref.add_new(0x00091001, "LO", "private inside a sequence")
    second.SourceImageSequence = Sequence([ref])
    second.ReferencedImageSequence = Sequence([ref])
    second.save_as(src / "2.dcm")

    deidentify(src, tmp_path / "out", secret=SECRET)
    a = pydicom.dcmread(tmp_path / "out" / "1.dcm")
    b = pydicom.dcmread(tmp_path / "out" / "2.dcm")
    for seq in (b.SourceImageSequence, b.ReferencedImageSequence):
        assert seq[0].ReferencedSOPInstanceUID == a.SOPInstanceUID  # consistent remapping
        assert seq[0].ReferencedSOPClassUID == first.SOPClassUID
        assert 0x00091001 not in seq[0]
    assert b.SOPInstanceUID != a.SOPInstanceUID
    assert a.SeriesInstanceUID == b.SeriesInstanceUID and a.StudyInstanceUID == b.StudyInstanceUID


def test_keep_private_and_fixed_date_shift(tmp_path):
    src = Path(get_testdata_file("CT_small.dcm"))
    original = pydicom.dcmread(src)
    kept = deidentify(
        src, tmp_path / "k.dcm", secret=SECRET, keep_private=True, date_shift_days_range=(-10, -10)
    )
    ds = pydicom.dcmread(kept.written[0][1])
    assert [e for e in ds if e.tag.is_private]
    assert (_day(ds.StudyDate) - _day(original.StudyDate)).days == -10
    assert (_day(ds.AcquisitionDate) - _day(original.AcquisitionDate)).days == -10
    assert ds.StudyTime == original.StudyTime  # whole-day shifts keep the time of day
    same = deidentify(src, tmp_path / "s.dcm", secret=SECRET, date_shift_days_range=(0, 0))
    ds0 = pydicom.dcmread(same.written[0][1])
    assert ds0.StudyDate == original.StudyDate
    assert ds0.LongitudinalTemporalInformationModified == "UNMODIFIED"
    with pytest.raises(InvalidConfig, match="low <= high"):
        deidentify(src, tmp_path / "z.dcm", secret=SECRET, date_shift_days_range=(5, -5))


def test_pseudonymizer_is_keyed_and_repeatable():
    a, b, other = Pseudonymizer("k1"), Pseudonymizer("k1"), Pseudonymizer("k2")
    assert a.patient_id("P1") == b.patient_id("P1") != other.patient_id("P1")
    assert a.patient_id("P1") != a.patient_id("P2")
    assert a.uid("1.2.3") == b.uid("1.2.3") != a.uid("1.2.4")
    assert UID_RE.match(a.uid("1.2.3")) and len(a.uid("1.2.3")) <= 64
    offsets = {Pseudonymizer("k1", (-30, -1)).date_offset(f"P{i}") for i in range(200)}
    assert offsets <= set(range(-30, 0)) and len(offsets) > 20
    with pytest.raises(InvalidConfig, match="must not be empty"):
        Pseudonymizer("")


def _ct_files(shared_data) -> list[Path]:
    folder = shared_data / "ct_medical_images" / "dicom_dir"
    if not folder.is_dir():
        pytest.skip(f"CT Medical Images not found at {folder} (see shared/data/MANIFEST.md)")
    return sorted(folder.glob("*.dcm"))


def test_real_ct_pseudonyms_uids_and_dates_consistent_per_patient(shared_data, tmp_path):
    files = _ct_files(shared_data)
    headers = {f: pydicom.dcmread(f, stop_before_pixels=True) for f in files}
    by_patient: dict[str, list[Path]] = {}
    for f, h in headers.items():
        by_patient.setdefault(str(h.PatientID), []).append(f)
    multi = sorted(p for p, fs in by_patient.items() if len(fs) >= 3)
    pa, pb = multi[0], multi[1]
    chosen = by_patient[pa][:3] + by_patient[pb][:1]
    src = tmp_path / "in"
    src.mkdir()
    for f in chosen:
        shutil.copy(f, src / f.name)
    before = {f.name: _sha(f) for f in src.iterdir()}

    mapping = tmp_path / "keys" / "map.csv"
    s1 = deidentify(src, tmp_path / "run1", secret=SECRET, mapping_file=mapping)
    deidentify(src, tmp_path / "run2", secret=SECRET)
    deidentify(src, tmp_path / "run3", secret="another secret")
    assert len(s1.written) == 4 and s1.n_patients == 2
    assert {f.name: _sha(f) for f in src.iterdir()} == before

    def load(run):
        return {f.name: pydicom.dcmread(tmp_path / run / f.name) for f in chosen}

    out1, out2, out3 = load("run1"), load("run2"), load("run3")
    orig = {f.name: headers[f] for f in chosen}
    a_names = [f.name for f in by_patient[pa][:3]]
    b_name = by_patient[pb][0].name

    pseudo_a = {str(out1[n].PatientID) for n in a_names}
    assert len(pseudo_a) == 1 and PSEUDONYM_RE.match(pseudo_a.pop())
    assert out1[b_name].PatientID != out1[a_names[0]].PatientID
    for n in out1:  # same secret, same result in another run; other secret, other pseudonym
        assert out1[n].PatientID == out2[n].PatientID != out3[n].PatientID
        assert out1[n].SOPInstanceUID == out2[n].SOPInstanceUID != out3[n].SOPInstanceUID
        assert out1[n].StudyDate == out2[n].StudyDate
        assert str(out1[n].PatientID) not in (orig[n].PatientID, "")

    # UIDs: shared originals stay shared, different originals stay different
    for kw in ("StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID", "SOPInstanceUID"):
        for x in out1:
            for y in out1:
                same_before = orig[x].get(kw) == orig[y].get(kw)
                assert (out1[x].get(kw) == out1[y].get(kw)) == same_before, (kw, x, y)
                assert UID_RE.match(str(out1[x].get(kw)))

    # dates: one offset per patient, for every date attribute
    shifts = {}
    for n in out1:
        for kw in ("StudyDate", "SeriesDate", "AcquisitionDate", "ContentDate"):
            if orig[n].get(kw):
                shifts.setdefault(str(orig[n].PatientID), set()).add(
                    (_day(out1[n].get(kw)) - _day(orig[n].get(kw))).days
                )
    assert all(len(v) == 1 for v in shifts.values()), shifts
    (shift_a,) = shifts[pa]
    assert -3652 <= shift_a <= -366

    for n in out1:  # pixels unchanged, identifiers gone
        assert np.array_equal(out1[n].pixel_array, pydicom.dcmread(src / n).pixel_array)
        assert out1[n].get("PatientAge") is None and out1[n].get("AccessionNumber") == ""
        assert not [e for e in out1[n].iterall() if e.tag.is_private]

    rows = list(csv.DictReader(mapping.open()))
    patient_rows = {r["original"]: r["pseudonym"] for r in rows if r["kind"] == "patient"}
    assert patient_rows == {pa: str(out1[a_names[0]].PatientID), pb: str(out1[b_name].PatientID)}
    uid_rows = {r["original"]: r["pseudonym"] for r in rows if r["kind"] == "uid"}
    assert uid_rows[str(orig[b_name].SOPInstanceUID)] == str(out1[b_name].SOPInstanceUID)
    assert not list((tmp_path / "run2").rglob("*.csv"))
