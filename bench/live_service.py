"""A real `medsight serve` for the service benchmarks (bench/serve.py, bench/fuzz.py --service)
and the service tests (tests/serve/live.py): started as a subprocess on a free loopback port,
optionally pinned to some CPUs, with users and their API keys made in its database beforehand;
its memory read from /proc."""

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

USERS = {"bench_clinician": "clinician", "bench_reviewer": "reviewer"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_keys(data_dir: Path, users: dict[str, str] | None = None,
              passwords: dict[str, str] | None = None, database_url: str | None = None
              ) -> dict[str, str]:
    """One API key per role of `users` (name -> role; default `USERS`; users created when
    missing, with `passwords` or a default one), made in the database directly."""
    from medsight.serve.db.store import Store

    keys = {}
    with Store.open(data_dir, database_url) as store:
        for name, role in (USERS if users is None else users).items():
            if store.get_user(name) is None:
                store.add_user(name, role, (passwords or {}).get(name, f"{name} bench password"))
            keys[role] = store.create_key(name)[1]
    return keys


@dataclass
class LiveService:
    """A running `medsight serve`: URL, process, log, API keys by role, the command it ran."""

    url: str
    proc: subprocess.Popen
    log: Path
    data_dir: Path
    keys: dict[str, str]
    command: list[str] = field(default_factory=list)
    cpus: list[int] | None = None

    def auth(self, role: str = "clinician") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[role]}"}

    def alive(self) -> bool:
        """The process runs and /healthz answers 200."""
        if self.proc.poll() is not None:
            return False
        try:
            return httpx.get(self.url + "/healthz", timeout=10).status_code == 200
        except httpx.HTTPError:
            return False

    def metrics(self) -> dict[str, float]:
        """The Prometheus samples without labels (and summed over labels), name -> value."""
        text = httpx.get(self.url + "/metrics", timeout=10).text
        out: dict[str, float] = {}
        for line in text.splitlines():
            if not line or line.startswith("#"):
                continue
            name_labels, _, value = line.rpartition(" ")
            name = name_labels.split("{", 1)[0]
            try:
                out[name] = out.get(name, 0.0) + float(value)
            except ValueError:
                continue
        return out

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


def start_service(bundles: list[Path], data_dir: Path, *args: str, cpus: list[int] | None = None,
                  timeout_s: float = 120.0, users: dict[str, str] | None = None,
                  passwords: dict[str, str] | None = None, database_url: str | None = None,
                  wait: bool = True) -> LiveService:
    """`medsight serve` in a subprocess (on `cpus` if given, its decode workers too) with the
    API keys of `users` (see `make_keys`; ``{}`` for none); with `wait`, returns when /readyz
    answers 200, or raises with the server's log."""
    data_dir.mkdir(parents=True, exist_ok=True)
    keys = make_keys(data_dir, users, passwords, database_url) if users != {} else {}
    port = free_port()
    log = data_dir.parent / f"{data_dir.name}-server-{port}.log"
    cmd = [sys.executable, "-m", "medsight.cli", "serve", "--port", str(port), "--data-dir",
           str(data_dir), *args]
    for b in bundles:
        cmd += ["--bundle", str(b)]
    env = {**os.environ, **({"MEDSIGHT_DATABASE_URL": database_url} if database_url else {})}
    pin = (lambda: os.sched_setaffinity(0, cpus)) if cpus else None
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, preexec_fn=pin, env=env)
    svc = LiveService(f"http://127.0.0.1:{port}", proc, log, data_dir, keys, cmd, cpus)
    if wait:
        wait_ready(svc, timeout_s)
    return svc


def wait_ready(svc: LiveService, timeout_s: float = 120.0) -> None:
    """Until /readyz answers 200; raises with the server's log if it exits or never does."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if svc.proc.poll() is not None:
            raise RuntimeError(f"medsight serve exited ({svc.proc.returncode}):\n{svc.log_text()}")
        try:
            if httpx.get(svc.url + "/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    svc.stop()
    raise RuntimeError(f"medsight serve did not become ready:\n{svc.log_text()}")


# -- memory and CPU from /proc ------------------------------------------------------------------
def descendants(pid: int) -> list[int]:
    """`pid`'s children, grandchildren... (the fork server and the decode workers)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], list(children.get(pid, []))
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children.get(p, [])
    return out


def status_kb(pid: int, field_name: str) -> int:
    """A ``kB`` field of /proc/<pid>/status (VmHWM: peak resident set, VmRSS: now); 0 if gone."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of `pid` and its descendants that are still alive."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for p in [pid, *descendants(pid)]:
        try:
            with open(f"/proc/{p}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
        except (OSError, IndexError, ValueError):
            continue
    return total
