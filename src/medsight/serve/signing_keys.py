"""The service's Ed25519 signing keys: the current private key (0600 PEM in `<data dir>/signing/`,
created on first use) and a key ring of every public key ever used, so bundles signed before a
`medsight keys rotate-signing` still verify.

Safe for replicas sharing the data folder: the first key is published by hard-linking a complete
key ring into place, which only one process can do (the others drop their key and read the
winner's), and rotations hold an exclusive lock on `signing/.lock`.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from medsight.atomic import write_atomic
from medsight.deploy.signing import key_id, raw_public_key, ring_public_keys
from medsight.errors import MedsightError

KEYRING = "keyring.json"


class SigningKeys:
    """`current()` signs; `public_keys()` verifies (current and retired); `rotate()` retires the
    current key and makes a new one."""

    def __init__(self, data_dir: Path) -> None:
        self.folder = Path(data_dir) / "signing"

    def current(self):
        """The current private key (an `Ed25519PrivateKey`), created on first use."""
        from cryptography.hazmat.primitives.serialization import load_pem_private_key

        ring = self._ring()
        if not ring:
            ring = self._create_first()
        active = [k for k in ring if k["retired"] is None]
        if not active:
            return self.rotate()
        path = self.folder / f"{active[-1]['key_id']}.pem"
        if not path.exists():  # retired by a rotation since the ring was read: read the new ring
            active = [k for k in self._ring() if k["retired"] is None]
            path = self.folder / f"{active[-1]['key_id']}.pem" if active else path
        mode = path.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise MedsightError(f"{path} is readable by group or others (mode {mode & 0o777:04o}); "
                                f"it signs the bundles this service vouches for: chmod 600 {path}")
        return load_pem_private_key(path.read_bytes(), password=None)

    def rotate(self):
        """Retire the current key (its public key stays trusted) and start a new one."""
        with self._locked():
            key, entry = self._new_key()
            now = entry["created"]
            ring = [{**k, "retired": k["retired"] or now} for k in self._ring()]
            ring.append(entry)
            write_atomic(self.folder / KEYRING, _ring_bytes(ring))
            for old in ring[:-1]:  # a retired private key signs nothing more
                (self.folder / f"{old['key_id']}.pem").unlink(missing_ok=True)
        return key

    def _new_key(self):
        """A new private key written 0600 to `<key id>.pem`, and its key ring entry."""
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
        from cryptography.hazmat.primitives.serialization import (
            Encoding,
            NoEncryption,
            PrivateFormat,
        )

        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        key = Ed25519PrivateKey.generate()
        public = raw_public_key(key)
        kid = key_id(public)
        write_atomic(self.folder / f"{kid}.pem",  # mkstemp: created 0600
                     key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
        return key, {"key_id": kid, "public_key": base64.b64encode(public).decode("ascii"),
                     "created": datetime.now(UTC).isoformat(), "retired": None}

    def _create_first(self) -> list[dict[str, Any]]:
        """The first key ring, made once however many processes start at once: a complete ring
        is hard-linked into place (link fails when the name exists); a loser removes its key."""
        _, entry = self._new_key()
        tmp = self.folder / f".{KEYRING}.{os.getpid()}.{entry['key_id']}.tmp"
        write_atomic(tmp, _ring_bytes([entry]))
        try:
            os.link(tmp, self.folder / KEYRING)
        except FileExistsError:
            (self.folder / f"{entry['key_id']}.pem").unlink(missing_ok=True)
        finally:
            tmp.unlink(missing_ok=True)
        return self._ring()

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """An exclusive lock on `signing/.lock` (rotations one at a time, across processes)."""
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.folder / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def public_keys(self) -> list[bytes]:
        """Every public key of the ring (current last)."""
        return ring_public_keys(self._ring())

    def ring(self) -> list[dict[str, Any]]:
        return self._ring()

    def _ring(self) -> list[dict[str, Any]]:
        path = self.folder / KEYRING
        if not path.exists():
            return []
        try:
            return list(json.loads(path.read_text()))
        except (OSError, ValueError) as exc:
            raise MedsightError(f"{path} is damaged ({exc}); restore it from a backup") from exc


def _ring_bytes(ring: list[dict[str, Any]]) -> bytes:
    return (json.dumps(ring, indent=2) + "\n").encode()


def public_key_text(key) -> str:
    """The base64 of a key's 32 raw public bytes (what `--public-key` takes)."""
    return base64.b64encode(raw_public_key(key)).decode("ascii")


__all__ = ["SigningKeys", "public_key_text"]
