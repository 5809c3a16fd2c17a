"""The DIMSE client against the real Orthanc: C-ECHO, C-STORE, C-FIND at each level with date and
modality matching, C-MOVE into medsight's own SCP, C-GET, clear errors, and a pull over DIMSE."""

from __future__ import annotations

import copy
import time
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pacs.orthanc import OrthancServer, free_port
from pydicom.uid import RLELossless, generate_uid

from medsight.errors import PacsError
from medsight.pacs.config import PacsConfig
from medsight.pacs.dimse import DimsePacs
from medsight.pacs.pull import pull
from medsight.pacs.scp import StorageSCP


@pytest.fixture
def pacs(orthanc: OrthancServer) -> DimsePacs:
    return DimsePacs(orthanc.dimse_config())


def _series(ct_files: list[Path], n: int = 3) -> list[pydicom.Dataset]:
    """`n` real CT slices made one new series of one study of one patient (fresh UIDs)."""
    study, series = generate_uid(), generate_uid()
    out = []
    for i, path in enumerate(ct_files[:n]):
        ds = pydicom.dcmread(path)
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.PatientID, ds.PatientName = "DIMSE-TEST", "Test^Dimse"
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.InstanceNumber = i + 1
        out.append(ds)
    return out


def _bytes(ds: pydicom.Dataset) -> bytes:
    from io import BytesIO

    buf = BytesIO()
    pydicom.dcmwrite(buf, ds, enforce_file_format=True)
    return buf.getvalue()


def test_echo(pacs: DimsePacs):
    pacs.echo()


def test_store_makes_instances_visible(orthanc: OrthancServer, pacs: DimsePacs,
                                       ct_files: list[Path]):
    datasets = [pydicom.dcmread(p) for p in ct_files[:3]]
    pacs.store(datasets)
    stored = {orthanc.instance_tags(i)["SOPInstanceUID"] for i in orthanc.instances()}
    assert stored == {str(ds.SOPInstanceUID) for ds in datasets}


def test_store_of_a_class_the_pacs_refuses_names_it(orthanc: OrthancServer, pacs: DimsePacs,
                                                    ct_files: list[Path]):
    good, bad = pydicom.dcmread(ct_files[0]), pydicom.dcmread(ct_files[1])
    bad.SOPClassUID = bad.file_meta.MediaStorageSOPClassUID = "1.2.3.4.5.6.7"
    with pytest.raises(PacsError, match=rf"C-STORE refused 1 of 2 instance.*{bad.SOPInstanceUID} "
                                        r"\(not accepted: SOP class 1\.2\.3\.4\.5\.6\.7"):
        pacs.store([good, bad])
    assert len(orthanc.instances()) == 1
    with pytest.raises(PacsError, match=r"C-STORE of 1 instance\(s\): aborted the association "
                                        r"\(does it support 1\.2\.3\.4\.5\.6\.7\?\)"):
        pacs.store([bad])


@pytest.mark.filterwarnings("ignore:Invalid value for VR UI")
def test_a_refusal_status_is_named_with_its_meaning(tmp_path: Path, ct_files: list[Path]):
    good, bad = pydicom.dcmread(ct_files[0]), pydicom.dcmread(ct_files[1])
    bad.StudyInstanceUID = "../outside"
    with StorageSCP("STORE", out_dir=tmp_path) as scp:  # medsight's own SCP as the refusing PACS
        target = DimsePacs(PacsConfig(ae_title="STORE", host="127.0.0.1", port=scp.port))
        with pytest.raises(PacsError, match=rf"refused 1 of 2 instance\(s\): {bad.SOPInstanceUID} "
                                            r"\(0xC000 Failure: Cannot Understand\)"):
            target.store([good, bad])
    assert scp.received == 1


def test_find_at_each_level_with_date_and_modality(orthanc: OrthancServer, pacs: DimsePacs,
                                                   ct_files: list[Path]):
    files = ct_files[:6]
    orthanc.upload(files)
    headers = [pydicom.dcmread(p, stop_before_pixels=True) for p in files]
    studies = {str(h.StudyInstanceUID): str(h.StudyDate) for h in headers}
    found = pacs.search("study", fields=("StudyDate",))
    assert {a["StudyInstanceUID"]: a["StudyDate"] for a in found} == studies
    cutoff = sorted(studies.values())[len(studies) // 2]
    early = pacs.search("study", {"StudyDate": f"-{cutoff}", "Modality": "CT"})
    assert {a["StudyInstanceUID"] for a in early} == {u for u, d in studies.items() if d <= cutoff}
    assert pacs.search("study", {"Modality": "MR"}) == []
    assert len(pacs.search("study", limit=2)) == 2

    series = pacs.search("series", {"Modality": "CT"})
    assert {a["SeriesInstanceUID"] for a in series} == {str(h.SeriesInstanceUID) for h in headers}
    one = headers[0]
    within = pacs.search("series", study=str(one.StudyInstanceUID))
    expected = sum(h.SeriesInstanceUID == one.SeriesInstanceUID for h in headers)
    assert [(a["Modality"], a["BodyPartExamined"], a["NumberOfSeriesRelatedInstances"])
            for a in within if a["SeriesInstanceUID"] == one.SeriesInstanceUID] == \
        [("CT", one.get("BodyPartExamined"), expected)]
    instances = pacs.search("instance", study=str(one.StudyInstanceUID),
                            series=str(one.SeriesInstanceUID), fields=("ImageType",))
    assert {a["SOPInstanceUID"] for a in instances} == {
        str(h.SOPInstanceUID) for h in headers if h.SeriesInstanceUID == one.SeriesInstanceUID}
    assert all(a["SOPClassUID"] == one.SOPClassUID and a["Rows"] == 512 for a in instances)


def test_move_a_series_into_medsights_scp(orthanc: OrthancServer, pacs: DimsePacs,
                                         ct_files: list[Path]):
    series = _series(ct_files, 3)
    orthanc.upload([_bytes(ds) for ds in series])
    got = list(pacs.retrieve(series[0].StudyInstanceUID, series[0].SeriesInstanceUID))
    originals = {str(ds.SOPInstanceUID): ds for ds in series}
    assert sorted(str(ds.SOPInstanceUID) for ds in got) == sorted(originals)
    for ds in got:
        original = originals[str(ds.SOPInstanceUID)]
        assert ds.SeriesInstanceUID == original.SeriesInstanceUID and ds.file_meta
        assert np.array_equal(ds.pixel_array, original.pixel_array)


def test_a_compressed_instance_is_stored_and_moved_as_it_is(orthanc: OrthancServer,
                                                             pacs: DimsePacs, ct_files: list[Path]):
    ds = _series(ct_files, 1)[0]
    pixels = ds.pixel_array.copy()
    ds.compress(RLELossless)  # in memory: read as implicit VR, now RLE (explicit VR)
    pacs.store([ds])
    [stored] = orthanc.instances()
    assert orthanc.http.get(f"/instances/{stored}/metadata/TransferSyntax").text == RLELossless
    [back] = pacs.retrieve(ds.StudyInstanceUID)
    assert back.file_meta.TransferSyntaxUID == RLELossless  # medsight's SCP accepts it as stored
    assert np.array_equal(back.pixel_array, pixels)


def test_get_one_instance(orthanc: OrthancServer, ct_files: list[Path]):
    series = _series(ct_files, 2)
    orthanc.upload([_bytes(ds) for ds in series])
    pacs = DimsePacs(orthanc.dimse_config().model_copy(update={"scp_port": None}))
    target = series[1]
    got = list(pacs.retrieve(target.StudyInstanceUID, target.SeriesInstanceUID,
                             target.SOPInstanceUID))
    assert [str(ds.SOPInstanceUID) for ds in got] == [str(target.SOPInstanceUID)]
    assert np.array_equal(got[0].pixel_array, target.pixel_array)
    assert got[0].file_meta.TransferSyntaxUID.is_little_endian
    with pytest.raises(PacsError, match=r"C-GET study 1\.2\.3\.999: the PACS lists no instances"):
        list(pacs.retrieve("1.2.3.999"))


def test_an_abandoned_get_is_aborted_not_waited_for(orthanc: OrthancServer, ct_files: list[Path]):
    series = _series(ct_files, 4)
    orthanc.upload([_bytes(ds) for ds in series])
    pacs = DimsePacs(orthanc.dimse_config(timeout_s=20).model_copy(update={"scp_port": None}))
    started = time.monotonic()
    retrieving = pacs.retrieve(series[0].StudyInstanceUID)
    assert next(retrieving).StudyInstanceUID == series[0].StudyInstanceUID
    retrieving.close()
    assert time.monotonic() - started < 5  # a release would wait for the pending C-GET (20 s)
    assert len(list(pacs.retrieve(series[0].StudyInstanceUID))) == 4


def test_a_retrieve_the_pacs_cannot_complete_is_an_error(orthanc: OrthancServer, pacs: DimsePacs,
                                                         ct_files: list[Path]):
    series = _series(ct_files, 2)
    series[1].SOPClassUID = series[1].file_meta.MediaStorageSOPClassUID = "1.2.3.4.5.6.7"
    orthanc.upload([_bytes(ds) for ds in series])
    study = series[0].StudyInstanceUID
    with pytest.raises(PacsError, match=r"C-MOVE study .* to MEDSIGHT: answered 0xC000 Failure"):
        list(pacs.retrieve(study))
    get = DimsePacs(orthanc.dimse_config().model_copy(update={"scp_port": None}))
    with pytest.raises(PacsError, match=r"C-GET study .*: [1-9] of [1-9] instance\(s\) failed"):
        list(get.retrieve(study))


def test_a_move_to_an_unknown_destination_is_an_error(orthanc: OrthancServer,
                                                      ct_files: list[Path]):
    series = _series(ct_files, 1)
    orthanc.upload([_bytes(ds) for ds in series])
    stranger = orthanc.dimse_config().model_copy(update={"calling_ae": "STRANGER",
                                                        "scp_port": free_port()})
    with pytest.raises(PacsError, match=r"C-MOVE study .* to STRANGER: answered 0x[0-9A-F]{4} "
                                        r"Failure.*is 'STRANGER' registered in the PACS"):
        list(DimsePacs(stranger).retrieve(series[0].StudyInstanceUID))


def test_wrong_port_is_a_clear_error(orthanc: OrthancServer):
    port = free_port()
    pacs = DimsePacs(orthanc.dimse_config().model_copy(update={"port": port}))
    with pytest.raises(PacsError,
                       match=rf"ORTHANC@127\.0\.0\.1:{port}: C-ECHO: cannot connect; is the PACS up"):
        pacs.echo()
    with pytest.raises(PacsError, match="cannot connect") as raised:
        pacs.search("study", {"PatientName": "Doe^Jane", "Modality": "CT"})
    assert "Doe" not in str(raised.value) and "'ModalitiesInStudy': 'CT'" in str(raised.value)


def test_scp_port_in_use_is_named(orthanc: OrthancServer, pacs: DimsePacs, ct_files: list[Path]):
    import socket

    series = _series(ct_files, 1)
    orthanc.upload([_bytes(ds) for ds in series])
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", orthanc.scp_port))
        s.listen()
        with pytest.raises(PacsError, match=rf":{orthanc.scp_port}: the port is in use"):
            list(pacs.retrieve(series[0].StudyInstanceUID))


def test_pull_a_study_over_dimse(orthanc: OrthancServer, pacs: DimsePacs, ct_files: list[Path],
                                 tmp_path: Path):
    series = _series(ct_files, 2)
    other = copy.deepcopy(series[0])
    other.SeriesInstanceUID, other.SOPInstanceUID = generate_uid(), generate_uid()
    other.file_meta.MediaStorageSOPInstanceUID = other.SOPInstanceUID
    orthanc.upload([_bytes(ds) for ds in [*series, other]])
    report = pull(pacs, tmp_path / "pulled", study=str(series[0].StudyInstanceUID))
    assert (report.studies, report.series, report.fetched, report.failed) == (1, 2, 3, [])
    files = sorted((tmp_path / "pulled" / "dicom").rglob("*.dcm"))
    assert sorted(p.stem for p in files) == sorted(
        str(ds.SOPInstanceUID) for ds in [*series, other])
    again = pull(pacs, tmp_path / "pulled", study=str(series[0].StudyInstanceUID))
    assert (again.fetched, again.present) == (0, 3)
