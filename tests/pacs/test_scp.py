"""medsight's storage SCP, driven by a pynetdicom SCU: instances land atomically under checked UIDs,
hostile UIDs, refused callers, oversize instances and failing callbacks are refused without
stopping the SCP, and a busy port is named."""

from __future__ import annotations

import copy
import socket
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pacs.orthanc import OrthancServer
from pydicom.uid import generate_uid
from pynetdicom import AE

from medsight.errors import PacsError
from medsight.pacs.scp import StorageSCP


def _send(port: int, datasets: list[pydicom.Dataset], calling: str = "SENDER") -> list[int] | None:
    """C-STORE `datasets` to 127.0.0.1:`port`; the statuses (None: no association; -1: no answer)."""
    ae = AE(ae_title=calling)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 10
    for ds in datasets:
        ae.add_requested_context(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)
    assoc = ae.associate("127.0.0.1", port, ae_title="MEDSIGHT")
    if not assoc.is_established:
        return None
    statuses = []
    for ds in datasets:
        status = assoc.send_c_store(ds)
        statuses.append(int(status.Status) if "Status" in status else -1)
    if assoc.is_established:
        assoc.release()
    return statuses


@pytest.fixture
def ct(ct_files: list[Path]) -> list[pydicom.Dataset]:
    return [pydicom.dcmread(p) for p in ct_files[:2]]


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def test_instances_land_atomically_under_their_uids(tmp_path: Path, ct: list[pydicom.Dataset]):
    seen = []
    with StorageSCP("MEDSIGHT", out_dir=tmp_path / "in",
                    on_instance=lambda path, header: seen.append((path, header))) as scp:
        assert scp.port > 0
        assert _send(scp.port, ct) == [0, 0]
    for ds, (path, header) in zip(ct, seen, strict=True):
        assert path == tmp_path / "in" / ds.StudyInstanceUID / ds.SeriesInstanceUID / \
            f"{ds.SOPInstanceUID}.dcm"
        assert path.is_file() and "PixelData" not in header
        assert header.SOPInstanceUID == ds.SOPInstanceUID and header.file_meta.TransferSyntaxUID
        back = pydicom.dcmread(path)
        assert back.file_meta.TransferSyntaxUID == ds.file_meta.TransferSyntaxUID
        assert np.array_equal(back.pixel_array, ds.pixel_array)
    assert _files(tmp_path) == sorted(p for p, _ in seen)  # no temporary file left behind
    assert scp.received == 2 and scp.refused == 0


def test_receives_what_orthanc_pushes(orthanc: OrthancServer, tmp_path: Path, ct_files: list[Path]):
    ids = orthanc.upload(ct_files[:3])
    seen: list[str] = []
    with StorageSCP("MEDSIGHT", port=orthanc.scp_port, out_dir=tmp_path, allowed_aes=["ORTHANC"],
                    on_instance=lambda path, header: seen.append(str(header.SOPInstanceUID))):
        r = orthanc.http.post("/modalities/medsight/store",
                              json={"Resources": ids, "Synchronous": True})
        r.raise_for_status()
        assert r.json()["FailedInstancesCount"] == 0
    expected = {str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID)
                for p in ct_files[:3]}
    assert set(seen) == expected == {p.stem for p in _files(tmp_path)}


@pytest.mark.filterwarnings("ignore:Invalid value for VR UI")
def test_hostile_uids_are_refused_and_the_scp_stays_up(tmp_path: Path, ct: list[pydicom.Dataset]):
    out = tmp_path / "deep" / "in"
    bad_sop, bad_study = copy.deepcopy(ct[0]), copy.deepcopy(ct[1])
    bad_sop.SOPInstanceUID = "../../../evil"
    bad_sop.file_meta.MediaStorageSOPInstanceUID = "../../../evil"
    bad_study.StudyInstanceUID = "../../escape"
    with StorageSCP("MEDSIGHT", out_dir=out) as scp:
        assert _send(scp.port, [bad_sop, bad_study]) == [0xC000, 0xC000]
        assert _files(tmp_path) == []
        assert _send(scp.port, [ct[0]]) == [0]  # the next association is served
    assert [p.name for p in _files(tmp_path)] == [f"{ct[0].SOPInstanceUID}.dcm"]
    assert scp.refused == 2


def test_failing_callback_answers_a_failure_and_the_scp_goes_on(tmp_path: Path,
                                                                 ct: list[pydicom.Dataset]):
    calls = []

    def explode(path: Path, header: pydicom.Dataset) -> None:
        calls.append(path)
        if len(calls) == 1:
            raise RuntimeError("model crashed")

    with StorageSCP("MEDSIGHT", out_dir=tmp_path, on_instance=explode) as scp:
        assert _send(scp.port, ct) == [0xC001, 0]
    assert len(calls) == 2


def test_only_allowed_callers_may_associate(tmp_path: Path, ct: list[pydicom.Dataset]):
    with StorageSCP("MEDSIGHT", out_dir=tmp_path, allowed_aes=["ORTHANC"]) as scp:
        assert _send(scp.port, ct[:1], calling="INTRUDER") is None
        assert _send(scp.port, ct[:1], calling="ORTHANC") == [0]
    assert len(_files(tmp_path)) == 1


def test_an_oversize_instance_aborts_its_association(tmp_path: Path, ct: list[pydicom.Dataset]):
    small = copy.deepcopy(ct[0])
    small.SOPInstanceUID = small.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    del small.PixelData  # a few kB of header only
    with StorageSCP("MEDSIGHT", out_dir=tmp_path, max_instance_bytes=100_000,
                    max_pdu=16_384) as scp:
        assert _send(scp.port, ct[:1]) == [-1]  # 512x512x2 bytes > 100 kB: aborted, no status
        assert _send(scp.port, [small]) == [0]
    assert [p.name for p in _files(tmp_path)] == [f"{small.SOPInstanceUID}.dcm"]


def test_a_busy_port_is_named(tmp_path: Path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(PacsError, match=rf"127\.0\.0\.1:{port}: the port is in use"):
            StorageSCP("MEDSIGHT", port=port, out_dir=tmp_path).start()

