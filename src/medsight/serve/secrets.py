"""The service secret: 32 random bytes in `data_dir/secret.key`, private to the service's user.

It keys the de-identification pseudonyms and the upload HMACs, so whoever reads it can link
pseudonyms back to patients: it is created 0600 on first use and a file that group or others may
read is refused rather than used.
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

from medsight.errors import MedsightError

__all__ = ["SECRET_BYTES", "SECRET_FILE", "service_secret"]

SECRET_FILE = "secret.key"
SECRET_BYTES = 32


def service_secret(data_dir: Path) -> bytes:
    """The secret of `data_dir`, created (0600, atomically, never overwritten) when missing."""
    data_dir = Path(data_dir)
    path = data_dir / SECRET_FILE
    if not os.path.lexists(path):
        _create(data_dir, path)
    return _read(path)


def _read(path: Path) -> bytes:
    st = os.lstat(path)
    if not stat.S_ISREG(st.st_mode):
        raise MedsightError(f"{path} is not a regular file (a link or a folder); the service secret "
                            "must be a plain file owned by the service's user")
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o077:
        raise MedsightError(
            f"{path} is readable or writable by group or others (mode {mode:04o}); it keys the "
            f"patient pseudonyms, so run `chmod 600 {path}` (and check who copied it) before starting"
        )
    data = path.read_bytes()
    if len(data) != SECRET_BYTES:
        raise MedsightError(f"{path} holds {len(data)} bytes, not {SECRET_BYTES}: it is damaged; restore "
                            "it from a backup (a new secret would change every pseudonym)")
    return data


def _create(data_dir: Path, path: Path) -> None:
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = data_dir / f".{SECRET_FILE}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, secrets.token_bytes(SECRET_BYTES))
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)  # fails if another process created it first: theirs is kept
    except FileExistsError:
        pass
    finally:
        os.unlink(tmp)
    dir_fd = os.open(data_dir, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
