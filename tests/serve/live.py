"""A real `medsight serve` for tests, on bench/live_service.py (the benchmarks' own): a
subprocess on a free loopback port, with a clinician, a reviewer and an admin and their API keys
made in its database beforehand."""

from __future__ import annotations

import signal
import subprocess
from dataclasses import dataclass, field, fields
from pathlib import Path

import httpx
from conftest import load_module, shared_path

_live = load_module("live_service", Path(__file__).resolve().parents[2] / "bench" / "live_service.py")

PASSWORDS = {"dr_li": "clinician password 1", "rev_wang": "reviewer password 1",
             "admin": "admin password 123"}
ROLES = {"dr_li": "clinician", "rev_wang": "reviewer", "admin": "admin"}
free_port = _live.free_port


def ct_dicoms() -> list[Path]:
    return sorted(shared_path("ct_medical_images").glob("**/*.dcm"))


@dataclass
class LiveServer(_live.LiveService):
    """A running service with the users' passwords and a real CT DICOM to upload."""

    users: dict[str, str] = field(default_factory=lambda: dict(PASSWORDS))
    dicom_path: Path = field(default_factory=lambda: ct_dicoms()[0])

    @property
    def admin_key(self) -> str:
        return self.keys["admin"]

    def client(self, role: str | None = "clinician", timeout: float = 60.0) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers=self.auth(role) if role else None,
                            timeout=timeout)


def start_server(bundles: list[Path], data_dir: Path, *args: str, accounts: bool = True,
                 database_url: str | None = None, wait: bool = True) -> LiveServer:
    """`medsight serve --workers 1` with the test users (or none); see `start_service`."""
    svc = _live.start_service(bundles, data_dir, "--workers", "1", *args,
                              users=ROLES if accounts else {}, passwords=PASSWORDS,
                              database_url=database_url, wait=wait)
    return LiveServer(**{f.name: getattr(svc, f.name) for f in fields(svc)})


def start_expecting_failure(bundles: list[Path], data_dir: Path, *args: str) -> tuple[int, str]:
    """Run `medsight serve` that must refuse to start: (exit code, its output)."""
    server = start_server(bundles, data_dir, *args, accounts=False, wait=False)
    try:
        code = server.proc.wait(90)
    except subprocess.TimeoutExpired as exc:
        server.stop(signal.SIGKILL)
        raise AssertionError(f"medsight serve started although it should not:\n{server.log_text()}") from exc
    return code, server.log_text()


def second_clinician_key(server: LiveServer) -> str:
    """An API key of another clinician, dr_zhou (created on first use)."""
    from medsight.serve.db.store import Store

    with Store.open(server.data_dir) as store:
        if store.get_user("dr_zhou") is None:
            store.add_user("dr_zhou", "clinician", "clinician password 2")
        return store.create_key("dr_zhou")[1]
