"""A real Orthanc PACS (Debian's `orthanc` + `orthanc-dicomweb`) for the PACS tests, started by the
test session on loopback ports with a throwaway configuration and storage folder, stopped after.

Basic auth is on (user `medsight`, a random password); medsight's storage SCP is registered as the
modality `MEDSIGHT` on `scp_port`, so C-MOVE can send to it. Without the binaries the tests skip,
saying how to install them.
"""

from __future__ import annotations

import json
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

import httpx
import pytest

from medsight.pacs import PacsConfig

ORTHANC = Path("/usr/sbin/Orthanc")
PLUGINS = Path("/usr/share/orthanc/plugins")
DICOMWEB_PLUGIN = PLUGINS / "libOrthancDicomWeb.so"
SKIP = ("Orthanc with its DICOMweb plugin not found (/usr/sbin/Orthanc, "
        "/usr/share/orthanc/plugins/libOrthancDicomWeb.so): `make system-deps` installs Debian's "
        "orthanc and orthanc-dicomweb")
USER = "medsight"
CALLING_AE = "MEDSIGHT"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class OrthancServer:
    """One running Orthanc; `clear()` empties it between tests."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.http_port, self.dicom_port, self.scp_port = free_port(), free_port(), free_port()
        self.aet = "ORTHANC"
        self.password = secrets.token_urlsafe(16)
        self.password_file = root / "password"
        self.password_file.write_text(self.password + "\n")
        self.password_file.chmod(0o600)
        self.url = f"http://127.0.0.1:{self.http_port}"
        self.dicomweb_url = f"{self.url}/dicom-web"
        self.log = root / "orthanc.log"
        self._proc: subprocess.Popen | None = None
        self.http = httpx.Client(base_url=self.url, auth=(USER, self.password), timeout=30)

    def start(self) -> None:
        storage = self.root / "storage"
        storage.mkdir()
        config = {
            "Name": "medsight-test", "StorageDirectory": str(storage), "IndexDirectory": str(storage),
            "HttpPort": self.http_port, "DicomPort": self.dicom_port, "DicomAet": self.aet,
            "RemoteAccessAllowed": False, "AuthenticationEnabled": True,
            "RegisteredUsers": {USER: self.password},
            "Plugins": [str(DICOMWEB_PLUGIN)],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": True},
            "DicomModalities": {"medsight": [CALLING_AE, "127.0.0.1", self.scp_port]},
            "DicomAlwaysAllowEcho": True, "DicomAlwaysAllowStore": True,
            "DicomAlwaysAllowFind": True, "DicomAlwaysAllowMove": True, "DicomAlwaysAllowGet": True,
            "DicomCheckModalityHost": False, "HttpDescribeErrors": True, "StableAge": 1,
            "ConcurrentJobs": 2, "HttpThreadsCount": 8, "SaveJobs": False,
            "MaximumStorageCacheSize": 0,  # reads come from the storage folder (a test loses a file)
        }
        cfg = self.root / "orthanc.json"
        cfg.write_text(json.dumps(config, indent=1))
        cfg.chmod(0o600)
        self._proc = subprocess.Popen([str(ORTHANC), str(cfg)], stdout=self.log.open("wb"),
                                      stderr=subprocess.STDOUT, cwd=self.root)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"Orthanc exited ({self._proc.returncode}):\n{self.log_tail()}")
            try:
                if self.http.get("/system").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"Orthanc did not answer within 60 s:\n{self.log_tail()}")

    def log_tail(self, n: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-n:] if self.log.exists() else ""

    def stop(self) -> None:
        self.http.close()
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()

    # -- what the tests use --------------------------------------------------------------------

    def config(self, **extra) -> PacsConfig:
        """A DICOMweb configuration for this server."""
        return PacsConfig(url=self.dicomweb_url, username=USER, password_file=self.password_file,
                          **extra)

    def dimse_config(self, **extra) -> PacsConfig:
        """A DIMSE configuration for this server (medsight's SCP on `scp_port`)."""
        return PacsConfig(ae_title=self.aet, host="127.0.0.1", port=self.dicom_port,
                          calling_ae=CALLING_AE, scp_port=self.scp_port, **extra)

    def upload(self, paths: Iterable[Path | bytes]) -> list[str]:
        """Store files through the REST API; the Orthanc ids of the instances."""
        ids = []
        for p in paths:
            data = p if isinstance(p, bytes) else Path(p).read_bytes()
            r = self.http.post("/instances", content=data)
            r.raise_for_status()
            ids.append(r.json()["ID"])
        return ids

    def stored_file(self, sop_uid: str) -> Path:
        """The file in the storage folder that holds the instance `sop_uid` (by its attachment's
        UUID, where Orthanc 1.10 files it: ``storage/ab/cd/abcd...``)."""
        (found,) = self.http.post("/tools/lookup", content=sop_uid).json()
        info = self.http.get(f"/instances/{found['ID']}/attachments/dicom/info")
        info.raise_for_status()
        uuid = info.json()["Uuid"]
        return self.root / "storage" / uuid[:2] / uuid[2:4] / uuid

    def instances(self) -> list[str]:
        r = self.http.get("/instances")
        r.raise_for_status()
        return r.json()

    def instance_tags(self, orthanc_id: str) -> dict:
        r = self.http.get(f"/instances/{orthanc_id}/simplified-tags")
        r.raise_for_status()
        return r.json()

    def clear(self) -> None:
        for pid in self.http.get("/patients").json():
            self.http.delete(f"/patients/{pid}").raise_for_status()


def orthanc_available() -> bool:
    return ORTHANC.exists() and DICOMWEB_PLUGIN.exists()


@pytest.fixture(scope="session")
def orthanc_server() -> Iterable[OrthancServer]:
    """One Orthanc for the whole test session (per xdist worker)."""
    if not orthanc_available():
        pytest.skip(SKIP)
    root = Path(tempfile.mkdtemp(prefix="medsight-orthanc-"))
    server = OrthancServer(root)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def orthanc(orthanc_server: OrthancServer) -> OrthancServer:
    """The session's Orthanc, emptied for this test."""
    orthanc_server.clear()
    return orthanc_server
