"""A real PostgreSQL server for the storage tests, started by the test session itself.

`initdb` + `pg_ctl start` (Debian's binaries under /usr/lib/postgresql/*/bin, the newest) on a
temporary folder, listening only on a unix socket there (no TCP port); one fresh database per test.
As root (initdb refuses root) the server runs as the `postgres` system user. Without the binaries
the PostgreSQL half of the tests skips, saying how to install them.

Test modules bind the fixtures by name: `postgres_server, db_url, store = postgres.postgres_server,
postgres.db_url, postgres.store` (an import would read as unused to ruff, and the arguments as
redefinitions).
"""

from __future__ import annotations

import itertools
import os
import pwd
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

BACKENDS = ["sqlite", "postgresql"]
_SKIP = "PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin (`make system-deps` " \
        "installs Debian's postgresql)"


def pg_bindir() -> Path | None:
    """The newest /usr/lib/postgresql/<version>/bin holding initdb and pg_ctl, or None."""
    found = []
    for d in Path("/usr/lib/postgresql").glob("*/bin"):
        m = re.fullmatch(r"\d+(\.\d+)?", d.parent.name)
        if m and (d / "initdb").exists() and (d / "pg_ctl").exists():
            found.append((float(d.parent.name), d))
    return max(found)[1] if found else None


class PostgresServer:
    """A throwaway cluster in `root`, reachable at the unix socket in `root`."""

    def __init__(self, bindir: Path, root: Path, run_as: str | None):
        self.bindir, self.root, self.run_as = bindir, root, run_as
        self.data = root / "data"
        self._names = itertools.count()

    def _cmd(self, *args: str) -> list[str]:
        prefix = ["runuser", "-u", self.run_as, "--"] if self.run_as else []
        return [*prefix, *args]

    def _run(self, *args: str) -> None:
        res = subprocess.run(self._cmd(*args), capture_output=True, text=True, timeout=120)
        if res.returncode:
            log = self.root / "server.log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(f"{' '.join(args)} failed ({res.returncode}): "
                               f"{res.stderr or res.stdout}\n{tail}")

    def start(self) -> None:
        self._run(str(self.bindir / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres",
                  "-E", "UTF8", "--no-sync", "--no-instructions")
        opts = (f"-c listen_addresses='' -c unix_socket_directories='{self.root}' -c fsync=off "
                "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200 -c TimeZone=UTC")
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.root / "server.log"),
                  "-w", "-t", "60", "-o", opts, "start")

    def stop(self) -> None:
        subprocess.run(self._cmd(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-w", "-m", "fast",
                                 "stop"), capture_output=True, timeout=60)

    def url(self, database: str = "postgres") -> str:
        """SQLAlchemy URL of `database` over the unix socket."""
        return f"postgresql+psycopg://postgres@/{database}?host={self.root}"

    def create_database(self) -> str:
        """A new empty database; its URL."""
        import psycopg

        name = f"t{next(self._names)}"
        with psycopg.connect(host=str(self.root), user="postgres", dbname="postgres",
                             autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One PostgreSQL server for the whole test session (per xdist worker)."""
    bindir = pg_bindir()
    if bindir is None:
        pytest.skip(_SKIP)
    run_as = None
    if os.geteuid() == 0:
        try:
            pw = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root, and initdb refuses root: create a `postgres` system user "
                        "(Debian's postgresql package does; `make system-deps` installs it)")
        if shutil.which("runuser") is None:
            pytest.skip("running as root without `runuser` to start PostgreSQL as the postgres user")
        run_as = "postgres"
    root = Path(tempfile.mkdtemp(prefix="medsight-pg-"))  # short: a socket path has ~100 bytes
    if run_as:
        os.chown(root, pw.pw_uid, pw.pw_gid)
    server = PostgresServer(bindir, root, run_as)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh empty database on each backend: SQLite in tmp_path, then a new PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'medsight.db'}"
    server = request.getfixturevalue("postgres_server")
    return server.create_database()


@pytest.fixture
def store(db_url: str, tmp_path: Path):
    """A `Store` opened (and migrated) on `db_url`, closed after the test."""
    from medsight.serve.db import Store

    s = Store.open(tmp_path, db_url)
    yield s
    s.close()
