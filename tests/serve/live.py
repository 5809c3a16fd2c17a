"""A real `medsight serve` for tests: started as a subprocess on a free loopback port, with users
(a clinician, a reviewer, an admin) and their API keys made in its database beforehand."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from conftest import shared_path

PASSWORDS = {"dr_li": "clinician password 1", "rev_wang": "reviewer password 1",
             "admin": "admin password 123"}
ROLES = {"dr_li": "clinician", "rev_wang": "reviewer", "admin": "admin"}
CT_DICOM = shared_path("ct_medical_images")


def ct_dicoms() -> list[Path]:
    return sorted(CT_DICOM.glob("**/*.dcm"))


@dataclass
class LiveServer:
    """A running `medsight serve`: its URL, data dir, users' passwords and API keys by role."""

    url: str
    data_dir: Path
    proc: subprocess.Popen
    log: Path
    keys: dict[str, str] = field(default_factory=dict)
    users: dict[str, str] = field(default_factory=lambda: dict(PASSWORDS))
    dicom_path: Path = field(default_factory=lambda: ct_dicoms()[0])

    @property
    def admin_key(self) -> str:
        return self.keys["admin"]

    def auth(self, role: str = "clinician") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[role]}"}

    def client(self, role: str | None = "clinician", timeout: float = 60.0) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers=self.auth(role) if role else None,
                            timeout=timeout)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_accounts(data_dir: Path, database_url: str | None = None) -> dict[str, str]:
    """dr_li (clinician), rev_wang (reviewer), admin: with passwords and one API key each."""
    from medsight.serve.db.store import Store

    keys = {}
    with Store.open(data_dir, database_url) as store:
        for name, role in ROLES.items():
            if store.get_user(name) is None:
                store.add_user(name, role, PASSWORDS[name])
            keys[role] = store.create_key(name)[1]
    return keys


def start_server(bundles: list[Path], data_dir: Path, *args: str, accounts: bool = True,
                 env: dict[str, str] | None = None, database_url: str | None = None,
                 wait: bool = True) -> LiveServer:
    """`medsight serve` in a subprocess; returns when /healthz answers (or fails with its log)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    keys = make_accounts(data_dir, database_url) if accounts else {}
    port = free_port()
    log = data_dir.parent / f"{data_dir.name}-server-{port}.log"
    cmd = [sys.executable, "-m", "medsight.cli", "serve", "--port", str(port), "--data-dir",
           str(data_dir), "--workers", "1", *args]
    for b in bundles:
        cmd += ["--bundle", str(b)]
    full_env = {**os.environ, **(env or {})}
    if database_url:
        full_env["MEDSIGHT_DATABASE_URL"] = database_url
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=full_env)
    server = LiveServer(f"http://127.0.0.1:{port}", data_dir, proc, log, keys)
    if wait:
        wait_ready(server)
    return server


def wait_ready(server: LiveServer, timeout_s: float = 90.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(f"medsight serve exited ({server.proc.returncode}):\n{server.log_text()}")
        try:
            if httpx.get(server.url + "/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"medsight serve did not become ready:\n{server.log_text()}")


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
