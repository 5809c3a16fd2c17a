"""The service secret file: created once with mode 0600, reused, and refused when others may read it."""

from __future__ import annotations

import os
import stat
import threading

import pytest

from medsight.errors import MedsightError
from medsight.serve.secrets import SECRET_FILE, service_secret


def test_created_0600_and_reused(tmp_path):
    d = tmp_path / "data"
    secret = service_secret(d)
    path = d / SECRET_FILE
    assert len(secret) == 32 and path.read_bytes() == secret
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert service_secret(d) == secret
    assert [p.name for p in d.iterdir()] == [SECRET_FILE]  # no temporary file left behind


def test_group_or_world_readable_file_is_refused(tmp_path):
    service_secret(tmp_path)
    path = tmp_path / SECRET_FILE
    for mode in (0o644, 0o640, 0o604):
        os.chmod(path, mode)
        with pytest.raises(MedsightError, match="chmod 600"):
            service_secret(tmp_path)
    os.chmod(path, 0o600)
    assert len(service_secret(tmp_path)) == 32


def test_damaged_or_linked_file_is_refused(tmp_path):
    path = tmp_path / SECRET_FILE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, b"short")
    os.close(fd)
    with pytest.raises(MedsightError, match="damaged"):
        service_secret(tmp_path)
    other = tmp_path / "elsewhere"
    other.mkdir()
    service_secret(other)
    path.unlink()
    path.symlink_to(other / SECRET_FILE)
    with pytest.raises(MedsightError, match="not a regular file"):
        service_secret(tmp_path)


def test_concurrent_first_use_agrees(tmp_path):
    results: list[bytes] = []
    threads = [threading.Thread(target=lambda: results.append(service_secret(tmp_path))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 8 and len(set(results)) == 1
