"""`pull` and `push` against the real Orthanc: by query and by study, a manifest medsight's loaders
read, resumption after an interruption that fetches only what is missing, de-identified copies, and
push refusing non-DICOM files."""

from __future__ import annotations

import csv

import numpy as np
import pydicom
import pytest
from pacs.test_dicomweb import ct_series, encoded, upload_ct

from medsight.data.open import open_source
from medsight.errors import InvalidConfig, InvalidDataset, PacsError
from medsight.pacs.dicomweb import DicomWebPacs
from medsight.pacs.pull import SECRET_FILE, pull
from medsight.pacs.push import push
from medsight.pacs.query import parse_query


class CountingPacs(DicomWebPacs):
    """The real client, counting the instances each retrieve returns."""

    retrieved: list[str]

    def retrieve(self, study, series=None, instance=None):
        for ds in super().retrieve(study, series, instance):
            self.retrieved.append(str(ds.SOPInstanceUID))
            yield ds


@pytest.fixture
def pacs(orthanc):
    client = CountingPacs(orthanc.config())
    client.retrieved = []
    yield client
    client.close()


@pytest.fixture
def uploaded(orthanc, ct_files):
    """6 single-slice CT studies and a 4-slice series in the first: 6 studies, 10 instances."""
    return upload_ct(orthanc, ct_files[:7], 4)


def _manifest(path):
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def test_pull_by_query_writes_files_and_a_manifest_the_loaders_read(pacs, uploaded, tmp_path):
    query = parse_query("Modality=CT&StudyDate=1983-1984")
    expected = {str(d.SOPInstanceUID) for d in uploaded if "19830101" <= d.StudyDate <= "19841231"}
    report = pull(pacs, tmp_path, query=query)
    assert report.ok and report.fetched == len(expected) and report.present == 0
    rows = _manifest(tmp_path / "manifest.csv")
    assert {r["sop_uid"] for r in rows} == expected
    by_uid = {str(d.SOPInstanceUID): d for d in uploaded}
    for row in rows:
        ds = pydicom.dcmread(tmp_path / row["path"])
        assert row["path"] == f"dicom/{ds.StudyInstanceUID}/{ds.SeriesInstanceUID}/{ds.SOPInstanceUID}.dcm"
        assert np.array_equal(ds.pixel_array, by_uid[row["sop_uid"]].pixel_array)
        assert row["modality"] == "CT" and "19830101" <= row["study_date"] <= "19841231"
    assert report.bytes == sum((tmp_path / r["path"]).stat().st_size for r in rows)

    data = open_source(tmp_path / "manifest.csv", classes=["False", "True"])
    assert len(data) == len(expected) and {r.meta["sop_uid"] for r in data.records} == expected
    assert {r.study_id for r in data.records} == {r["study_id"] for r in rows}
    folder = open_source(tmp_path / "dicom")
    assert len(folder) == len(expected)
    assert not [r for r in folder.records if r.ref.startswith("unreadable:")]


def test_pull_by_study_then_resume_after_an_interruption(pacs, uploaded, tmp_path):
    study = str(uploaded[0].StudyInstanceUID)  # 1 + 4 instances in 2 series
    calls = []

    def stop_after_three(done, total):
        calls.append((done, total))
        if done == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        pull(pacs, tmp_path, study=study, progress=stop_after_three)
    assert calls[-1] == (3, 5)
    on_disk = sorted(p.name for p in (tmp_path / "dicom").rglob("*") if p.is_file())
    assert len(on_disk) == 3 and all(n.endswith(".dcm") for n in on_disk)  # no temporary files
    assert not (tmp_path / "manifest.csv").exists()

    pacs.retrieved.clear()
    report = pull(pacs, tmp_path, study=study)
    assert (report.studies, report.series, report.present, report.fetched) == (1, 2, 3, 2)
    assert len(pacs.retrieved) == 2 and not {f"{u}.dcm" for u in pacs.retrieved} & set(on_disk)
    assert len(_manifest(tmp_path / "manifest.csv")) == 5

    # a damaged file is detected and fetched again; a third run fetches nothing
    victim = next((tmp_path / "dicom").rglob("*.dcm"))
    victim.write_bytes(victim.read_bytes()[:1000])
    pacs.retrieved.clear()
    again = pull(pacs, tmp_path, study=study)
    assert (again.present, again.fetched, pacs.retrieved) == (4, 1, [victim.stem])
    pacs.retrieved.clear()
    assert pull(pacs, tmp_path, study=study).fetched == 0 and pacs.retrieved == []


def test_deidentified_copies_keep_no_patient_identity(pacs, uploaded, tmp_path):
    study = str(uploaded[0].StudyInstanceUID)
    report = pull(pacs, tmp_path, study=study, deidentify=True)
    assert report.deidentified == 5 and report.deid_manifest
    secret = tmp_path / SECRET_FILE
    assert secret.stat().st_mode & 0o777 == 0o600
    originals = {str(uploaded[0].PatientID), str(uploaded[0].PatientName)}
    rows = _manifest(tmp_path / "deid" / "manifest.csv")
    assert len(rows) == 5 and len({r["patient_id"] for r in rows}) == 1
    for row in rows:
        ds = pydicom.dcmread(tmp_path / "deid" / row["path"])
        assert {str(ds.PatientID), str(ds.PatientName)}.isdisjoint(originals)
        assert ds.StudyInstanceUID != study and ds.PatientIdentityRemoved == "YES"
        assert study not in row["path"]
    assert len(list((tmp_path / "dicom").rglob("*.dcm"))) == 5  # the originals stay
    deid = open_source(tmp_path / "deid" / "manifest.csv", classes=["False", "True"])
    assert len(deid) == 5

    # same secret, same pseudonyms: a second run finds every copy in place
    again = pull(pacs, tmp_path, study=study, deidentify=True)
    assert (again.present, again.fetched, again.deidentified) == (5, 0, 0)

    only = tmp_path / "only"
    kept = pull(pacs, only, study=study, deidentify_only=True, secret="s3cret")
    assert kept.fetched == 5 and not (only / "dicom").exists() and not (only / SECRET_FILE).exists()
    assert len(list((only / "deid").rglob("*.dcm"))) == 5
    assert pull(pacs, only, study=study, deidentify_only=True, secret="s3cret").present == 5


class RefusingPacs(CountingPacs):
    """The real client, with one instance the PACS will not send (left out of its series)."""

    refused: str

    def retrieve(self, study, series=None, instance=None):
        if instance == self.refused:
            raise PacsError(f"{self.config.display}: WADO-RS retrieve instance {instance} answered "
                            "HTTP 404 Not Found")
        for ds in super().retrieve(study, series, instance):
            if ds.SOPInstanceUID != self.refused:
                yield ds


def test_an_instance_the_pacs_does_not_send_is_reported_and_retried(orthanc, uploaded, tmp_path):
    flaky = RefusingPacs(orthanc.config())
    flaky.retrieved, flaky.refused = [], str(uploaded[-2].SOPInstanceUID)
    report = pull(flaky, tmp_path, study=str(uploaded[0].StudyInstanceUID))
    assert (report.fetched, report.instances, report.ok) == (4, 5, False)
    assert report.failed == [(flaky.refused, f"{orthanc.dicomweb_url}: WADO-RS retrieve instance "
                                             f"{flaky.refused} answered HTTP 404 Not Found")]
    assert len(_manifest(tmp_path / "manifest.csv")) == 4
    healed = CountingPacs(orthanc.config())
    healed.retrieved = []
    again = pull(healed, tmp_path, study=str(uploaded[0].StudyInstanceUID))
    assert (again.present, again.fetched, again.ok, healed.retrieved) == (4, 1, True, [flaky.refused])


class UnlistingPacs(DicomWebPacs):
    """The real client, with one study whose series the PACS will not list."""

    unlisted: str

    def search(self, level, query=None, *, study=None, series=None, fields=(), limit=None):
        if level == "series" and study == self.unlisted:
            raise PacsError(f"{self.config.display}: QIDO-RS search for series in study {study} "
                            "answered HTTP 500 Internal Server Error; see the PACS's log")
        return super().search(level, query, study=study, series=series, fields=fields,
                              limit=limit)


def test_a_study_the_pacs_cannot_list_is_reported_and_the_others_pulled(orthanc, uploaded,
                                                                        tmp_path):
    broken = UnlistingPacs(orthanc.config())
    broken.unlisted = str(uploaded[0].StudyInstanceUID)  # the study with 5 instances
    report = pull(broken, tmp_path, query=parse_query("Modality=CT"))
    assert (report.studies, report.fetched, report.ok) == (6, 5, False)
    assert report.unlisted == [(broken.unlisted, f"{orthanc.dicomweb_url}: QIDO-RS search for "
                                f"series in study {broken.unlisted} answered HTTP 500 Internal "
                                "Server Error; see the PACS's log")]
    assert report.to_dict()["unlisted"][0]["uid"] == broken.unlisted
    assert broken.unlisted not in {r["study_id"] for r in _manifest(tmp_path / "manifest.csv")}
    with pytest.raises(PacsError, match="HTTP 500"):  # the one study asked for: a clear error
        pull(broken, tmp_path / "one", study=broken.unlisted)
    again = pull(DicomWebPacs(orthanc.config()), tmp_path, query=parse_query("Modality=CT"))
    assert (again.present, again.fetched, again.ok) == (5, 5, True)


def test_pull_needs_a_query_or_a_study_that_exists(pacs, uploaded, tmp_path):
    with pytest.raises(InvalidConfig, match="query or a study"):
        pull(pacs, tmp_path)
    with pytest.raises(PacsError, match="study 1.2.3.4 not found"):
        pull(pacs, tmp_path, study="1.2.3.4")
    nothing = pull(pacs, tmp_path, query=parse_query("StudyDate=2030-"))
    assert (nothing.studies, nothing.instances, nothing.manifest) == (0, 0, None)


def test_push_stores_files_and_refuses_non_dicom(pacs, orthanc, uploaded, tmp_path):
    new = ct_series(uploaded[1], 2)
    paths = []
    for ds in new:
        path = tmp_path / f"{ds.SOPInstanceUID}.dcm"
        path.write_bytes(encoded(ds))
        paths.append(path)
    (tmp_path / "notes.txt").write_text("not DICOM")
    before = len(orthanc.instances())
    with pytest.raises(InvalidDataset, match="notes.txt is not a DICOM file"):
        push(pacs, [*paths, tmp_path / "notes.txt"])
    assert len(orthanc.instances()) == before  # nothing sent
    report = push(pacs, paths)
    assert [r["sop_uid"] for r in report.stored] == [str(d.SOPInstanceUID) for d in new]
    assert report.stored[0]["sop_class"] == "CT Image Storage"
    assert len(orthanc.instances()) == before + 2
