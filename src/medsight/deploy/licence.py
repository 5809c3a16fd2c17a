"""Licences for offline use: a JSON document signed with the service's Ed25519 key, naming the
user, their role, the bundle (UUID and manifest hash), issue and expiry times and, optionally, the
machine it is bound to. Checked with no network: signature, signer, bundle, machine, expiry, and a
clock that has not been set back before the last successful use."""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from medsight.deploy.manifest import canonical_json
from medsight.deploy.signing import key_id, raw_public_key
from medsight.errors import LicenceError

DEFAULT_DAYS = 30
_FIELDS = ("licence_id", "user", "role", "bundle_uuid", "manifest_sha256", "issued", "expires",
           "machine", "key_id", "public_key")


@dataclass(frozen=True)
class Licence:
    """A checked licence's terms."""

    licence_id: str
    user: str
    role: str
    bundle_uuid: str
    manifest_sha256: str
    issued: datetime
    expires: datetime
    machine: str | None
    key_id: str
    public_key: bytes


def machine_fingerprint() -> str:
    """A stable id of this machine (sha256 of /etc/machine-id, else of the MAC address)."""
    for path in ("/etc/machine-id", "/var/lib/dbus/machine-id"):
        try:
            value = Path(path).read_text().strip()
        except OSError:
            continue
        if value:
            return hashlib.sha256(f"medsight machine {value}".encode()).hexdigest()[:32]
    return hashlib.sha256(f"medsight machine {uuid.getnode():012x}".encode()).hexdigest()[:32]


def issue_licence(private_key: Any, *, user: str, role: str, manifest: Mapping[str, Any],
                  machine: str | None = None, days: float = DEFAULT_DAYS,
                  now: datetime | None = None) -> bytes:
    """The signed licence (JSON bytes) for `user` to run the bundle whose manifest is given."""
    now = now or datetime.now(UTC)
    public = raw_public_key(private_key)
    terms = {"licence_id": uuid.uuid4().hex, "user": user, "role": role,
             "bundle_uuid": str(manifest["model"]["uuid"]),
             "manifest_sha256": str(manifest["manifest_sha256"]), "issued": now.isoformat(),
             "expires": (now + timedelta(days=days)).isoformat(), "machine": machine,
             "key_id": key_id(public), "public_key": base64.b64encode(public).decode("ascii")}
    signature = private_key.sign(canonical_json(terms))
    return canonical_json({"licence": terms,
                           "signature": base64.b64encode(signature).decode("ascii")})


def check_licence(data: bytes, manifest: Mapping[str, Any], *, trusted_keys: Iterable[bytes],
                  machine: str | None = None, now: datetime | None = None,
                  last_use: datetime | None = None) -> Licence:
    """The licence's terms after every offline check; `LicenceError` naming the first failure."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    now = now or datetime.now(UTC)
    try:
        doc = json.loads(data.decode("utf-8"))
        terms = doc["licence"]
        signature = base64.b64decode(doc["signature"], validate=True)
        public = base64.b64decode(terms["public_key"], validate=True)
        missing = [f for f in _FIELDS if f not in terms]
        issued, expires = (datetime.fromisoformat(terms[k]) for k in ("issued", "expires"))
    except (UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
        raise LicenceError(f"the licence file is damaged ({exc!r}); run `medsight activate` "
                           "again") from exc
    if missing:
        raise LicenceError(f"the licence lacks {missing}; run `medsight activate` again")
    try:
        Ed25519PublicKey.from_public_bytes(public).verify(signature, canonical_json(terms))
    except (InvalidSignature, ValueError) as exc:
        raise LicenceError("the licence's signature does not match its terms: it was forged or "
                           "edited; run `medsight activate` again") from exc
    if public not in set(trusted_keys):
        raise LicenceError(f"the licence is signed by key {key_id(public)}, which did not sign "
                           "this bundle (nor is it a trusted service key); activate against the "
                           "service that issued the bundle")
    if terms["bundle_uuid"] != str(manifest["model"]["uuid"]) \
            or terms["manifest_sha256"] != manifest["manifest_sha256"]:
        raise LicenceError("the licence is for another bundle (or another version of it); run "
                           "`medsight activate --bundle` with this bundle")
    if terms["machine"] is not None and terms["machine"] != machine:
        raise LicenceError("the licence is bound to another machine; activate on this machine")
    if last_use is not None and now < last_use - timedelta(minutes=5):
        raise LicenceError(f"the system clock ({now:%Y-%m-%d %H:%M} UTC) is earlier than the last "
                           f"use of this licence ({last_use:%Y-%m-%d %H:%M} UTC): it was set back; "
                           "correct the clock")
    if now >= expires:
        raise LicenceError(f"the licence expired on {expires:%Y-%m-%d %H:%M} UTC; renew it online "
                           "with `medsight activate --renew`")
    if now < issued - timedelta(minutes=5):
        raise LicenceError("the licence was issued after the current system time: the clock is "
                           "wrong; correct it")
    return Licence(terms["licence_id"], terms["user"], terms["role"], terms["bundle_uuid"],
                   terms["manifest_sha256"], issued, expires, terms["machine"], terms["key_id"],
                   public)


__all__ = ["DEFAULT_DAYS", "Licence", "check_licence", "issue_licence", "machine_fingerprint"]
