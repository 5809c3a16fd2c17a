"""DicomWebPacs against the real Orthanc: QIDO at three levels with date / modality matching, WADO-RS
retrieve equal to what was uploaded, STOW-RS then found by QIDO, and clear errors for a wrong
password, a wrong root and a server that is not there."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from pacs.orthanc import free_port
from pydicom.uid import generate_uid

from medsight.errors import PacsError
from medsight.pacs import PacsConfig, open_pacs
from medsight.pacs.dicomweb import DicomWebPacs


def ct_series(source: pydicom.Dataset, n: int) -> list[pydicom.Dataset]:
    """`n` copies of a real CT slice as one new series (same study) with fresh SOP UIDs."""
    series_uid = generate_uid()
    out = []
    for i in range(n):
        ds = pydicom.dcmread(pydicom.filebase.DicomBytesIO(encoded(source)))
        ds.SeriesInstanceUID = series_uid
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.InstanceNumber = i + 1
        ds.SeriesDescription = "medsight test series"
        out.append(ds)
    return out


def encoded(ds: pydicom.Dataset) -> bytes:
    buf = pydicom.filebase.DicomBytesIO()
    pydicom.dcmwrite(buf, ds, enforce_file_format=True)
    return buf.getvalue()


def upload_ct(orthanc, files, slices: int) -> list[pydicom.Dataset]:
    """The distinct instances of `files` and a `slices`-instance series added to the first one's
    study, uploaded to Orthanc; the datasets."""
    datasets = list({d.SOPInstanceUID: d for d in map(pydicom.dcmread, files)}.values())
    datasets += ct_series(datasets[0], slices)
    orthanc.upload([encoded(d) for d in datasets])
    return datasets


@pytest.fixture
def uploaded(orthanc, ct_files):
    """The first 10 shared CT files in Orthanc (9 distinct instances: 9 studies, 9 series) and a
    3-instance series added to the first study: 9 studies, 10 series, 12 instances; the datasets."""
    datasets = upload_ct(orthanc, ct_files[:10], 3)
    assert len(orthanc.instances()) == 12
    return datasets


@pytest.fixture
def pacs(orthanc):
    client = DicomWebPacs(orthanc.config())
    yield client
    client.close()


def test_qido_at_each_level_matches_what_was_uploaded(pacs, uploaded):
    studies = {str(d.StudyInstanceUID) for d in uploaded}
    found = pacs.search("study")
    assert {a["StudyInstanceUID"] for a in found} == studies and len(found) == 9
    counts = {a["StudyInstanceUID"]: a["NumberOfStudyRelatedInstances"] for a in found}
    assert counts[uploaded[0].StudyInstanceUID] == 4 and sum(counts.values()) == 12

    # a date range: the studies of 1983-1984 (5 of the 9)
    in_range = {str(d.StudyInstanceUID) for d in uploaded if "19830101" <= d.StudyDate <= "19841231"}
    dated = pacs.search("study", {"StudyDate": "19830101-19841231"})
    assert {a["StudyInstanceUID"] for a in dated} == in_range and len(in_range) == 5
    open_end = pacs.search("study", {"StudyDate": "19900101-"})
    assert len(open_end) == sum(1 for s in {(d.StudyInstanceUID, d.StudyDate) for d in uploaded}
                                if s[1] >= "19900101") == 2

    # Modality at study level becomes ModalitiesInStudy
    assert len(pacs.search("study", {"Modality": "CT"})) == 9
    assert pacs.search("study", {"Modality": "MR"}) == []
    assert len(pacs.search("study", limit=3)) == 3

    three, study = str(uploaded[-1].SeriesInstanceUID), str(uploaded[-1].StudyInstanceUID)
    series = pacs.search("series", {"Modality": "CT"}, study=study)
    assert {s["SeriesInstanceUID"]: s["NumberOfSeriesRelatedInstances"] for s in series} == {
        three: 3, str(uploaded[0].SeriesInstanceUID): 1}
    assert len(pacs.search("series", {"Modality": "CT"})) == 10
    # a study attribute at series level (what the watcher asks): the series of 1983-1984 studies
    dated_series = {str(d.SeriesInstanceUID) for d in uploaded if "19830101" <= d.StudyDate <= "19841231"}
    found = pacs.search("series", {"StudyDate": "19830101-19841231", "Modality": "CT"})
    assert {a["SeriesInstanceUID"] for a in found} == dated_series and len(dated_series) == 6

    instances = pacs.search("instance", study=study, series=three, fields=("InstanceNumber",))
    expected = {str(d.SOPInstanceUID): int(d.InstanceNumber) for d in uploaded[-3:]}
    assert {a["SOPInstanceUID"]: a["InstanceNumber"] for a in instances} == expected


def test_wado_retrieve_returns_the_uploaded_instances(pacs, uploaded):
    three, study = str(uploaded[-1].SeriesInstanceUID), str(uploaded[-1].StudyInstanceUID)
    originals = {str(d.SOPInstanceUID): d for d in uploaded[-3:]}
    got = list(pacs.retrieve(study, three))
    assert sorted(str(d.SOPInstanceUID) for d in got) == sorted(originals)
    for ds in got:
        original = originals[str(ds.SOPInstanceUID)]
        assert ds.file_meta.MediaStorageSOPInstanceUID == original.SOPInstanceUID
        assert ds.StudyInstanceUID == original.StudyInstanceUID
        assert np.array_equal(ds.pixel_array, original.pixel_array)
    one = next(iter(originals))
    (single,) = pacs.retrieve(study, three, one)
    assert single.SOPInstanceUID == one and single.PixelData == originals[one].PixelData
    assert len(list(pacs.retrieve(study))) == 4


def test_stow_stores_a_new_instance_that_qido_then_finds(pacs, uploaded):
    (new,) = ct_series(uploaded[1], 1)
    new.SeriesDescription = "medsight stow test"
    pacs.store([new])
    found = pacs.search("instance", study=str(new.StudyInstanceUID),
                        series=str(new.SeriesInstanceUID))
    assert [a["SOPInstanceUID"] for a in found] == [new.SOPInstanceUID]
    series = pacs.search("series", study=str(new.StudyInstanceUID))
    assert str(new.SeriesInstanceUID) in {a["SeriesInstanceUID"] for a in series}


def test_stow_names_each_refused_instance_and_its_reason(pacs, uploaded):
    good, bad = ct_series(uploaded[1], 2)
    del bad.SeriesInstanceUID  # Orthanc refuses an instance without one
    with pytest.raises(PacsError, match="STOW-RS") as err:
        pacs.store([good, bad])
    assert f"{bad.SOPInstanceUID} (reason 0xC000)" in str(err.value)
    assert str(good.SOPInstanceUID) not in str(err.value)


def test_wrong_password_is_a_401_with_a_hint(orthanc, tmp_path, monkeypatch):
    monkeypatch.setenv("MEDSIGHT_PACS_PASSWORD", "not-the-password")
    client = open_pacs(PacsConfig(url=orthanc.dicomweb_url, username="medsight"))
    with pytest.raises(PacsError, match="401") as err:
        client.echo()
    assert "password" in str(err.value) and "not-the-password" not in str(err.value)


def test_wrong_root_and_no_server_are_clear_errors(orthanc):
    wrong_root = DicomWebPacs(orthanc.config().model_copy(update={"url": orthanc.url + "/dicomweb"}))
    with pytest.raises(PacsError, match="404.*DICOMweb root"):
        wrong_root.search("study")
    nobody = DicomWebPacs(PacsConfig(url=f"http://127.0.0.1:{free_port()}/dicom-web", timeout_s=5))
    with pytest.raises(PacsError, match="cannot connect; is the PACS running"):
        nobody.echo()

